"""The anonymous approvals endpoint: a refused request costs no storage write and no query.

Anyone on the internet can POST to it, so what one refused request costs bounds what an
attacker can make the app spend: a refusal is logged and counted in process, never written;
an expired or unknown token costs at most one point read of its approval row.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from shared.safety import approvals
from shared.safety.approvals import decisions
from shared.state import clock, transactions
from tests.safety.conftest import APPROVAL_SECRET, notify_policy
from tests.safety.test_approvals import _post, _start_admin_run, _tokens

_WRITES = ("create_entity", "upsert_entity", "update_entity", "delete_entity",
           "submit_transaction")
_QUERIES = ("query_entities", "list_entities")


class TableCalls:
    """Counts the journal table's calls by kind (wraps the one TableClient it uses)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.queries: list[str] = []
        self.reads: list[str] = []

    def reset(self) -> None:
        self.writes.clear()
        self.queries.clear()
        self.reads.clear()


async def count_table_calls(svc: Any, monkeypatch: Any) -> TableCalls:
    await svc.journal.ensure()
    table = svc.journal.table
    calls = TableCalls()

    def wrap(name: str, into: list[str]) -> None:
        original = getattr(table, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            into.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(table, name, counted)

    for name in _WRITES:
        wrap(name, calls.writes)
    for name in _QUERIES:
        wrap(name, calls.queries)
    wrap("get_entity", calls.reads)
    submit = transactions.submit

    def submitted(into: Any, ops: Any) -> Any:
        if into is table:
            calls.writes.append("submit_transaction")
        return submit(into, ops)

    monkeypatch.setattr(transactions, "submit", submitted)  # the journal's transactions
    return calls


async def test_refused_requests_cost_no_write_and_no_query(make_services, emulator, receiver,
                                                           monkeypatch):
    svc = make_services(**notify_policy(receiver))
    await _start_admin_run(svc, emulator, receiver, "cost-1")
    real = _tokens(receiver)
    approval = await approvals.get_approval(svc, "cost-1")
    claims, mac = real["approve"].split(".")
    hostile = [
        "", "garbage", "a.b.c", f"{claims}.{mac[:-2]}AA",
        approvals.make_token(b"x" * 40, "cost-1", "approve", "n" * 32, approval.expires_at),
        approvals.make_token(APPROVAL_SECRET.encode(), "cost-1", "approve", "guess",
                             approval.expires_at),
        approvals.make_token(APPROVAL_SECRET.encode(), "no-such-run", "approve", "n",
                             approval.expires_at),
    ]
    calls = await count_table_calls(svc, monkeypatch)
    before = dict(decisions.refusal_counts())
    n = 0
    for _ in range(5):
        for token in hostile:
            resp = await _post(token, by="mallory")
            assert resp.status_code in (403, 404), resp.get_body()
            n += 1
    assert calls.writes == [] and calls.queries == []
    assert len(calls.reads) <= n  # at most one point read each
    counts = decisions.refusal_counts()
    assert sum(counts.values()) - sum(before.values()) == n
    assert counts["forged"] - before.get("forged", 0) == 15

    # the genuine decision is journaled; re-using either link afterwards costs no write
    assert (await _post(real["approve"], by="soc.lead")).status_code == 200
    assert calls.writes  # the decision itself: approval row + its event
    calls.reset()
    for _ in range(10):
        assert (await _post(real["approve"], by="mallory")).status_code == 409
        assert (await _post(real["deny"], by="mallory")).status_code == 409
    assert calls.writes == [] and calls.queries == []
    assert len(calls.reads) <= 20
    kinds = [e["kind"] for e in await svc.journal.events("cost-1")]
    assert kinds.count("approval-approved") == 1 and "approval-refused" not in kinds


async def test_an_expired_token_runs_no_query_and_escalates_once(make_services, emulator,
                                                                 receiver, monkeypatch):
    svc = make_services(**notify_policy(receiver))
    await _start_admin_run(svc, emulator, receiver, "cost-exp")
    real = _tokens(receiver)
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(hours=5))
    calls = await count_table_calls(svc, monkeypatch)

    resp = await _post(real["approve"], by="late.admin")
    assert resp.status_code == 403 and "expired" in resp.get_body().decode()
    assert calls.queries == []
    assert calls.reads == ["get_entity"]  # the approval row, by key
    assert (await approvals.get_approval(svc, "cost-exp")).state == "expired"
    events = await svc.journal.events("cost-exp")
    expired = [e for e in events if e["kind"] == "approval-expired"]
    assert len(expired) == 1 and expired[0]["data"]["trigger"] == "expired link used"
    assert receiver.events().count("approval.escalated") == 1

    calls.reset()
    for token in (real["approve"], real["deny"]) * 10:
        assert (await _post(token, by="mallory")).status_code == 403
    assert calls.writes == [] and calls.queries == []
    assert len(calls.reads) <= 20
    assert receiver.events().count("approval.escalated") == 1
    # the run's own trail holds the escalation once, and no refusal rows
    kinds = [e["kind"] for e in await svc.journal.events("cost-exp")]
    assert kinds.count("approval-expired") == 1 and "approval-refused" not in kinds


async def test_the_timer_still_escalates_by_scanning_only_its_own_partition(
        make_services, emulator, receiver):
    """The timer (not a request) is what walks the approvals; one run is escalated once."""
    svc = make_services(**notify_policy(receiver))
    await _start_admin_run(svc, emulator, receiver, "cost-timer")
    later = clock.now() + timedelta(hours=4, minutes=1)
    assert await approvals.escalate_expired(svc, now=later) == ["cost-timer"]
    [expired] = [e for e in await svc.journal.events("cost-timer")
                 if e["kind"] == "approval-expired"]
    assert expired["data"]["trigger"] == "timer"
    assert json.dumps(expired["data"])  # JSON-able
