"""The tenant emulator in its own process, so it does not share the benchmark's GIL.

On a 2-core machine the worker (kiota, pydantic, the storage SDK) and the emulator (aiohttp)
each want a core; in one process they would serialise on the GIL and the emulator's
latency would stretch. The request log and config are reached over its control API.
`time.monotonic()` is CLOCK_MONOTONIC on Linux, shared by every process, so the log's `t`
compares directly with the benchmark's clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devtools.azurite import stop_process

ROOT = Path(__file__).resolve().parent.parent


class EmulatorProcess:
    """`python -m devtools.emulator` with a seed file and a config file, on a free port."""

    def __init__(self, tenant: dict[str, Any], config: dict[str, Any], *, token: str,
                 workdir: Path, seed: int = 0, name: str = "emulator") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.tenant_file = workdir / f"{name}-tenant.json"
        self.config_file = workdir / f"{name}-config.json"
        seed_doc = {k: v for k, v in tenant.items() if k != "offenders"}
        self.tenant_file.write_text(json.dumps(seed_doc), encoding="utf-8")
        self.config_file.write_text(json.dumps(config), encoding="utf-8")
        self.token = token
        self.seed = seed
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        cmd = [sys.executable, "-m", "devtools.emulator", "--host", "127.0.0.1", "--port", "0",
               "--tenant", str(self.tenant_file), "--config", str(self.config_file),
               "--token", self.token, "--seed", str(self.seed)]
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                if self.process.poll() is not None:
                    raise RuntimeError("the emulator process exited before listening")
                continue
            if "listening on" in line:
                self.base_url = line.strip().rsplit(" ", 1)[-1]
                return self
        raise RuntimeError("the emulator did not start in time")

    def _control(self, method: str, what: str, body: Any = None) -> Any:
        with httpx.Client(timeout=120) as client:
            resp = client.request(method, f"{self.base_url}/_emulator/{what}", json=body)
            resp.raise_for_status()
            return resp.json() if resp.content else None

    def requests(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "log"))

    def state(self) -> dict[str, Any]:
        return dict(self._control("GET", "state"))

    def configure(self, **config: Any) -> dict[str, Any]:
        return dict(self._control("POST", "config", config))

    def clear_log(self) -> None:
        self._control("DELETE", "log")

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
