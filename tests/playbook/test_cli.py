"""`python -m shared.cli remediate|report` against the emulator and Azurite."""

from __future__ import annotations

import json

import pytest

from shared.cli import main_async
from tests.playbook.conftest import MEGAN, writes


@pytest.fixture
def cli_env(monkeypatch, settings):
    env = {
        "AzureWebJobsStorage": settings.storage_connection,
        "RESPONDER_TENANT_ID": settings.tenant_id,
        "GRAPH_BASE_URL": settings.graph_base_url,
        "EXCHANGE_BASE_URL": settings.exchange_base_url,
        "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": settings.static_token,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
        "RESPONDER_JOURNAL_TABLE": settings.journal_table,
        "RESPONDER_EVIDENCE_CONTAINER": settings.evidence_container,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


async def test_dry_run_prints_the_plan_and_writes_nothing(cli_env, emulator, capsys):
    assert await main_async(["remediate", MEGAN, "--dry-run", "--request-id", "c1"]) == 0
    out = capsys.readouterr().out
    assert "would do" in out and "reset_password" in out and "(dry run)" in out
    assert writes(emulator) == []


async def test_remediate_json_and_report(cli_env, emulator, capsys):
    code = await main_async(["remediate", "o'brien@contoso.com", "--actions",
                             "revoke_sessions,require_mfa", "--request-id", "c2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "finished"
    assert [s["step"] for s in report["steps"]] == ["collect_evidence", "revoke_sessions",
                                                    "require_mfa"]
    assert await main_async(["report", "c2"]) == 0
    assert "revoke_sessions" in capsys.readouterr().out


async def test_failed_step_gives_exit_code_1(cli_env, emulator, capsys):
    emulator.add_fault(method="POST", path_regex=r"/revokeSignInSessions$", status=403,
                       code="Authorization_RequestDenied", message="Insufficient privileges",
                       count=None)
    assert await main_async(["remediate", MEGAN, "--actions", "revoke_sessions",
                             "--request-id", "c3"]) == 1
    assert "FAILED" in capsys.readouterr().out


async def test_bad_input_is_a_clear_usage_error(cli_env, emulator, capsys):
    assert await main_async(["remediate", "a/b", "--request-id", "c4"]) == 2
    assert await main_async(["remediate", MEGAN, "--actions", "format_disk"]) == 2
    err = capsys.readouterr().err
    assert "user" in err and "format_disk" in err
    assert writes(emulator) == []
