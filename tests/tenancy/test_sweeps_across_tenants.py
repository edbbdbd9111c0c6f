"""Sweeps across tenants, through the real path: the timer function with a real TimerRequest
-> each tenant's Services -> Azurite (each tenant's journal) and ONE emulator hosting the
tenants, every customer tenant reached with a real ClientAssertionCredential."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from devtools.emulator import make_tenant
from devtools.emulator.authz import read_jwt
from devtools.tokens import emulator_credential_factory
from functions import runtime
from functions import sweeps as sweep_functions
from functions.sweeps import SweepFailed
from shared.state.journal import Journal
from shared.sweeps.base import REPORTS, event_partition
from shared.sweeps.tenants import run_sweep_for_tenants, sweep_enabled_for
from shared.tenancy import TenantHub

from .conftest import APP_CLIENT_ID, TENANT_A, TENANT_B, assertion, register

DEFAULT = "contoso.onmicrosoft.com"


def audit_off(server: Any, tenant: str | None) -> str:
    """Turn one mailbox's auditing off in a tenant (generated tenants have it off already,
    the demo tenant's Megan too); its UPN."""
    state = server.tenant_of(tenant) if tenant else server.tenant
    with state.lock:
        user = next(u for u in state.users.values() if u.get("mailbox")
                    and "breakglass" not in u["userPrincipalName"].lower()
                    and not u["userPrincipalName"].lower().startswith("megan"))
        user["mailbox"]["auditEnabled"] = False
        return str(user["userPrincipalName"])


def audit_on(server: Any, tenant: str | None, upn: str) -> bool:
    state = server.tenant_of(tenant) if tenant else server.tenant
    with state.lock:
        user = next(u for u in state.users.values() if u["userPrincipalName"] == upn)
        return bool(user["mailbox"]["auditEnabled"])


async def tick(name: str = "audit") -> None:
    fn = getattr(sweep_functions, f"sweep_{name}").build().get_user_function()
    await fn(TimerRequest(past_due=False))


async def report(journal: Journal, name: str = "audit") -> dict:
    row = await journal.get_item(REPORTS, name)
    assert row is not None, f"no {name} report in {journal._table_name}"
    return json.loads(row["report"])


async def test_a_sweep_fixes_state_in_both_tenants(hub, two_tenants):
    await register(hub.registry)
    a_upn, b_upn = audit_off(two_tenants, None), audit_off(two_tenants, TENANT_B)
    two_tenants.clear_log()
    await tick()
    assert audit_on(two_tenants, None, a_upn) and audit_on(two_tenants, TENANT_B, b_upn)
    b = await hub.services_for(TENANT_B)
    assert b_upn in {a["identity"] for a in (await report(b.journal))["actions"]}
    assert a_upn in {a["identity"] for a in (await report(hub.default.journal))["actions"]}
    # each tenant's Exchange calls went to its own URL with its own token
    for entry in two_tenants.requests():
        if entry["api"] == "exchange":
            assert entry["status"] == 200, entry
    b_calls = two_tenants.requests(TENANT_B)
    assert b_calls and all(TENANT_B in e["path"] for e in b_calls if e["api"] == "exchange")
    assert (await hub.registry.get(TENANT_B)).consent_status == "ok"


async def test_a_withdrawn_consent_is_reported_and_the_others_still_swept(hub, two_tenants):
    await register(hub.registry)
    two_tenants.withdraw_consent(TENANT_B)
    a_upn, b_upn = audit_off(two_tenants, None), audit_off(two_tenants, TENANT_B)

    with pytest.raises(SweepFailed, match=TENANT_B):
        await tick()
    assert audit_on(two_tenants, None, a_upn), "tenant A is still swept"
    assert not audit_on(two_tenants, TENANT_B, b_upn)
    row = await hub.registry.get(TENANT_B)
    assert row.consent_status == "withdrawn" and "AADSTS700016" in row.last_error
    b = await hub.services_for(TENANT_B)
    b_report = await report(b.journal)
    assert b_report["status"] == "failed" and "AADSTS700016" in b_report["errors"][0]
    kept = json.dumps([row.model_dump(mode="json"), b_report,
                       await b.journal.events(event_partition("audit"))], default=str)
    assert "eyJ" not in kept and "client_assertion" not in kept  # no token, no assertion

    # the customer consents again: the next tick sweeps B and marks it ok
    two_tenants.grant_consent(TENANT_B)
    await tick()
    assert audit_on(two_tenants, TENANT_B, b_upn)
    row = await hub.registry.get(TENANT_B)
    assert row.consent_status == "ok" and row.last_error is None


async def test_a_token_refused_after_issue_is_a_withdrawal_and_recovers(hub, two_tenants):
    """B's credential holds a token from a first sweep; consent is withdrawn: Exchange
    answers 401 to it. The tick reports B, and once consent is back the next tick gets a
    fresh token (the refused one would stay refused until it expires)."""
    await register(hub.registry)
    await tick()
    two_tenants.withdraw_consent(TENANT_B)
    with pytest.raises(SweepFailed):
        await tick()
    row = await hub.registry.get(TENANT_B)
    assert row.consent_status == "withdrawn" and "HTTP 401" in row.last_error
    two_tenants.grant_consent(TENANT_B)
    b_upn = audit_off(two_tenants, TENANT_B)
    await tick()
    assert audit_on(two_tenants, TENANT_B, b_upn)
    assert (await hub.registry.get(TENANT_B)).consent_status == "ok"


async def test_features_limit_which_sweeps_run_for_a_tenant(hub, two_tenants):
    await register(hub.registry, features=["risky_users"])
    b_upn = audit_off(two_tenants, TENANT_B)
    done = await run_sweep_for_tenants(hub, "audit")
    assert done.result_of(TENANT_B).status == "skipped"
    assert not audit_on(two_tenants, TENANT_B, b_upn)
    assert done.result_of(DEFAULT).status == "ok"
    steps_only = (await register(hub.registry, features=["revoke_sessions"]))
    assert sweep_enabled_for(steps_only, "audit")  # features naming no sweep leave them all


class RecordingCredential:
    """A tenant's real credential, noting the `tid` of every token it hands out."""

    def __init__(self, inner: Any, tenant: str, seen: list[tuple[str, str]]) -> None:
        self._inner, self._tenant, self._seen = inner, tenant, seen

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        token = await self._inner.get_token(*scopes, **kwargs)
        self._seen.append((self._tenant, read_jwt(token.token)["tid"]))
        return token

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> RecordingCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()


@pytest.fixture
async def ten(two_tenants, mt_settings) -> AsyncIterator[tuple[TenantHub, list, list[str]]]:
    """The default tenant, B, and eight more on the same emulator, all registered."""
    from shared.playbook.catalogue import check_policy
    from tests.playbook.conftest import build_services

    others = [str(uuid.uuid4()) for _ in range(8)]
    for index, tenant in enumerate(others):
        two_tenants.add_tenant(make_tenant(3, seed=20 + index, domain=f"t{index}.example.com"),
                               tenant_id=tenant)
    seen: list[tuple[str, str]] = []
    real = emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)
    default = build_services(mt_settings)
    made = TenantHub(default, lambda t: RecordingCredential(real(t), t, seen),
                     check_policy=check_policy)
    runtime.use_hub(made)
    await register(made.registry)
    for index, tenant in enumerate(others):
        await register(made.registry, tenant, displayName=f"T{index}",
                       domains=[f"t{index}.example.com"])
    try:
        yield made, seen, [TENANT_B, *others]
    finally:
        runtime.use_hub(None)
        await made.close()
        await default.close()


async def test_ten_tenants_are_all_swept_each_with_its_own_token(ten, two_tenants):
    hub, seen, customers = ten
    offenders = {t: audit_off(two_tenants, t) for t in customers}
    a_upn = audit_off(two_tenants, None)
    two_tenants.clear_log()
    done = await run_sweep_for_tenants(hub, "audit")

    assert done.runs[0].tenant == DEFAULT
    assert {r.tenant for r in done.runs} == {DEFAULT, *customers} and len(done.runs) == 10
    assert all(r.result.status == "ok" for r in done.runs), done.summary()
    assert audit_on(two_tenants, None, a_upn)
    assert all(audit_on(two_tenants, t, upn) for t, upn in offenders.items())
    # every token a tenant's credential handed out was issued for that tenant
    assert {t for t, _ in seen} == set(customers)
    assert all(t == tid for t, tid in seen), [p for p in seen if p[0] != p[1]]
    # and no emulator request of a tenant carried another tenant's token: a request is
    # logged under its token's tid; Exchange URLs name the tenant acted on
    log = two_tenants.requests()
    for entry in log:
        assert entry["status"] != 401, entry
        if entry["api"] == "exchange":  # the default tenant's URL names its domain
            named = DEFAULT if entry["tenant"] == TENANT_A else entry["tenant"]
            assert named and f"/{named}/" in entry["path"], entry
    visited = {e["tenant"] for e in log if e["api"] in ("graph", "exchange")}
    assert set(customers) <= visited
    for tenant in customers:  # each tenant's report is in its own journal
        svc = await hub.services_for(tenant)
        assert offenders[tenant] in {a["identity"] for a in (await report(svc.journal))[
            "actions"]}


async def test_the_invocation_time_is_shared_between_tenants(ten, monkeypatch):
    """Each tenant gets at most an equal share of the invocation's time left (the default
    policy's maxSecondsPerRun), so the last tenant is never starved; time a tenant does not
    use goes to the tenants after it."""
    from shared.sweeps import tenants as across

    hub = ten[0]
    shares: list[float] = []
    real = across.run_sweep

    async def recording(services: Any, name: str, **kw: Any) -> Any:
        shares.append(kw["max_seconds"])
        return await real(services, name, **kw)

    monkeypatch.setattr(across, "run_sweep", recording)
    now = iter([0.0, 0.0] + [40.0 * (i + 1) for i in range(9)] + [1e9] * 20)
    done = await run_sweep_for_tenants(hub, "audit", clock=lambda: next(now))
    total = float(hub.default.policy.sweeps.max_seconds_per_run)
    assert len(done.runs) == 10 and len(shares) == 10
    # every tenant used 40 s: each share is the time left split between those left
    expected = [(total - 40.0 * i) / (10 - i) for i in range(10)]
    assert shares == pytest.approx([max(0.0, e) for e in expected])
    assert sum(min(40.0, s) for s in shares) <= total
