"""`python -m shared.cli replay FILE [--dry-run] [--json]`: the same normalise -> decide path,
printing which user(s) and playbook a saved payload produces; dry run enqueues nothing.
`replay --dead-letter` takes in again the Event Hub events kept after their last retry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main_async
from shared.services import Services
from tests.conftest import TOKEN
from tests.intake.conftest import FIXTURES, fixture_payload, intake_events, queued

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
        "RESPONDER_EVIDENCE_CONTAINER": "ev-" + uuid.uuid4().hex[:12],
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


async def test_dead_lettered_events_replay_from_the_cli_once(
        cli_env: dict[str, str], capsys: Any, monkeypatch: Any) -> None:
    from azure.core.exceptions import ServiceRequestError

    from functions import runtime
    from shared.intake import deadletter
    from tests.intake.test_triggers import (
        dead_letters,
        hub_event,
        queue_down,
        retry_context,
        user_function,
    )

    services = await _services(cli_env)
    runtime.use_services(services)
    try:
        # the real trigger, the queue down through the last retry: the event is kept
        with monkeypatch.context() as m:
            queue_down(services, m)
            body = json.dumps(fixture_payload("diag_mixed_batch_one_broken")).encode()
            with pytest.raises(ServiceRequestError):
                await user_function("risk_alert_eventhub")([hub_event(body, 3)],
                                                           retry_context(5))
        [kept] = await dead_letters(services)
        assert await queued(services) == []

        # dry run: says what it would do, keeps the item, queues nothing
        assert await main_async(["replay", "--dead-letter", "--dry-run", "--json"]) == 0
        [item] = json.loads(capsys.readouterr().out)["items"]
        assert item["result"] == "would-replay" and item["summary"]["wouldEnqueue"] == 2
        assert len(await dead_letters(services)) == 1 and await queued(services) == []

        # replay: taken in, item removed
        assert await main_async(["replay", "--dead-letter"]) == 0
        assert "replayed" in capsys.readouterr().out
        users = sorted(m["user"] for m in await queued(services))
        assert users == sorted([BOB, "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"])
        assert await dead_letters(services) == []
        assert [e["data"]["blob"] for e in await intake_events(services,
                                                                 "dead-letter-replayed")
                ] == [kept["name"]]

        # replaying again finds nothing; the same event kept again (a replay that died
        # before removing it) goes through dedupe: nothing is submitted twice
        assert await main_async(["replay", "--dead-letter", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["items"] == []
        await deadletter.keep(services, body, route="eventhub", reason="test", source={})
        assert await main_async(["replay", "--dead-letter", "--json"]) == 0
        [again] = json.loads(capsys.readouterr().out)["items"]
        assert again["result"] == "replayed" and again["summary"]["enqueued"] == 0
        assert again["summary"]["duplicates"] >= 2
        assert await queued(services) == []
        assert await dead_letters(services) == []
    finally:
        runtime.use_services(None)
        await services.close()


async def test_a_dead_letter_item_held_by_another_replay_is_skipped(
        cli_env: dict[str, str], capsys: Any) -> None:
    from shared.intake import deadletter

    services = await _services(cli_env)
    try:
        body = json.dumps(fixture_payload("defender_alert_evidence_user")).encode()
        name = await deadletter.keep(services, body, route="eventhub", reason="test",
                                     source={})
        blob = services.storage.blobs.get_blob_client(services.settings.evidence_container,
                                                      name)
        lease = await blob.acquire_lease(lease_duration=15)
        assert await main_async(["replay", "--dead-letter", "--json"]) == 1
        [item] = json.loads(capsys.readouterr().out)["items"]
        assert item["result"] == "skipped"
        assert await queued(services) == []
        await lease.release()
        assert await main_async(["replay", "--dead-letter"]) == 0
        assert len(await queued(services)) == 1
    finally:
        await services.close()


async def test_replay_needs_a_file_or_dead_letter(cli_env: dict[str, str], capsys: Any,
                                                  tmp_path: Path) -> None:
    assert await main_async(["replay"]) == 2
    assert "--dead-letter" in capsys.readouterr().err
    path = FIXTURES / "eventgrid_schema_array.json"
    assert await main_async(["replay", str(path), "--dead-letter"]) == 2
