"""The baseline: the best sequential script a careful admin would write, measured on a
sample of users.

A straight-line script over the same shared/graph and shared/exchange helpers the playbook
uses: one user after another, one call after another, containment (password, sessions)
first for each user. Careful, not naive: the tenant-wide facts (verified domains, the
organisation config) are read once for all users, and every Identity Protection request
is paced at the documented one per second, so the script never throttles itself into a
429 without Retry-After. It has no aggregation across users (one confirmCompromised and
one group add per user), no concurrency and no journal. The calls per user match a
full-containment run: the same evidence reads, the same writes (bench/RESULTS.md compares
the counts). Same emulator settings, same retry policy. Its time is linear in N, so it runs
on a sample and is extrapolated: the k-th user is contained at about
(k - 1) * per_user + contain_offset.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import measure
from bench.emulator_proc import EmulatorProcess
from bench.scenario import (
    GRAPH_LATENCY_MS,
    OUT,
    TOKEN,
    emulator_config,
    storm_env,
    storm_policy,
    storm_tenant,
    storm_users,
)


async def contain_one(graph: Any, exchange: Any, user_key: str, policy: dict[str, Any],
                      detected_at: datetime, paced: Any) -> None:
    """Full containment of one user, sequentially: containment first, then the evidence
    and the clean-up. `paced(call)` runs an Identity Protection request at its rate."""
    from shared.playbook.steps.account import generate_password
    from shared.tenant import exchange as exo
    from shared.tenant import exchange_permissions as perms
    from shared.tenant.graph import auth_methods, consents, directory, identity_protection, mail

    user = await directory.resolve_user(graph, user_key)
    await directory.check_member_groups(graph, user.id, list(policy["exclusions"]["groups"]))
    await directory.member_of(graph, user.id)  # privileged-role check
    # containment first
    await directory.set_password(graph, user.id, generate_password())
    await directory.revoke_sessions(graph, user.id)
    # evidence, one read after another
    await paced(lambda: identity_protection.risky_users_by_id(graph, [user.id]))
    await paced(lambda: identity_protection.detections_by_user(graph, [user.id]))
    methods = await auth_methods.list_methods(graph, user.id)
    await consents.user_grants(graph, user.id)
    await consents.user_app_role_assignments(graph, user.id)
    await auth_methods.get_per_user_mfa(graph, user.id)
    await directory.member_of(graph, user.id)
    await mail.list_folders(graph, user.id)
    rules = await mail.list_rules(graph, user.id)
    box = await exo.get_mailbox(exchange, user.upn)
    await exo.audit_bypass(exchange, user.upn)
    await exo.inbox_rules(exchange, user.upn)
    await exo.blocked_senders(exchange, user.upn)
    await perms.mailbox_permissions(exchange, user.upn)
    await perms.send_as_on(exchange, user.upn)
    await perms.send_as_held_by(exchange, user.upn)
    await perms.mobile_devices(exchange, user.upn)
    # clean-up
    await paced(lambda: identity_protection.confirm_compromised(graph, [user.id]))
    await directory.add_group_member(graph, policy["mfa"]["conditionalAccessGroupId"], user.id)
    await auth_methods.enforce_per_user_mfa(graph, user.id)
    since = detected_at - timedelta(days=7)
    for m in methods:
        created = m.get("createdDateTime")
        if auth_methods.deletable(m) and created and \
                datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00") >= since:
            await auth_methods.delete_method(graph, user.id, m)
    for rule in rules:
        if rule.get("actions", {}).get("forwardTo") and rule.get("isEnabled", True):
            await mail.set_rule_enabled(graph, user.id, str(rule["id"]), False)
    if box and box.get("ForwardingSmtpAddress"):
        await exo.set_mailbox(exchange, user.upn, ForwardingSmtpAddress=None,
                              ForwardingAddress=None, DeliverToMailboxAndForward=False)
    if box and not box.get("AuditEnabled"):
        await exo.set_mailbox(exchange, user.upn, AuditEnabled=True)
    await directory.send_mail(graph, policy["notify"]["sender"], {
        "subject": f"Contained {user.upn}", "body": {"contentType": "Text", "content": "done"},
        "toRecipients": [{"emailAddress": {"address": policy["notify"]["socMailbox"]}}]})


async def run_baseline(n_tenant: int, sample: int, *, storage: str) -> dict[str, Any]:
    """Contain `sample` users one after another in a tenant like the storm's."""
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential
    from shared.tenant.exchange import ExchangeClient
    from shared.tenant.graph.client import create_graph_client

    detected_at = datetime.now(UTC) - timedelta(minutes=2)
    tenant = storm_tenant(n_tenant, detected_at=detected_at)
    users = storm_users(tenant)[:sample]
    policy = storm_policy()
    emu = EmulatorProcess(tenant, emulator_config(), token=TOKEN, workdir=OUT,
                          name="baseline")
    emu.start()
    try:
        settings = Settings.from_env(storm_env(storage, emu.base_url, "baseline"))
        credential = StaticTokenCredential(TOKEN)
        graph = create_graph_client(settings, credential)
        exchange = ExchangeClient(settings, credential)
        from shared.tenant import exchange as exo
        from shared.tenant.graph import directory
        from shared.tenant.pacing import Pacer

        pacer = Pacer(1.05)  # Identity Protection: one request per second per tenant

        async def paced(call: Any) -> Any:
            return await pacer.run(call)

        emu.clear_log()
        t0 = time.monotonic()
        # tenant-wide facts, once for all users
        await directory.domains(graph)
        await exo.organization_config(exchange)
        per_user: list[float] = []
        try:
            for u in users:
                start = time.monotonic()
                await contain_one(graph, exchange, u["userPrincipalName"], policy, detected_at,
                                  paced)
                per_user.append(time.monotonic() - start)
        finally:
            await graph.close()
            await exchange.close()
        total = time.monotonic() - t0
        log = emu.requests()
    finally:
        emu.stop()
    s = measure.summarise(log, write_latency=GRAPH_LATENCY_MS / 1000)
    starts = {u["id"]: t0 + sum(per_user[:i]) for i, u in enumerate(users)}
    offsets = list(measure.containment_times(s, starts).values())
    mean = statistics.mean(per_user)
    offset = statistics.mean(offsets) if offsets else mean
    return {
        "method": "careful sequential script over shared/graph + shared/exchange helpers: "
                  "containment first, tenant-wide facts read once, Identity Protection "
                  "paced at 1 request/s; no aggregation, no concurrency, no journal",
        "sample_users": len(users), "sample_seconds": round(total, 3),
        "per_user_seconds": round(mean, 3),
        "per_user_min_max": [round(min(per_user), 3), round(max(per_user), 3)],
        "contain_offset_seconds": round(offset, 3),
        "graph_calls_per_user": round(s.graph_calls / len(users), 2),
        "exchange_calls_per_user": round(s.exchange_calls / len(users), 2),
        "throttled_429": s.throttled, "throttled_by_class": s.throttled_by_class,
        "call_kinds": measure.by_user_kind(log),
    }


def extrapolate(base: dict[str, Any], n: int) -> dict[str, float]:
    """Linear in N: the last user starts after N - 1 others."""
    per = float(base["per_user_seconds"])
    return {"all_contained_seconds": round((n - 1) * per + base["contain_offset_seconds"], 1),
            "all_finished_seconds": round(n * per, 1),
            "first_contained_seconds": base["contain_offset_seconds"]}
