"""`python -m shared.cli tenant add|list|show|remove` and `preflight --tenant`, through
`shared.cli.main` against Azurite (and the two-tenant emulator for the preflight)."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.data.tables import TableClient

from shared.cli import main

from .conftest import APP_CLIENT_ID, B_DOMAIN, TENANT_A, TENANT_B, assertion


@pytest.fixture
def cli_env(monkeypatch, azurite, two_tenants):
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "RESPONDER_TENANT_ID": TENANT_A,
        "GRAPH_BASE_URL": two_tenants.base_url,
        "EXCHANGE_BASE_URL": two_tenants.base_url,
        "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": two_tenants.token,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
        "RESPONDER_JOURNAL_TABLE": "runs" + uuid.uuid4().hex[:12],
        "RESPONDER_EVIDENCE_CONTAINER": "ev-" + uuid.uuid4().hex[:12],
        "RESPONDER_TENANTS_TABLE": "tenants" + uuid.uuid4().hex[:12],
        "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def rows(env) -> list[dict]:
    with TableClient.from_connection_string(env["AzureWebJobsStorage"],
                                            env["RESPONDER_TENANTS_TABLE"]) as table:
        return [dict(e) for e in table.list_entities()]


def test_tenant_add_list_show_remove(cli_env, capsys):
    assert main(["tenant", "list"]) == 0  # no table yet: an empty registry
    assert "(0 registered tenant(s)" in capsys.readouterr().out
    assert main(["tenant", "add", "--tenant-id", TENANT_B.upper(), "--name", "Fabrikam",
                 "--domain", B_DOMAIN, "--domain", "fabrikam.onmicrosoft.com",
                 "--exclude", "ceo@fabrikam.com", "--notify", "soc@fabrikam.com",
                 "--feature", "revoke_sessions", "--feature", "notify",
                 "--feature", "risky_users"]) == 0
    out = capsys.readouterr().out
    link = (f"https://login.microsoftonline.com/{TENANT_B}/adminconsent"
            f"?client_id={APP_CLIENT_ID}")
    assert link in out
    assert f"python -m shared.cli preflight --tenant {TENANT_B}" in out
    [row] = rows(cli_env)
    assert (row["PartitionKey"], row["RowKey"]) == ("tenants", TENANT_B)
    assert row["displayName"] == "Fabrikam" and row["enabled"] is True
    assert json.loads(row["domains"]) == [B_DOMAIN, "fabrikam.onmicrosoft.com"]
    assert json.loads(row["exclusions"]) == ["ceo@fabrikam.com"]
    assert json.loads(row["features"]) == ["revoke_sessions", "notify", "risky_users"]
    assert row["consentStatus"] == "unknown" and row["addedAt"]

    assert main(["tenant", "list"]) == 0
    out = capsys.readouterr().out
    assert TENANT_B in out and "Fabrikam" in out and "(1 registered tenant(s)" in out
    assert main(["tenant", "list", "--json"]) == 0
    assert [t["tenantId"] for t in json.loads(capsys.readouterr().out)] == [TENANT_B]
    assert main(["tenant", "show", TENANT_B]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["domains"] == [B_DOMAIN, "fabrikam.onmicrosoft.com"]
    assert shown["notify"] == ["soc@fabrikam.com"] and shown["adminConsentUrl"] == link

    assert main(["tenant", "remove", TENANT_B]) == 0
    assert "kept" in capsys.readouterr().out
    assert rows(cli_env) == []
    assert main(["tenant", "remove", TENANT_B]) == 1
    assert main(["tenant", "show", TENANT_B]) == 1


@pytest.mark.parametrize("argv", [
    ["--tenant-id", "fabrikam.com"],
    ["--tenant-id", TENANT_B, "--domain", "not a domain"],
    ["--tenant-id", TENANT_B, "--feature", "format_disk"],
    # the demo policy's low risk level runs `notify-only`: features without notify empty it
    ["--tenant-id", TENANT_B, "--feature", "revoke_sessions"],
    ["--tenant-id", TENANT_B, "--policy", "../../etc/passwd.json"],
    ["--tenant-id", TENANT_B, "--policy", '{"playbooks": {"x": ["format_disk"]}}'],
])
def test_bad_tenant_add_is_a_usage_error_and_writes_nothing(cli_env, capsys, argv):
    assert main(["tenant", "add", *argv]) == 2
    assert capsys.readouterr().err
    assert main(["tenant", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_preflight_for_a_tenant(cli_env, two_tenants, capsys, monkeypatch):
    # not registered: refused before anything is called
    two_tenants.clear_log()
    assert main(["preflight", "--tenant", TENANT_B]) == 2
    assert "unknown tenant" in capsys.readouterr().err
    assert two_tenants.requests() == []
    assert main(["tenant", "add", "--tenant-id", TENANT_B, "--domain", B_DOMAIN]) == 0
    # static-token acts for the default tenant only
    assert main(["preflight", "--tenant", TENANT_B]) == 2
    assert "federated-app" in capsys.readouterr().err
    # with the federated app's credentials, the preflight reads tenant B and only B
    from devtools.tokens import emulator_credential_factory
    from shared.tenant import credentials

    monkeypatch.setattr(credentials, "credential_factory", lambda settings: (
        emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)))
    two_tenants.clear_log()
    code = main(["preflight", "--tenant", B_DOMAIN, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report
    assert two_tenants.requests() and \
        {e["tenant"] for e in two_tenants.requests()} == {TENANT_B}


def test_replay_routes_each_alert_to_the_tenant_it_names(cli_env, two_tenants, capsys,
                                                         monkeypatch, tmp_path):
    """`replay FILE` takes a saved payload in as live intake would: an alert naming tenant
    B is queued for B and deduplicated in B's rows; an unregistered tenant is refused."""
    import asyncio
    import uuid as _uuid

    from devtools.tokens import emulator_credential_factory
    from shared.intake.dedupe import USERS_PARTITION
    from shared.services import Services
    from shared.settings import Settings
    from shared.state import partitions
    from shared.tenant import credentials
    from shared.tenant.credentials import StaticTokenCredential
    from tests.conftest import TOKEN
    from tests.intake.conftest import queued

    from .conftest import b_user
    from .test_intake_routing import security_alert

    monkeypatch.setenv("REMEDIATION_QUEUE", "rq-" + _uuid.uuid4().hex[:12])
    monkeypatch.setattr(credentials, "credential_factory", lambda settings: (
        emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)))
    assert main(["tenant", "add", "--tenant-id", TENANT_B, "--domain", B_DOMAIN]) == 0
    stranger = str(_uuid.uuid4())
    user = b_user(two_tenants)
    payload = tmp_path / "alerts.json"
    payload.write_text(json.dumps([security_alert(TENANT_B, user, "al-b-r"),
                                   security_alert(stranger, user, "al-x-r")]))
    capsys.readouterr()
    two_tenants.clear_log()
    code = main(["replay", str(payload), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert sorted(r["outcome"] for r in report["items"]) == ["enqueued", "refused"]
    # whatever the intake read, it read in B's tenant, with B's token
    assert {e["tenant"] for e in two_tenants.requests()} <= {TENANT_B}

    async def check() -> None:
        settings = Settings.from_env()
        default = Services.create(settings, credential=StaticTokenCredential(TOKEN))
        b = Services.create(settings.for_tenant(TENANT_B),
                            credential=StaticTokenCredential(TOKEN))
        try:
            [message] = await queued(default)
            assert message["tenant"] == TENANT_B and message["user"] == user["id"]
            rows_b = await b.journal.items(USERS_PARTITION)
            assert {r.get("requestId") for r in rows_b} >= {message["requestId"]}
            assert await default.journal.items(USERS_PARTITION) == []
            refused = await default.journal.events(partitions.INTAKE)
            assert [(r["kind"], r["data"]["code"]) for r in refused] == [
                ("refused", "unknown_tenant")]
        finally:
            await b.close()
            await default.close()

    asyncio.run(check())
