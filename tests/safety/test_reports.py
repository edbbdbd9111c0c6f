"""Run reports (Markdown, HTML, JSON; CLI and HTTP) and the audit trail's secrecy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path

import azure.functions as func
import pytest

from shared.logs import JsonFormatter, RedactingFilter, RunIdFilter, run_context
from shared.playbook import reports
from shared.playbook.case_report import case_html, load_case
from tests.conftest import TOKEN
from tests.playbook.conftest import MEGAN, run_via_queue
from tests.safety.conftest import (
    ADELE,
    APPROVAL_SECRET,
    WEBHOOK_SECRET,
    all_journal_rows,
    app_function,
    notify_policy,
)
from tests.safety.test_approvals import _post, _tokens

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"


async def _report_http(run_id: str, fmt: str | None = "html") -> func.HttpResponse:
    req = func.HttpRequest("GET", f"http://localhost/api/runs/{run_id}/report",
                           params={"format": fmt} if fmt else {}, body=b"",
                           route_params={"runId": run_id})
    return await app_function("run_report")(req)


async def test_report_endpoint_formats_and_function_key_auth(make_services, emulator):
    import function_app
    from devtools.localhost import app_functions

    fn = next(f for f in app_functions(function_app.app)
              if f.get_function_name() == "run_report")
    trigger = fn.get_bindings()[0].get_dict_repr()
    assert str(trigger["authLevel"].value) == "function"

    svc = make_services()
    await run_via_queue(svc, {"user": MEGAN, "requestId": "rep-1", "reason": HOSTILE})
    html_resp = await _report_http("rep-1", "html")
    assert html_resp.status_code == 200
    assert html_resp.headers["Content-Type"].startswith("text/html")
    page = html_resp.get_body().decode()
    assert "<ol class=\"timeline\">" in page and "run-started" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "<img src=x" not in page
    md = (await _report_http("rep-1", "md")).get_body().decode()
    assert "## Timeline" in md and "## What changed" in md and "reset_password" in md
    data = json.loads((await _report_http("rep-1", "json")).get_body())
    assert data["runId"] == "rep-1" and data["timeline"][0]["kind"] == "signal"
    assert any("forwarding" in c["change"] for c in data["changes"])
    assert (await _report_http("rep-1", None)).status_code == 200  # html by default
    assert (await _report_http("rep-1", "docx")).status_code == 400
    assert (await _report_http("no-such-run", "md")).status_code == 404


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="chromium is not installed (apt-get install -y chromium); CI "
                           "installs it and never skips this test")
async def test_html_report_renders_in_headless_chromium(make_services, emulator, receiver,
                                                        tmp_path):
    svc = make_services(**notify_policy(receiver))
    await run_via_queue(svc, {"user": MEGAN, "requestId": "shot-1", "reason": HOSTILE,
                              "source": "graph.riskDetection",
                              "detectedAt": "2026-11-25T03:14:09Z"})
    await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "shot-1"})
    page = reports.html_page(await reports.load(svc, "shot-1"))
    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")
    png = tmp_path / "report.png"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
        "--window-size=1200,1600", f"file://{html_file}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode == 0, err.decode()[-2000:]
    shot = await asyncio.to_thread(png.read_bytes)
    assert len(shot) > 20_000 and shot[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("RESPONDER_KEEP_SCREENSHOT")  # a path, for a human to look at
    if keep:
        await asyncio.to_thread(Path(keep).write_bytes, shot)
    for needed in ("Timeline", "signal from graph.riskDetection", "Release",
                   "Cannot be undone", "What changed"):
        assert needed in page


async def test_no_password_or_token_in_reports_logs_or_journal(
        make_services, emulator, receiver, caplog, capsys, monkeypatch):
    from shared.playbook.steps import account

    generated: list[str] = []
    real = account.generate_password

    def observed(*a, **kw):  # the real generator, observed so the test knows the value
        generated.append(real(*a, **kw))
        return generated[-1]

    monkeypatch.setattr(account, "generate_password", observed)
    caplog.set_level(logging.DEBUG)
    svc = make_services(**notify_policy(receiver))
    # an admin: approval links are minted, then used; a normal user: contained, released
    await run_via_queue(svc, {"user": ADELE, "requestId": "sec-adm"})
    tokens = _tokens(receiver)
    assert (await _post(tokens["approve"], by="soc")).status_code == 200
    assert (await _post(tokens["approve"], by="again")).status_code == 409
    await run_via_queue(svc)
    await run_via_queue(svc, {"user": MEGAN, "requestId": "sec-megan"})
    await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "sec-megan"})
    assert len(generated) == 2
    assert (await svc.journal.get_run("sec-adm")).state == "finished"
    assert (await svc.journal.get_run("sec-megan")).state == "released"

    secrets_ = [*generated, *tokens.values(), APPROVAL_SECRET, WEBHOOK_SECRET, TOKEN]
    haystack = [caplog.text, json.dumps(await all_journal_rows(svc), default=str)]
    for run_id in ("sec-adm", "sec-megan"):
        report = await reports.load(svc, run_id)
        haystack += [reports.markdown(report), reports.html_page(report),
                     reports.json_text(report)]
        haystack.append(case_html(await load_case(svc, run_id)))
        for fmt in ("html", "md", "json"):
            haystack.append((await _report_http(run_id, fmt)).get_body().decode())
        haystack.append(json.dumps(await svc.journal.get_evidence(run_id, "evidence")))
    out = capsys.readouterr()
    haystack += [out.out, out.err]
    for text in haystack:
        for secret in secrets_:
            assert secret not in text
    # notifications carry no password (the approval mail/webhook carries its links only)
    sent = json.dumps(emulator.state()["sentMail"]) + b"".join(
        r["body"] for r in receiver.requests).decode()
    for password in generated:
        assert password not in sent
    for r in receiver.requests:
        if json.loads(r["body"])["event"] != "approval.needed":
            assert not any(t in r["body"].decode() for t in tokens.values())


async def test_every_log_line_of_a_run_carries_its_run_id(make_services, emulator):
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RunIdFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        svc = make_services()
        from shared.models import RemediationRequest
        from shared.playbook.runner import run_request

        await run_request(svc, RemediationRequest.model_validate(
            {"user": MEGAN, "requestId": "log-1", "actions": ["revoke_sessions"]}))
        with run_context("ctx-1"):
            logging.getLogger("anything.else").info("inside")
        logging.getLogger("anything.else").info("outside")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    records = [json.loads(x) for x in lines]
    runner = [r for r in records if r["logger"].startswith("responder.runner")]
    assert runner and all(r.get("run_id") == "log-1" for r in runner)
    assert next(r for r in records if r["message"] == "inside")["run_id"] == "ctx-1"
    assert "run_id" not in next(r for r in records if r["message"] == "outside")
