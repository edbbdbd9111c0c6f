"""Start Azurite (from the project's pinned npm package) on free loopback ports.

Used by the test fixture, the demo and the benchmarks. In-memory, so every start is clean;
`--skipApiVersionCheck` because the Python storage SDK speaks a newer API version than
Azurite knows.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key: not a secret.
DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTEN = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at "
                     r"http://127\.0\.0\.1:(\d+)")


@dataclass
class Azurite:
    """A running Azurite process and its connection string."""

    process: subprocess.Popen[str]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a helper process, killing it if it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise FileNotFoundError(
        "Azurite is not installed: run `npm ci` (or `make setup`) in the project root"
    )


def start_azurite(timeout: float = 60.0) -> Azurite:
    """Start Azurite in memory on free ports and wait until all three services listen."""
    cmd = [
        azurite_binary(), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
        "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
        "--blobPort", "0", "--queuePort", "0", "--tablePort", "0", "--disableTelemetry",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    ports: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(ports) < 3:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("Azurite did not start (is `npm ci` done?)")
        line = proc.stdout.readline()
        match = _LISTEN.search(line)
        if match:
            ports[match.group(1)] = int(match.group(2))
    # keep draining output so the pipe never fills and blocks Azurite
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    return Azurite(proc, ports["Blob"], ports["Queue"], ports["Table"])


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for _ in proc.stdout:
        pass
