"""Fairness between tenants, through the real path: Azurite queues -> the local host ->
the queue-triggered functions -> each tenant's Services -> ONE emulator hosting the
tenants, every tenant reached with a real ClientAssertionCredential (the deployment's
federated-app credential, devtools/tokens.py).

A storm in tenant A must not hold back tenant B's first containment; nothing of A's may be
lost; a deployment with no registered tenants moves nothing and spends nothing more."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

import function_app
from bench.emulator_proc import EmulatorProcess
from bench.measure import is_password_write, is_revoke_write
from devtools.emulator import make_tenant
from devtools.emulator.generate import DEFAULT_OFFENDERS
from devtools.localhost import LocalHost, host_queue_settings
from devtools.tokens import emulator_credential_factory, managed_identity_issuer
from functions import runtime
from shared.playbook import fairness
from shared.playbook.catalogue import check_policy
from shared.policy import parse_policy
from shared.services import Services
from shared.settings import Settings
from shared.state import partitions
from shared.state.storage import poison_queue_name
from shared.state.tenants import TenantRecord
from shared.tenancy import TenantHub
from shared.tenant.pacing import LANE_CONCURRENCY, TenantShares
from tests.conftest import TOKEN, make_settings
from tests.playbook.conftest import DEMO_POLICY

from .conftest import APP_CLIENT_ID, MI_PRINCIPAL, TENANT_A, TENANT_B, assertion

MI_CLIENT_ID = "6c1b2a3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CONTAIN = ["reset_password", "revoke_sessions"]
STORM = 150
BOUND = 75
"""B is contained before A's 75th containment (without the move it comes after all 150; 16
containments of A run beside B in the instance, and B came after 63 of them once in CI)."""


def _quiet_tenant(n: int, seed: int, domain: str) -> dict[str, Any]:
    """n plain mailbox users, no privileged user or other offender (no approval waits)."""
    return make_tenant(n, seed=seed, domain=domain,
                       offenders=dict.fromkeys(DEFAULT_OFFENDERS, 0))


class World:
    """ONE emulator in its own process (as the benchmark runs it: no GIL shared with the
    worker) hosting the default tenant A and the others, with the multi-tenant app
    federated with the managed identity; `seeds` are what each tenant was made from."""

    def __init__(self, a_users: int, *others: tuple[str, dict[str, Any]],
                 workdir: Path) -> None:
        seed = _quiet_tenant(a_users, 11, "contoso.com")
        seed["tenantId"] = TENANT_A
        self.seeds = {TENANT_A: seed, **dict(others)}
        self.proc = EmulatorProcess(seed, {"throttle": {"identity_protection": {"rps": 1.0}}},
                                    token=TOKEN, workdir=workdir, name="fair")

    def __enter__(self) -> World:
        self.proc.start()
        for tenant_id, seed in list(self.seeds.items())[1:]:
            self.proc._control("POST", "tenants", {
                "seed": {k: v for k, v in seed.items() if k != "offenders"},
                "tenantId": tenant_id})
        self.proc.configure(app_client_id=APP_CLIENT_ID, federated={
            "issuer": managed_identity_issuer(TENANT_A), "subject": MI_PRINCIPAL,
            "audience": "api://AzureADTokenExchange"})
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()

    @property
    def base_url(self) -> str:
        return self.proc.base_url

    def requests(self) -> list[dict]:
        return self.proc.requests()

    def clear_log(self) -> None:
        self.proc.clear_log()

    def users(self, tenant: str) -> list[dict]:
        return [u for u in self.seeds[tenant]["users"]
                if u["userPrincipalName"].startswith("user")]


def _users(world: World, tenant: str) -> list[dict]:
    return world.users(tenant)


@pytest.fixture
def storm_world(tmp_path) -> Iterator[World]:
    """Tenant A (the default) with 160 users, tenant B with 4, on one emulator."""
    with World(STORM + 10, (TENANT_B, _quiet_tenant(4, 3, "fabrikam.com")),
               workdir=tmp_path) as world:
        yield world


def _settings(azurite: Any, server: World, **extra: str) -> Settings:
    """A multi-tenant deployment's settings (federated-app): A is RESPONDER_TENANT_ID."""
    env = {"RESPONDER_TENANT_ID": TENANT_A, "RESPONDER_CREDENTIAL": "federated-app",
           "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID, "AZURE_CLIENT_ID": MI_CLIENT_ID,
           "RESPONDER_TENANTS_TABLE": "tenants" + uuid.uuid4().hex[:12], **extra}
    return make_settings(azurite, server, **env)


def _hub(settings: Settings, server: World,
         hooks: dict[str, Any] | None = None) -> TenantHub:
    """Default Services and every other tenant's on real ClientAssertionCredentials."""
    factory = emulator_credential_factory(server.base_url, APP_CLIENT_ID, assertion)
    default = Services.create(settings, credential=factory(settings.tenant_id),
                              policy=parse_policy(DEMO_POLICY), confirm_window=0.05,
                              storage_hooks=hooks)
    return TenantHub(default, factory, check_policy=check_policy)


@pytest.fixture
async def storm_hub(azurite, storm_world) -> AsyncIterator[TenantHub]:
    made = _hub(_settings(azurite, storm_world), storm_world)
    runtime.use_hub(made)
    yield made
    runtime.use_hub(None)
    await made.close()
    await made.default.close()


async def _register(hub: TenantHub, *tenants: str) -> None:
    for i, tenant in enumerate(tenants):
        await hub.registry.add(TenantRecord.model_validate(
            {"tenantId": tenant, "displayName": f"Customer {i}"}))


def _host(hub: TenantHub) -> LocalHost:
    return LocalHost(function_app.app, hub.default.storage,
                     {"REMEDIATION_QUEUE": hub.default.settings.remediation_queue},
                     visibility_timeout=0.2)


async def _count(hub: TenantHub, queue: str) -> int:
    try:
        props = await hub.default.storage.queue(queue).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


async def _poisoned(hub: TenantHub) -> int:
    s = hub.default.settings
    return sum([await _count(hub, poison_queue_name(q))
                for q in (s.remediation_queue, s.cleanup_queue, s.overflow_queue)])


def _contained_at(log: list[dict], tenant: str) -> dict[str, float]:
    """User id -> when both its password reset and its session revocation had arrived."""
    password: dict[str, float] = {}
    revoke: dict[str, float] = {}
    for e in log:
        if (e.get("tenant") or "").lower() != tenant:
            continue
        uid = is_password_write(e)
        if uid:
            password.setdefault(uid, e["t"])
        uid = is_revoke_write(e)
        if uid:
            revoke.setdefault(uid, e["t"])
    return {u: max(password[u], revoke[u]) for u in password if u in revoke}


async def _moved_runs(svc: Services) -> int:
    runs = await svc.journal.list_runs(limit=10_000)
    moved = 0
    for run in runs:
        events = await svc.journal.events(run.run_id)
        moved += any(e.get("kind") == "run-started" and e["data"].get("moved")
                     for e in events)
    return moved


async def _storm_then_newcomer(hub: TenantHub, server: World) -> dict[str, Any]:
    """STORM requests of A queued, then one of B; run until idle; what happened."""
    a_users = _users(server, TENANT_A)[:STORM]
    b_user = _users(server, TENANT_B)[0]
    queue = hub.default.settings.remediation_queue
    for i, user in enumerate(a_users):
        await hub.default.storage.enqueue(queue, json.dumps(
            {"user": user["userPrincipalName"], "requestId": f"a-{i}", "actions": CONTAIN}))
    await hub.default.storage.enqueue(queue, json.dumps(
        {"user": b_user["userPrincipalName"], "requestId": "b-1", "tenant": TENANT_B,
         "actions": CONTAIN}))
    server.clear_log()
    stats = await _host(hub).run_until_idle(240)
    log = server.requests()
    a_times = sorted(_contained_at(log, TENANT_A).values())
    b_times = _contained_at(log, TENANT_B)
    return {"stats": stats, "a": a_times, "b": b_times.get(b_user["id"]), "b_user": b_user,
            "log": log}


async def test_a_storm_in_one_tenant_leaves_another_tenants_first_containment_early(
        storm_hub, storm_world):
    hub = storm_hub
    await _register(hub, TENANT_B)
    seen = await _storm_then_newcomer(hub, storm_world)
    a_times, b_at = seen["a"], seen["b"]
    assert len(a_times) == STORM, "every account of A was contained"
    assert b_at is not None, "B's account was contained"
    assert b_at < a_times[BOUND - 1], (
        f"B contained after {sum(t < b_at for t in a_times)} of A's containments")
    # B's first containment ran as a newcomer's: A started no further one meanwhile
    assert hub.default.lanes.urgent_runs == 1 and hub.default.lanes.deferred > 0
    assert hub.shares.moved > 0 and hub.shares.in_flight == {}
    # B's journal records its containment; nothing of B's run was moved
    b_svc = await hub.services_for(TENANT_B)
    b_run = await b_svc.journal.get_run("b-1")
    assert b_run is not None and b_run.state == "finished"
    steps = await b_svc.journal.step_results("b-1")
    assert {n: steps[n].status.value for n in CONTAIN} == dict.fromkeys(CONTAIN, "done")
    assert await _moved_runs(b_svc) == 0
    # every A request finished, once, and the moves are counted in the runs' events
    a_runs = await hub.default.journal.list_runs(limit=10_000)
    assert len(a_runs) == STORM and {r.state for r in a_runs} == {"finished"}
    assert await _moved_runs(hub.default) == hub.shares.moved
    assert seen["stats"].by_function.get("remediation_overflow") == hub.shares.moved
    password_writes = [is_password_write(e) for e in seen["log"]]
    assert len([u for u in password_writes if u]) == STORM + 1, "no password reset twice"
    assert await _poisoned(hub) == 0
    s = hub.default.settings
    for q in (s.remediation_queue, s.overflow_queue, s.cleanup_queue):
        assert await _count(hub, q) == 0, q
    # Identity Protection and the other budgets are per tenant: B's Services have their own
    assert b_svc.identity_budget is not hub.default.identity_budget
    assert b_svc.settings.journal_table != hub.default.settings.journal_table


async def test_without_the_move_the_newcomer_waits_behind_the_storm(storm_hub, storm_world,
                                                                     monkeypatch):
    """The bound above discriminates: the same storm with fairness off (as a single-tenant
    deployment runs) contains B only after most of A."""
    async def one_tenant(_hub: Any) -> int:
        return 1

    monkeypatch.setattr(fairness, "tenants_served", one_tenant)
    await _register(storm_hub, TENANT_B)
    seen = await _storm_then_newcomer(storm_hub, storm_world)
    assert len(seen["a"]) == STORM and seen["b"] is not None
    assert seen["b"] > seen["a"][BOUND - 1]
    assert storm_hub.shares.moved == 0


async def test_a_crash_between_the_move_and_the_completion_runs_once(storm_hub, storm_world,
                                                                     monkeypatch):
    """Moved (enqueued on the overflow queue), then the delivery dies before it completes:
    the original comes back (a retry, never moved) and the copy runs too. One run, each
    change made once, nothing poisoned."""
    hub = storm_hub
    await _register(hub, TENANT_B)
    hub.shares.in_flight[TENANT_A] = LANE_CONCURRENCY  # A holds the whole lane already
    real_move = fairness.move_to_overflow
    moves: list[str] = []

    async def move_then_crash(services: Services, request: Any) -> str:
        moves.append(await real_move(services, request))
        raise RuntimeError("instance lost after the move, before the completion")

    monkeypatch.setattr(fairness, "move_to_overflow", move_then_crash)
    user = _users(storm_world, TENANT_A)[0]
    await hub.default.storage.enqueue(hub.default.settings.remediation_queue, json.dumps(
        {"user": user["userPrincipalName"], "requestId": "crash-1", "actions": CONTAIN}))
    storm_world.clear_log()
    first = _host(hub)  # the retry runs before the overflow lane takes the copy
    first.functions = [f for f in first.functions if f.name != "remediation_overflow"]
    stats = await first.run_until_idle(120)
    assert len(moves) == 1
    assert stats.by_function["remediation_worker"] == 2  # the failed move, then the retry
    assert await _count(hub, hub.default.settings.overflow_queue) == 1
    stats = await _host(hub).run_until_idle(120)
    assert stats.by_function == {"remediation_overflow": 1}  # the copy: already done
    log = storm_world.requests()
    assert [is_password_write(e) for e in log if is_password_write(e)] == [user["id"]]
    assert [is_revoke_write(e) for e in log if is_revoke_write(e)] == [user["id"]]
    runs = await hub.default.journal.list_runs(limit=100)
    assert [(r.run_id, r.state) for r in runs] == [("crash-1", "finished")]
    assert await _poisoned(hub) == 0
    hub.shares.in_flight.pop(TENANT_A)
    assert hub.shares.in_flight == {}


async def test_with_no_registered_tenant_nothing_moves_or_costs_more(azurite, storm_world,
                                                                     monkeypatch):
    """Today's single-tenant settings, and a federated-app deployment whose registry is
    empty: a storm moves nothing, and a run costs the same Table and Blob operations as with
    the fairness code taken out."""
    async def one_run(settings: Settings, request_id: str) -> dict[str, int]:
        ops = {"table": 0, "blob": 0}

        def hook(kind: str) -> Any:
            def count(_request: Any) -> None:
                ops[kind] += 1
            return count
        hub = _hub(settings, storm_world, {k: hook(k) for k in ops})
        runtime.use_hub(hub)
        try:
            await hub.default.journal.ensure()
            user = _users(storm_world, TENANT_A)[0]["userPrincipalName"]
            queue = hub.default.settings.remediation_queue
            for rid in ("warm-" + request_id, request_id):  # warm: queues, budget, registry
                ops.update(table=0, blob=0)
                await hub.default.storage.enqueue(queue, json.dumps(
                    {"user": user, "requestId": rid, "actions": CONTAIN}))
                await _host(hub).run_until_idle(60)
        finally:
            runtime.use_hub(None)
            await hub.close()
            await hub.default.close()
        return ops

    for extra in ({}, {"RESPONDER_CREDENTIAL": "static-token"}):
        settings = _settings(azurite, storm_world, **extra)
        hub = _hub(settings, storm_world)
        runtime.use_hub(hub)
        try:
            queue = settings.remediation_queue
            for i, user in enumerate(_users(storm_world, TENANT_A)[:60]):
                await hub.default.storage.enqueue(queue, json.dumps(
                    {"user": user["userPrincipalName"], "requestId": f"s-{i}",
                     "actions": CONTAIN}))
            stats = await _host(hub).run_until_idle(120)
            assert stats.poisoned == 0 and "remediation_overflow" not in stats.by_function
            assert hub.shares.moved == 0 and hub.shares.in_flight == {}
            assert await _count(hub, settings.overflow_queue) == 0
            assert await _moved_runs(hub.default) == 0
        finally:
            runtime.use_hub(None)
            await hub.close()
            await hub.default.close()
        fair = await one_run(_settings(azurite, storm_world, **extra), "ops-f")
        with monkeypatch.context() as m:
            async def no_fairness(*_a: Any, **_k: Any) -> fairness.Admission:
                return fairness.Admission()
            m.setattr(fairness, "admit", no_fairness)
            plain = await one_run(_settings(azurite, storm_world, **extra), "ops-p")
        assert fair == plain and fair["table"] > 0, extra


async def test_identity_protection_budgets_are_per_tenant(storm_hub, storm_world):
    """Each tenant's Identity Protection requests reserve slots in its own budget row, in
    its own table, and the emulator (one rate per tenant) throttles neither."""
    hub = storm_hub
    await _register(hub, TENANT_B)
    queue = hub.default.settings.remediation_queue
    for tenant in (TENANT_A, TENANT_B):
        user = _users(storm_world, tenant)[1]["userPrincipalName"]
        body = {"user": user, "requestId": "idp-1", "actions": ["confirm_compromised"]}
        if tenant == TENANT_B:
            body["tenant"] = tenant
        await hub.default.storage.enqueue(queue, json.dumps(body))
    storm_world.clear_log()
    stats = await _host(hub).run_until_idle(120)
    assert stats.poisoned == 0
    b_svc = await hub.services_for(TENANT_B)
    assert b_svc.identity_budget is not hub.default.identity_budget
    for svc in (hub.default, b_svc):
        row = await svc.journal.get_item(partitions.RATE_BUDGETS, "identity-protection")
        assert row is not None, svc.settings.tenant_id
    assert b_svc.settings.journal_table != hub.default.settings.journal_table
    # one instance, one CPU: the containment slots are the process's, not the tenant's
    assert b_svc.lanes is hub.default.lanes
    idp = [e for e in storm_world.requests() if e.get("cls") == "identity_protection"]
    assert {e["tenant"] for e in idp} == {TENANT_A, TENANT_B}
    assert not [e for e in idp if e.get("throttled")]


async def test_ten_tenants_each_reached_with_its_own_token(azurite, tmp_path):
    """Ten tenants (the default and nine registered) x 10 requests, queued tenant after
    tenant: every run finishes in its tenant's journal, and every request the emulator saw
    for a tenant came with that tenant's token (its `tid`), for that tenant's users."""
    others = [(str(uuid.UUID(int=0x7A1E0000_0000_4000_8000_000000000000 + i)),
               _quiet_tenant(12, 100 + i, f"customer{i}.example")) for i in range(1, 10)]
    world = World(12, *others, workdir=tmp_path)
    server = world.__enter__()
    hub = _hub(_settings(azurite, server), server)
    runtime.use_hub(hub)
    try:
        tenants = [TENANT_A] + [t for t, _ in others]
        await _register(hub, *tenants[1:])
        queue = hub.default.settings.remediation_queue
        for tenant in tenants:
            for i, user in enumerate(_users(server, tenant)[:10]):
                body = {"user": user["userPrincipalName"], "requestId": f"r{i}",
                        "actions": CONTAIN}
                if tenant != TENANT_A:
                    body["tenant"] = tenant
                await hub.default.storage.enqueue(queue, json.dumps(body))
        server.clear_log()
        stats = await _host(hub).run_until_idle(240)
        assert stats.poisoned == 0 and await _poisoned(hub) == 0
        log = server.requests()
        for tenant in tenants:
            svc = await hub.services_for(tenant)
            runs = await svc.journal.list_runs(limit=100)
            assert len(runs) == 10 and {r.state for r in runs} == {"finished"}, tenant
            assert len(_contained_at(log, tenant)) == 10, tenant
        ids = {t: {u["id"] for u in server.seeds[t]["users"]} for t in tenants}
        upns = {t: {u["userPrincipalName"].lower() for u in server.seeds[t]["users"]}
                for t in tenants}
        assert all(e.get("status") != 401 for e in log)
        for e in log:
            tenant = (e.get("tenant") or "").lower()
            assert tenant in ids, e["path"]  # every call carried a token of a hosted tenant
            parts = e["path"].split("/")
            if len(parts) > 3 and parts[2] == "users":
                assert parts[3] in ids[tenant] or parts[3].lower() in upns[tenant], e["path"]
            if e.get("api") == "exchange":  # /adminapi/beta/{tenant}/InvokeCommand
                assert parts[3].lower() in (tenant, *_domains(server, tenant)), e["path"]
        tokens = {e["tenant"] for e in log if e.get("api") == "identity"}
        assert tokens <= set(tenants)
        assert {e["tenant"] for e in log} == set(tenants)
    finally:
        runtime.use_hub(None)
        await hub.close()
        await hub.default.close()
        world.__exit__()


def _domains(server: World, tenant: str) -> list[str]:
    return [d["id"].lower() for d in server.seeds[tenant].get("domains", [])]


async def test_the_lane_concurrency_is_the_hosts():
    cfg = host_queue_settings()
    assert LANE_CONCURRENCY == int(cfg["batchSize"]) + int(cfg["newBatchThreshold"])


def test_a_share_divides_the_lane_among_tenants_with_work_plus_a_newcomer():
    shares = TenantShares(48)
    assert shares.share("a", served=1) == 48  # one tenant: all of it (never asked, in fact)
    assert shares.share("a", served=10) == 24  # alone: half, the other half for a newcomer
    for _ in range(24):
        assert shares.try_take("a", served=10)
    assert not shares.try_take("a", served=10) and shares.moved == 1
    assert shares.try_take("b", served=10)  # a newcomer is under its share at once
    assert shares.share("b", served=10) == 16 and shares.share("a", served=2) == 24
    for _ in range(24):
        shares.give_back("a")
    shares.give_back("b")
    assert shares.in_flight == {}


def test_only_a_first_delivery_of_a_remediation_moves():
    from shared.models import RemediationRequest

    plain = RemediationRequest.model_validate({"user": "u@contoso.com"})
    assert fairness.movable(plain, 1)
    assert not fairness.movable(plain, 2)
    release = RemediationRequest.model_validate({"user": "u@contoso.com",
                                                 "action": "release"})
    assert not fairness.movable(release, 1)
