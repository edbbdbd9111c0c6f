"""The case report as PDF: headless Chromium prints the case page (`case_report`).

Chromium is an optional tool of the machine, not a dependency of the app: the Azure
Functions Python image has none, so there the endpoint answers 501 and the CLI makes the PDF
on a workstation (`python -m shared.cli report RUN_ID --pdf case.pdf`). The page is written
to a fresh temporary folder with a fresh browser profile, printed with every background
service of the browser off, and the browser is killed (its whole process group) if it has
not finished within RESPONDER_PDF_TIMEOUT_SECONDS. The page loads nothing from the network:
its CSS is inline and its Content-Security-Policy forbids anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ResponderError
from shared.playbook.case_report import case_html, load_case

if TYPE_CHECKING:
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger("responder.reports")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""What is looked up on PATH when RESPONDER_CHROMIUM_PATH is not set."""
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--no-pdf-header-footer",
)
"""Checked with Chromium 156 (Debian 12): `--headless` is the new headless mode, which
prints with `--print-to-pdf`; `--no-pdf-header-footer` leaves out the browser's own header
(date, file path) and footer. `--no-sandbox`: the browser runs as whatever user the caller
is (root in containers and CI), where the sandbox cannot start; the page is our own."""


class PdfUnavailable(ResponderError):
    """No Chromium to print with (not installed, or RESPONDER_CHROMIUM_PATH points nowhere).
    The HTTP endpoint answers 501 with this message."""


class PdfFailed(ResponderError):
    """Chromium ran and produced no PDF (crashed, or took longer than the timeout)."""


def find_chromium(settings: Settings) -> str:
    """The browser to print with, or PdfUnavailable saying why there is none."""
    configured = settings.chromium_path
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise PdfUnavailable(
                f"RESPONDER_CHROMIUM_PATH={configured!r} is not an executable file: set it to "
                "a Chromium or Chrome binary, or unset it to look for one on PATH")
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise PdfUnavailable(
        "no Chromium to print the PDF with: none of " + ", ".join(BROWSERS) + " is on PATH "
        "and RESPONDER_CHROMIUM_PATH is not set (the Azure Functions image has no browser: "
        "make the PDF with `python -m shared.cli report RUN_ID --pdf case.pdf` on a machine "
        "with Chromium, e.g. `apt-get install chromium`)")


def _kill_group(pid: int) -> None:
    """Kill what is left of the browser this module started (its own session/group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def html_to_pdf(page: str, *, chromium: str, limit_seconds: float = 60.0) -> bytes:
    """Print an HTML page to PDF with headless Chromium; the PDF's bytes."""
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="responder-case-"))
    try:
        source, target = folder / "case.html", folder / "case.pdf"
        await asyncio.to_thread(source.write_text, page, encoding="utf-8")
        stderr_path = folder / "chromium.log"
        with open(stderr_path, "wb") as stderr:  # noqa: ASYNC230 (opening a local file)
            # Output goes to a file, not a pipe: the browser's helper processes may keep a
            # pipe open after it exits, and reading it would then wait for the timeout.
            proc = await asyncio.create_subprocess_exec(
                chromium, *FLAGS, f"--user-data-dir={folder / 'profile'}",
                f"--print-to-pdf={target}", source.as_uri(),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr, start_new_session=True)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=limit_seconds)
        except TimeoutError as exc:
            raise PdfFailed(f"Chromium did not print the PDF within {limit_seconds:g} s "
                            "(RESPONDER_PDF_TIMEOUT_SECONDS)") from exc
        finally:
            _kill_group(proc.pid)
            if proc.returncode is None:
                await proc.wait()
        data = await asyncio.to_thread(target.read_bytes) if target.exists() else b""
        if code != 0 or not data.startswith(b"%PDF"):
            tail = (await asyncio.to_thread(stderr_path.read_text, errors="replace"))[-800:]
            log.warning("chromium printed no PDF (exit %s): %s", code, tail)
            raise PdfFailed(f"Chromium printed no PDF (exit code {code}); see the log")
        return data
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


async def case_pdf(services: Services, run_id: str) -> bytes | None:
    """The case report of a run as PDF; None when there is no such run. Raises
    PdfUnavailable before reading anything when there is no browser to print with."""
    chromium = find_chromium(services.settings)
    case = await load_case(services, run_id)
    if case is None:
        return None
    return await html_to_pdf(case_html(case), chromium=chromium,
                             limit_seconds=services.settings.pdf_timeout_seconds)


def pdf_filename(run_id: str) -> str:
    """A safe attachment name for a run's PDF (the run id may hold any character)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in run_id)
    return f"case-{safe[:80] or 'run'}.pdf"
