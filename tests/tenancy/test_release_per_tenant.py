"""Release and reports act in the tenant they name, and only there: the queue (message
`tenant`), the report endpoint (`?tenant=`) and the CLI (`--tenant`), through Azurite, the
local host and ONE emulator hosting two tenants (B through a real ClientAssertionCredential).
A run id of tenant B asked for under tenant A is not found."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import azure.functions as func
import pytest

from devtools.tokens import emulator_credential_factory
from functions import runtime
from shared.cli import main
from shared.playbook.catalogue import check_policy
from shared.playbook.worker import INVALID_PARTITION
from shared.settings import Settings
from shared.tenancy import TenantHub
from tests.playbook.conftest import MEGAN, build_services, run_via_queue
from tests.safety.conftest import app_function

from .conftest import APP_CLIENT_ID, B_DOMAIN, TENANT_A, TENANT_B, assertion, b_user, register


def _user(server: Any, tenant: str, upn: str) -> dict:
    users = server.tenant_of(tenant).dump()["users"]
    return next(u for u in users if u["userPrincipalName"].lower() == upn.lower())


def _writes(server: Any, tenant: str) -> list[dict]:
    return [e for e in server.requests(tenant) if e.get("write")]


async def _disable_in_b(hub: TenantHub, server: Any, request_id: str) -> str:
    upn = b_user(server)["userPrincipalName"]
    stats = await run_via_queue(hub.default, {
        "user": upn, "requestId": request_id, "tenant": TENANT_B,
        "actions": ["disable_account"], "reason": "test"})
    assert stats.failed == 0 and stats.poisoned == 0
    assert _user(server, TENANT_B, upn)["accountEnabled"] is False
    return upn


async def test_a_queued_release_acts_in_its_tenant_only(hub, two_tenants):
    await register(hub.registry)
    upn = await _disable_in_b(hub, two_tenants, "rel-b-1")
    b_svc = await hub.services_for(TENANT_B)
    a_before = two_tenants.state()

    # B's run id asked for under the default tenant: not found, recorded in A's journal
    two_tenants.clear_log()
    stats = await run_via_queue(hub.default, {"user": upn, "action": "release",
                                              "runId": "rel-b-1", "requestId": "rel-x-1"})
    assert stats.failed == 0
    [row] = await hub.default.journal.items(INVALID_PARTITION)
    assert "no run 'rel-b-1' to release" in row["reason"]
    assert two_tenants.requests() == []
    assert _user(two_tenants, TENANT_B, upn)["accountEnabled"] is False
    assert (await b_svc.journal.get_run("rel-b-1")).state == "finished"

    # a run id B does not have, under B: not found, recorded in B's journal (not A's)
    await run_via_queue(hub.default, {"user": MEGAN, "action": "release", "runId": "a-only",
                                      "tenant": TENANT_B, "requestId": "rel-x-2"})
    [b_row] = await b_svc.journal.items(INVALID_PARTITION)
    assert "no run 'a-only' to release" in b_row["reason"]
    assert len(await hub.default.journal.items(INVALID_PARTITION)) == 1

    # under B, by its domain: released in B, A untouched
    stats = await run_via_queue(hub.default, {"user": upn, "action": "release",
                                              "runId": "rel-b-1", "tenant": B_DOMAIN,
                                              "requestId": "rel-b-1-release"})
    assert stats.failed == 0 and stats.poisoned == 0
    assert _user(two_tenants, TENANT_B, upn)["accountEnabled"] is True
    assert (await b_svc.journal.get_run("rel-b-1")).state == "released"
    assert two_tenants.state() == a_before and _writes(two_tenants, TENANT_A) == []

    # by user, under B: the user's latest unreleased run in B's journal
    await _disable_in_b(hub, two_tenants, "rel-b-2")
    await run_via_queue(hub.default, {"user": upn, "action": "release", "tenant": TENANT_B,
                                      "requestId": "rel-b-2-release"})
    assert _user(two_tenants, TENANT_B, upn)["accountEnabled"] is True
    assert (await b_svc.journal.get_run("rel-b-2")).state == "released"
    assert await hub.default.journal.get_run("rel-b-2") is None


async def _report(run_id: str, **params: str) -> func.HttpResponse:
    req = func.HttpRequest("GET", f"http://localhost/api/runs/{run_id}/report",
                           params={"format": "json", **params},
                           route_params={"runId": run_id}, body=b"")
    return await app_function("run_report")(req)


async def test_the_report_endpoint_reads_the_named_tenant(hub, two_tenants):
    await register(hub.registry)
    upn = await _disable_in_b(hub, two_tenants, "rep-b-1")
    assert (await _report("rep-b-1")).status_code == 404  # not the default tenant's run
    assert (await _report("rep-b-1", tenant=TENANT_A)).status_code == 404
    unknown = await _report("rep-b-1", tenant="0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")
    assert unknown.status_code == 404 and unknown.get_body() == b"unknown tenant"
    for tenant in (TENANT_B, B_DOMAIN):
        resp = await _report("rep-b-1", tenant=tenant)
        assert resp.status_code == 200, resp.get_body()
        assert upn.lower() in resp.get_body().decode().lower()
    case = await _report("rep-b-1", tenant=TENANT_B, format="case")
    assert case.status_code == 200 and "rep-b-1" in case.get_body().decode()


@pytest.fixture
def cli_env(monkeypatch, azurite, two_tenants) -> Settings:
    """The CLI's environment (the default tenant on the static token) and the federated
    app's credentials for the other tenants, against the emulator."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "RESPONDER_TENANT_ID": TENANT_A,
        "GRAPH_BASE_URL": two_tenants.base_url,
        "EXCHANGE_BASE_URL": two_tenants.base_url,
        "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": two_tenants.token,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
        "REMEDIATION_QUEUE": "rq-" + uuid.uuid4().hex[:12],
        "RESPONDER_JOURNAL_TABLE": "runs" + uuid.uuid4().hex[:12],
        "RESPONDER_EVIDENCE_CONTAINER": "ev-" + uuid.uuid4().hex[:12],
        "RESPONDER_TENANTS_TABLE": "tenants" + uuid.uuid4().hex[:12],
        "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from shared.tenant import credentials

    monkeypatch.setattr(credentials, "credential_factory", lambda settings: (
        emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)))
    return Settings.from_env(dict(os.environ))


def _run_in_b(settings: Settings, server: Any, request_id: str) -> str:
    """A run of tenant B through the queue, with the CLI's settings."""
    async def go() -> str:
        default = build_services(settings)
        hub = TenantHub(default, emulator_credential_factory(server.base_url, APP_CLIENT_ID,
                                                             assertion),
                        check_policy=check_policy)
        runtime.use_hub(hub)
        try:
            await register(hub.registry)
            return await _disable_in_b(hub, server, request_id)
        finally:
            runtime.use_hub(None)
            await hub.close()
            await default.close()
    return asyncio.run(go())


def test_cli_report_and_release_take_the_tenant(cli_env, two_tenants, capsys):
    upn = _run_in_b(cli_env, two_tenants, "cli-b-1")

    assert main(["report", "cli-b-1"]) == 1  # the default tenant has no such run
    assert "no run 'cli-b-1'" in capsys.readouterr().err
    assert main(["report", "cli-b-1", "--tenant", TENANT_B, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert json.dumps(shown).count("cli-b-1") and upn.lower() in json.dumps(shown).lower()
    assert main(["report", "cli-b-1", "--tenant", "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"]) == 2
    assert "unknown tenant" in capsys.readouterr().err

    two_tenants.clear_log()
    assert main(["release", "cli-b-1"]) == 2  # under the default tenant: not found
    assert "no run 'cli-b-1' to release" in capsys.readouterr().err
    assert main(["release", "--user", upn]) == 2
    assert f"no runs for user {upn!r}" in capsys.readouterr().err
    assert two_tenants.requests() == []
    assert _user(two_tenants, TENANT_B, upn)["accountEnabled"] is False

    a_before = two_tenants.state()
    assert main(["release", "cli-b-1", "--tenant", B_DOMAIN]) == 0
    out = capsys.readouterr().out
    assert "release of cli-b-1" in out
    assert _user(two_tenants, TENANT_B, upn)["accountEnabled"] is True
    assert two_tenants.state() == a_before and _writes(two_tenants, TENANT_A) == []
    assert main(["report", "cli-b-1", "--tenant", TENANT_B]) == 0
    assert "released" in capsys.readouterr().out
