"""README "First run in your tenant", verified: the exact commands it lists (preflight, a
dry-run report of one user, then the same with dry run off), run as `python -m shared.cli`
subprocesses with `make emulator`-like settings (the demo tenant on a loopback emulator with
the fixed local token, Azurite for storage, local.settings.sample.json's values)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from devtools.emulator import EmulatorServer, load_tenant

ROOT = Path(__file__).resolve().parents[2]
LOCAL_TOKEN = "local-emulator-token"  # the Makefile's fixed emulator token
USER = "megan@contoso.com"

pytestmark = pytest.mark.timeout(240)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def first_run_env(azurite: Any, emulator: EmulatorServer) -> dict[str, str]:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPONDER_", "GRAPH_",
                                                                     "EXCHANGE_"))}
    env.update({k: v for k, v in sample.items() if k.startswith("RESPONDER_")})
    env.update({
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_BASE_URL": emulator.base_url, "EXCHANGE_BASE_URL": emulator.base_url,
        "RESPONDER_STATIC_TOKEN": LOCAL_TOKEN,
        "RESPONDER_DRY_RUN": "true",  # step 1: deployed with dry run on
        "REMEDIATION_QUEUE": "rq-" + uuid.uuid4().hex[:12],
        "RESPONDER_JOURNAL_TABLE": "runs" + uuid.uuid4().hex[:12],
        "RESPONDER_EVIDENCE_CONTAINER": "ev-" + uuid.uuid4().hex[:12],
    })
    return env


def writes(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [e for e in emulator.requests() if e.get("write")]


def test_the_first_run_commands_of_the_readme(azurite: Any) -> None:
    with EmulatorServer(load_tenant("devtools/tenants/demo.json"), token=LOCAL_TOKEN,
                        seed=1) as emulator:
        env = first_run_env(azurite, emulator)

        # 2. python -m shared.cli preflight
        pre = cli(env, "preflight")
        assert pre.returncode == 0, pre.stdout + pre.stderr
        assert "dry-run" in pre.stdout and "RESPONDER_DRY_RUN is true" in pre.stdout
        assert "every enabled feature can run" in pre.stdout
        assert LOCAL_TOKEN not in pre.stdout + pre.stderr
        assert writes(emulator) == []

        # 3. python -m shared.cli remediate <upn> --dry-run: a report, nothing written
        dry = cli(env, "remediate", USER, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "reset_password" in dry.stdout
        assert writes(emulator) == []

        # 4. dry run off: the same command without --dry-run writes
        env["RESPONDER_DRY_RUN"] = "false"
        live = cli(env, "remediate", USER)
        assert live.returncode == 0, live.stdout + live.stderr
        assert writes(emulator), "a live run changes the tenant"
        megan = next(u for u in emulator.state()["users"]
                     if u["userPrincipalName"] == USER)
        assert megan.get("signInSessionsValidFromDateTime")
