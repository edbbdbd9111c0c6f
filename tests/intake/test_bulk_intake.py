"""A storm's payload is taken in together: the same outcomes as one signal at a time, in a
handful of Table requests (entity-group transactions and multi-key queries), with users
whose dedupe rows exist already handed to the row-by-row path."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from azure.data.tables.aio import TableClient

from shared.intake.dedupe import DETECTIONS_PARTITION, USERS_PARTITION, row_key
from shared.intake.pipeline import intake_signals
from shared.models import RiskSignal
from shared.state import transactions
from tests.intake.conftest import intake_events, queued

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
TABLE_CALLS = ("submit_transaction", "create_entity", "upsert_entity", "update_entity",
               "delete_entity", "get_entity", "query_entities")


def user_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def signal(n: int, detection: str = "d1", level: str = "high") -> RiskSignal:
    return RiskSignal(user_id=user_id(n), upn=f"user{n}@contoso.com", risk_level=level,
                      source="graph.riskDetection", detection_id=f"{detection}-{n}",
                      detected_at=T0)


def count_table_calls(monkeypatch: Any) -> Counter[str]:
    """Every Table request any client makes, by method (a transaction counts once)."""
    seen: Counter[str] = Counter()
    for name in TABLE_CALLS:
        original = getattr(TableClient, name)

        def make(name: str, original: Any) -> Any:
            def counted(self: TableClient, *args: Any, **kwargs: Any) -> Any:
                seen[name] += 1
                return original(self, *args, **kwargs)
            return counted

        monkeypatch.setattr(TableClient, name, make(name, original))
    submit = transactions.submit

    def submitted(table: TableClient, ops: Any) -> Any:
        seen["submit_transaction"] += 1
        return submit(table, ops)

    monkeypatch.setattr(transactions, "submit", submitted)  # the journal's transactions
    return seen


async def test_a_payload_of_50_users_costs_a_few_table_requests(svc: Any,
                                                               monkeypatch: Any) -> None:
    await svc.journal.ensure()
    calls = count_table_calls(monkeypatch)
    outcome = await intake_signals(svc, [signal(n) for n in range(50)], route="http",
                                   clock=lambda: T0)
    assert [i.outcome for i in outcome.items] == ["enqueued"] * 50
    # one signal at a time took about nine rows each (450 requests); together, for each
    # chunk of 14 users: one query of their detections, one transaction of their user and
    # alias rows, one confirming them, one of the events, one of the detections
    assert calls["query_entities"] == 4 and calls["submit_transaction"] == 16, calls
    assert sum(calls.values()) == 20, calls
    messages = await queued(svc)
    assert sorted(m["user"] for m in messages) == sorted(user_id(n) for n in range(50))
    assert len({m["requestId"] for m in messages}) == 50
    for n in (0, 49):
        row = await svc.journal.read_row(USERS_PARTITION, row_key(user_id(n)))
        alias = await svc.journal.read_row(USERS_PARTITION, row_key(f"user{n}@contoso.com"))
        assert row is not None and row.values["state"] == "enqueued"
        assert alias is not None and alias.values["state"] == "alias"
        assert alias.values["aliasOf"] == row_key(user_id(n))
        assert alias.values["requestId"] == row.values["requestId"]
        mark = await svc.journal.read_row(DETECTIONS_PARTITION,
                                          row_key(user_id(n), f"d1-{n}"))
        assert mark is not None and mark.values["outcome"] == "enqueued"
    assert len(await intake_events(svc, "enqueued")) == 50


async def test_users_with_a_window_go_row_by_row_and_the_new_ones_together(svc: Any) -> None:
    await intake_signals(svc, [signal(n) for n in range(5)], route="http", clock=lambda: T0)
    again = await intake_signals(svc, [signal(n, "d2") for n in range(10)], route="eventhub",
                                 clock=lambda: T0)
    outcomes = [i.outcome for i in again.items]
    assert outcomes == ["duplicate"] * 5 + ["enqueued"] * 5
    assert all("dedupe window" in i.reason for i in again.items[:5])
    # the UPN alone (as a Monitor alert names a user) finds user 3's alias row; beside
    # a new user it still goes row by row
    upn_only = RiskSignal(upn="USER3@contoso.com", risk_level="high", source="sentinel",
                          detection_id="upn-3", detected_at=T0)
    mixed = await intake_signals(svc, [upn_only, signal(10)], route="eventhub",
                                 clock=lambda: T0)
    assert [i.outcome for i in mixed.items] == ["duplicate", "enqueued"]
    messages = await queued(svc)
    assert sorted(m["user"] for m in messages) == sorted(user_id(n) for n in range(11))
    # the same payload once more: every detection is known, nothing is queued again
    third = await intake_signals(svc, [signal(n, "d2") for n in range(10)], route="eventhub",
                                 clock=lambda: T0)
    assert [i.outcome for i in third.items] == ["duplicate"] * 10
    assert all("already handled" in i.reason for i in third.items)
    assert await queued(svc) == []


async def test_a_failed_enqueue_in_a_payload_releases_only_that_user(svc: Any,
                                                                     monkeypatch: Any) -> None:
    real = svc.storage.enqueue

    async def flaky(queue: str, text: str, **kw: Any) -> None:
        if user_id(2) in text:
            raise ConnectionError("queue unavailable")
        await real(queue, text, **kw)

    monkeypatch.setattr(svc.storage, "enqueue", flaky)
    first = await intake_signals(svc, [signal(n) for n in range(4)], route="http",
                                 clock=lambda: T0)
    assert [i.outcome for i in first.items] == ["enqueued", "enqueued", "error", "enqueued"]
    assert isinstance(first.errors[0], ConnectionError)
    # its reservation and alias row are gone, its detection is not marked
    assert await svc.journal.read_row(USERS_PARTITION, row_key(user_id(2))) is None
    assert await svc.journal.read_row(USERS_PARTITION, row_key("user2@contoso.com")) is None
    assert await svc.journal.read_row(DETECTIONS_PARTITION, row_key(user_id(2), "d1-2")) \
        is None
    monkeypatch.setattr(svc.storage, "enqueue", real)
    retried = await intake_signals(svc, [signal(n) for n in range(4)], route="http",
                                   clock=lambda: T0)
    assert [i.outcome for i in retried.items] == ["duplicate", "duplicate", "enqueued",
                                                  "duplicate"]
    assert sorted(m["user"] for m in await queued(svc)) == [user_id(n) for n in range(4)]


async def test_two_users_naming_the_same_alias_are_not_put_in_one_transaction(svc: Any) -> None:
    """A UPN two signals give to different object ids (a renamed user, a bad payload): the
    second cannot share the first's transaction (which would fail as a whole) and is
    decided row by row, where the first's alias row makes it a duplicate."""
    clash = RiskSignal(user_id=user_id(7), upn="user1@contoso.com", risk_level="high",
                       source="graph.riskDetection", detection_id="clash", detected_at=T0)
    outcome = await intake_signals(svc, [signal(1), clash, signal(2)], route="http",
                                   clock=lambda: T0)
    assert [i.outcome for i in outcome.items] == ["enqueued", "duplicate", "enqueued"]
    assert outcome.items[0].request is not None
    assert outcome.items[0].request.request_id in outcome.items[1].reason
    assert sorted(m["user"] for m in await queued(svc)) == [user_id(1), user_id(2)]


async def test_a_failed_enqueue_whose_undo_fails_too_costs_only_that_user(
        svc: Any, monkeypatch: Any) -> None:
    """The queue and then the undo fail for one user (a storage blip): that user's item is
    an error, and nothing escapes the payload (an Event Hub batch would lose every alert
    after it). Its reservation stays, to be taken over once it goes stale."""
    real = svc.storage.enqueue
    real_delete = type(svc.journal).delete_row_if

    async def flaky(queue: str, text: str, **kw: Any) -> None:
        if user_id(2) in text:
            raise ConnectionError("queue unavailable")
        await real(queue, text, **kw)

    async def no_undo(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("table unavailable")

    monkeypatch.setattr(svc.storage, "enqueue", flaky)
    monkeypatch.setattr(type(svc.journal), "delete_row_if", no_undo)
    outcome = await intake_signals(svc, [signal(n) for n in range(4)], route="http",
                                   clock=lambda: T0)
    monkeypatch.setattr(type(svc.journal), "delete_row_if", real_delete)
    assert [i.outcome for i in outcome.items] == ["enqueued", "enqueued", "error", "enqueued"]
    assert isinstance(outcome.errors[0], ConnectionError)
    assert sorted(m["user"] for m in await queued(svc)) == [user_id(0), user_id(1),
                                                             user_id(3)]
    row = await svc.journal.read_row(USERS_PARTITION, row_key(user_id(2)))
    assert row is not None and row.values["state"] == "reserved"
    assert len(await intake_events(svc, "enqueued")) == 3


async def test_a_reservation_whose_answer_was_lost_is_resumed_not_dropped(svc: Any) -> None:
    """The transaction that reserved a window committed but the client saw an error (a
    lost answer): the same intake finds the reservation it made itself and enqueues it; any
    other intake still sees another instance's reservation and leaves it."""
    from shared.intake.dedupe import Deduper

    await svc.journal.ensure()
    ours = Deduper(svc.journal, window_minutes=30)
    request = (await intake_signals(svc, [signal(5)], route="http", clock=lambda: T0,
                                    dry_run=True)).items[0].request
    assert request is not None
    made = await ours.admit_new([(request, user_id(5), [])], now=T0)
    assert made[0] is not None  # committed; say the caller never heard so
    theirs = Deduper(svc.journal, window_minutes=30)
    assert not (await theirs.admit(request, user_id(5), now=T0)).admitted
    again = await ours.admit(request, user_id(5), now=T0)
    assert again.admitted and again.kind == "takeover"
    assert again.request.request_id == made[0].request.request_id
    assert "its own reservation" in again.reason


def test_row_keys_of_parts_holding_the_separator_do_not_collide() -> None:
    """A hostile name holding '|' cannot make its detection key another user's."""
    assert row_key("victim@contoso.com|x", "d1") != row_key("victim@contoso.com", "x|d1")
    assert row_key("a\\", "|b") != row_key("a\\|", "b")
    assert row_key("A@Contoso.com") == row_key("a@contoso.com")
