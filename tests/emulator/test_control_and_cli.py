"""The HTTP control API, the CLI, and the loopback-only rule."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from devtools.emulator import EmulatorServer

from .conftest import AUTH, MEGAN

ROOT = Path(__file__).resolve().parents[2]


def test_control_api(server):
    base = server.base_url + "/_emulator"
    with httpx.Client(timeout=5) as c:
        bucket = {"capacity": 1, "refill_per_sec": 0.01}
        r = c.post(base + "/config", json={"throttle": {"directory_write": bucket}})
        assert r.status_code == 200 and r.json()["throttle"]["directory_write"]["capacity"] == 1
        assert c.post(base + "/faults", json={"path_regex": "/groups", "status": 503}
                      ).status_code == 201
        assert c.get(server.base_url + "/v1.0/groups", headers=AUTH).status_code == 503
        log = c.get(base + "/log").json()
        assert len(log) == 1 and log[0]["fault"] == "scripted:503"  # control calls not logged
        assert c.delete(base + "/log").status_code == 204
        assert c.get(base + "/log").json() == []
        state = c.get(base + "/state").json()
        assert any(u["id"] == MEGAN for u in state["users"])
        r = c.post(base + "/tenant", json={"tenantId": "t2", "users": [
            {"userPrincipalName": "solo@contoso.com"}]})
        assert r.status_code == 200
        users = c.get(server.base_url + "/v1.0/users", headers=AUTH).json()["value"]
        assert [u["userPrincipalName"] for u in users] == ["solo@contoso.com"]
        assert c.post(base + "/faults", json={"path_regex": "x"}).status_code == 400


def test_non_loopback_refused():
    with pytest.raises(ValueError):
        EmulatorServer(host="0.0.0.0")  # noqa: S104
    r = subprocess.run([sys.executable, "-m", "devtools.emulator", "--host", "0.0.0.0"],  # noqa: S104
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "non-loopback" in r.stderr


def test_cli_prints_listening_line_and_serves():
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.emulator", "--host", "127.0.0.1", "--port", "0",
         "--token", "cli-token", "--seed", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))
        reader.start()
        reader.join(timeout=30)
        assert line and line[0].startswith("emulator listening on http://127.0.0.1:"), line
        url = line[0].strip().rsplit(" ", 1)[-1]
        assert not url.endswith(":0")
        r = httpx.get(url + "/v1.0/users/megan@contoso.com",
                      headers={"Authorization": "Bearer cli-token"}, timeout=5)
        assert r.status_code == 200 and r.json()["id"] == MEGAN
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
