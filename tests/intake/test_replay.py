"""`python -m shared.cli replay FILE [--dry-run] [--json]`: the same normalise -> decide path,
printing which user(s) and playbook a saved payload produces; dry run enqueues nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main_async
from shared.services import Services
from tests.conftest import TOKEN
from tests.intake.conftest import FIXTURES, intake_events, queued

ALICE = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"
BOB = "0f9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"


@pytest.fixture
def cli_env(azurite: Any, emulator: Any, monkeypatch: Any, tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"exclusions": {"users": ["alice@contoso.com"]}}))
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
        "GRAPH_BASE_URL": emulator.base_url, "EXCHANGE_BASE_URL": emulator.base_url,
        "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": TOKEN,
        "REMEDIATION_QUEUE": "rq-" + uuid.uuid4().hex[:12],
        "RESPONDER_JOURNAL_TABLE": "runs" + uuid.uuid4().hex[:12],
        "RESPONDER_POLICY": str(policy),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


async def _services(env: dict[str, str]) -> Services:
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential

    return Services.create(Settings.from_env(env), credential=StaticTokenCredential(TOKEN))


async def test_dry_run_prints_users_and_playbooks_and_enqueues_nothing(
        cli_env: dict[str, str], capsys: Any) -> None:
    path = FIXTURES / "eventgrid_schema_array.json"
    code = await main_async(["replay", str(path), "--dry-run", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = sorted((r["user"], r["outcome"], r["playbook"]) for r in report["items"])
    # ALICE is excluded by this policy (by UPN): refused, with the reason.
    assert rows == sorted([(ALICE, "refused", None), (BOB, "would-enqueue", "standard")])
    services = await _services(cli_env)
    try:
        assert await queued(services) == []
        assert await intake_events(services) == []
    finally:
        await services.close()


async def test_text_output_and_a_real_replay_enqueues(cli_env: dict[str, str],
                                                      capsys: Any) -> None:
    path = FIXTURES / "diag_mixed_batch_one_broken.json"
    assert await main_async(["replay", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "would-enqueue" in text and "standard" in text and "problem" in text
    assert await main_async(["replay", str(path)]) == 0
    capsys.readouterr()
    services = await _services(cli_env)
    try:
        users = sorted(m["user"] for m in await queued(services))
        assert users == sorted([BOB, "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"])
        assert len(await intake_events(services, "refused")) == 1  # ALICE, excluded
    finally:
        await services.close()


async def test_unreadable_payloads_exit_2(cli_env: dict[str, str], capsys: Any,
                                          tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert await main_async(["replay", str(bad), "--dry-run"]) == 2
    assert "UnknownShape" in capsys.readouterr().err
    assert await main_async(["replay", str(tmp_path / "missing.json")]) == 2
