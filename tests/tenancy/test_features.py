"""A tenant's `features` bound what a request may do there: its playbooks are cut down to
them (shared.tenancy.tenant_policy), and explicit `actions` naming a step it has not enabled
are refused with the reason in the run record, before anything is called. Through the real
path: Azurite queue -> local host -> tenant B's Services -> ONE emulator, two tenants."""

from __future__ import annotations

from typing import Any

from tests.playbook.conftest import MEGAN, run_via_queue

from .conftest import TENANT_A, TENANT_B, b_user, register

FEATURES = ["revoke_sessions", "notify", "risky_users"]
"""Steps and a sweep; `notify` keeps the demo policy's notify-only playbook non-empty."""


def _user(server: Any, tenant: str, upn: str) -> dict:
    users = server.tenant_of(tenant).dump()["users"]
    return next(u for u in users if u["userPrincipalName"].lower() == upn.lower())


async def test_actions_outside_the_tenant_features_are_refused_in_the_run(hub, two_tenants):
    await register(hub.registry, features=FEATURES)
    upn = b_user(two_tenants)["userPrincipalName"]
    b_before = two_tenants.tenant_of(TENANT_B).dump()
    sessions_before = _user(two_tenants, TENANT_B, upn).get("sessionsRevokedCount", 0)
    two_tenants.clear_log()

    stats = await run_via_queue(hub.default, {
        "user": upn, "requestId": "feat-b-1", "tenant": TENANT_B,
        "actions": ["revoke_sessions", "disable_account", "reset_password"]})
    assert stats.failed == 0 and stats.poisoned == 0  # a refusal, not a retry or poison
    b_svc = await hub.services_for(TENANT_B)
    run = await b_svc.journal.get_run("feat-b-1")
    assert run is not None and run.state == "refused"
    assert "disable_account, reset_password not enabled for tenant " + TENANT_B in run.reason
    assert "revoke_sessions" not in run.reason.split("not enabled")[0]
    assert await b_svc.journal.step_results("feat-b-1") == {}  # no step ran, none skipped
    refused = [e for e in await b_svc.journal.events("feat-b-1") if e["kind"] == "refused"]
    assert refused and refused[0]["data"]["notEnabled"] == ["disable_account",
                                                            "reset_password"]
    assert two_tenants.requests() == [], "nothing was called in any tenant"
    assert two_tenants.tenant_of(TENANT_B).dump() == b_before
    assert await b_svc.journal.items("invalid-messages") == []

    # the enabled step alone runs (evidence is collected in every run)
    stats = await run_via_queue(hub.default, {
        "user": upn, "requestId": "feat-b-2", "tenant": TENANT_B,
        "actions": ["collect_evidence", "revoke_sessions"]})
    assert stats.failed == 0
    run = await b_svc.journal.get_run("feat-b-2")
    assert run.state == "finished", run.reason
    assert _user(two_tenants, TENANT_B, upn).get("sessionsRevokedCount", 0) == \
        sessions_before + 1


async def test_the_tenant_features_bound_that_tenant_only(hub, two_tenants):
    """The default tenant (no registry row of its own) runs any step, B's features aside."""
    await register(hub.registry, features=FEATURES)
    two_tenants.clear_log()
    stats = await run_via_queue(hub.default, {
        "user": MEGAN, "requestId": "feat-a-1", "dryRun": True,
        "actions": ["disable_account"]})
    assert stats.failed == 0
    run = await hub.default.journal.get_run("dry-feat-a-1")
    assert run is not None and run.state == "finished", run and run.reason
    assert {e["tenant"] for e in two_tenants.requests()} == {TENANT_A}


async def test_features_naming_only_sweeps_bound_no_step(hub, two_tenants):
    await register(hub.registry, features=["risky_users"])
    upn = b_user(two_tenants)["userPrincipalName"]
    stats = await run_via_queue(hub.default, {
        "user": upn, "requestId": "feat-b-3", "tenant": TENANT_B, "dryRun": True,
        "actions": ["disable_account"]})
    assert stats.failed == 0
    run = await (await hub.services_for(TENANT_B)).journal.get_run("dry-feat-b-3")
    assert run is not None and run.state == "finished", run and run.reason
