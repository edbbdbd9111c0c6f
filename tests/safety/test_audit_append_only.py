"""The audit trail is append-only in fact: an event row (`ev-...`) is only ever created, never
updated, upserted or deleted, by any code path.

Two checks: a static one over the code (only the journal touches the table, only
`Journal._event_entity` makes an `ev-` key, and its callers only create it: `event` with
create_entity, `write_batch` as a transaction's "create" operation), and a runtime one that
watches every Table write of a contained run, its report and its release through the real
queue path (a transaction counts per operation, by its kind).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any

from azure.data.tables.aio import TableClient

from shared.state import transactions
from shared.state.journal import Journal
from tests.playbook.conftest import MEGAN, run_via_queue
from tests.safety.conftest import all_journal_rows, notify_policy

ROOT = Path(__file__).resolve().parents[2]
JOURNAL = ROOT / "shared" / "state" / "journal.py"
TRANSACTIONS = ROOT / "shared" / "state" / "transactions.py"
"""Encodes the journal's entity-group transactions and sends them (`send_request`)."""
REGISTRY = ROOT / "shared" / "state" / "tenants.py"
"""The tenant registry writes its own table (configuration, replaced in place); Settings
refuses a registry table that is the journal's (tested below)."""
TABLE_WRITES = {"create_entity", "upsert_entity", "update_entity", "delete_entity",
                "submit_transaction"}
JOURNAL_WRITERS = {"put_item", "delete_item", "create_row", "write_row_if", "delete_row_if"}


def _sources() -> list[Path]:
    return sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _text_start(node: ast.AST) -> str | None:
    """The leading literal text of a str constant or an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _text_start(node.values[0])
    return None


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _mentions_row_key(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == "RowKey" for n in ast.walk(node))


def test_only_the_journal_touches_the_table():
    offenders = []
    for path in _sources():
        if path in (JOURNAL, REGISTRY):
            continue
        watched = TABLE_WRITES | {"get_table_client"}
        if path != TRANSACTIONS:  # the transactions' encoder sends them for the journal
            watched |= {"send_request"}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _called(node) in watched:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {_called(node)}")
            if isinstance(node, ast.Attribute) and node.attr == "submit" \
                    and getattr(node.value, "id", "") == "transactions":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} transactions.submit")
    assert offenders == []


def test_the_registry_table_cannot_be_the_journal_table():
    import pytest

    from shared.settings import Settings, SettingsError

    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
           "RESPONDER_JOURNAL_TABLE": "runs1", "RESPONDER_TENANTS_TABLE": "RUNS1"}
    with pytest.raises(SettingsError, match="RESPONDER_TENANTS_TABLE"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "RESPONDER_TENANTS_TABLE": "tenants1"}).tenants_table \
        == "tenants1"
    registry = REGISTRY.read_text(encoding="utf-8")
    assert '"ev-' not in registry and "'ev-" not in registry  # no event key is made there


def test_only_journal_event_makes_event_keys_and_it_only_creates():
    tree = ast.parse(JOURNAL.read_text(encoding="utf-8"))
    makers: dict[str, set[str]] = {}
    for fn in _functions(tree):
        for node in ast.walk(fn):
            start = _text_start(node)
            if start is not None and start.startswith(("ev-", "ev.")):
                makers.setdefault(fn.name, set()).add(start[:3])
            if start is not None and "'ev-'" in start:  # an OData range over event keys
                makers.setdefault(fn.name, set()).add("query")
    # `_event_key` builds the key; `events` only reads the key range
    assert set(makers) == {"_event_key", "events"}, makers
    assert makers["events"] == {"query"}

    def callers_of(name: str) -> set[str]:
        return {fn.name for fn in _functions(tree)
                if any(isinstance(n, ast.Call) and _called(n) == name for n in ast.walk(fn))}

    assert callers_of("_event_key") == {"_event_entity"}
    assert callers_of("_event_entity") == {"event", "write_batch"}
    [event] = [fn for fn in _functions(tree) if fn.name == "event"]
    calls = {_called(n) for n in ast.walk(event) if isinstance(n, ast.Call)}
    assert "create_entity" in calls
    assert calls & (TABLE_WRITES - {"create_entity"}) == set()
    assert calls & JOURNAL_WRITERS == set()
    # in write_batch, an event entity only ever goes into a ("create", ...) operation
    [batch] = [fn for fn in _functions(tree) if fn.name == "write_batch"]
    for node in ast.walk(batch):
        if isinstance(node, ast.Tuple) and any(
                isinstance(e, ast.Call) and _called(e) == "_event_entity" for e in node.elts):
            assert isinstance(node.elts[0], ast.Constant) and node.elts[0].value == "create"


def test_no_code_addresses_an_event_row_through_the_generic_writers():
    """Nobody outside the journal spells an `ev-` key, or hands a read row's RowKey to a
    writer (which could then update or delete an event)."""
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            start = _text_start(node)
            if path != JOURNAL and start is not None and start.startswith(("ev-", "ev.")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} spells {start!r}")
            if isinstance(node, ast.Call) and _called(node) in JOURNAL_WRITERS:
                row_args = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "row")]
                if any(_mentions_row_key(a) for a in row_args):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                     f"{_called(node)} with a read RowKey")
    assert offenders == []


async def test_a_colliding_event_key_is_retried_never_overwritten(make_services, monkeypatch):
    svc = make_services()
    await svc.journal.event("audit-test", "first", "the first event")
    [first] = await svc.journal.events("audit-test")
    fresh = (f"ev-99991231T235959999999-{n:08d}" for n in itertools.count())
    keys = iter([first["RowKey"], first["RowKey"], next(fresh)])
    monkeypatch.setattr(Journal, "_event_key", staticmethod(lambda stamp: next(keys)))
    await svc.journal.event("audit-test", "second", "the second event")
    rows = {e["RowKey"]: e for e in await svc.journal.events("audit-test")}
    assert len(rows) == 2
    assert rows[first["RowKey"]]["kind"] == "first"
    assert rows[first["RowKey"]]["message"] == "the first event"
    assert [e["kind"] for k, e in rows.items() if k != first["RowKey"]] == ["second"]

    # a key source that only ever collides fails loudly after a bounded number of tries
    monkeypatch.setattr(Journal, "_event_key", staticmethod(lambda stamp: first["RowKey"]))
    try:
        await svc.journal.event("audit-test", "third", "never written")
    except Exception as exc:  # ResourceExistsError
        assert "Exists" in type(exc).__name__ or "exists" in str(exc).lower()
    else:
        raise AssertionError("an always-colliding key must not be written")
    assert len(await svc.journal.events("audit-test")) == 2


def _watch_table_writes(monkeypatch: Any) -> list[tuple[str, str, str]]:
    """Every Table write of any client: (method, PartitionKey, RowKey)."""
    seen: list[tuple[str, str, str]] = []

    def keys_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) \
            -> list[tuple[str, str, str]]:
        if name == "submit_transaction":
            ops = args[0] if args else kwargs.get("operations", [])
            return [(f"transaction:{op[0]}", str(op[1]["PartitionKey"]), str(op[1]["RowKey"]))
                    for op in ops]
        if name == "delete_entity":
            if args and isinstance(args[0], dict):
                return [(name, str(args[0]["PartitionKey"]), str(args[0]["RowKey"]))]
            pk = args[0] if args else kwargs.get("partition_key")
            rk = args[1] if len(args) > 1 else kwargs.get("row_key")
            return [(name, str(pk), str(rk))]
        entity = args[0] if args else kwargs["entity"]
        return [(name, str(entity["PartitionKey"]), str(entity["RowKey"]))]

    for name in TABLE_WRITES:
        original = getattr(TableClient, name)

        def make(name: str, original: Any) -> Any:
            async def counted(self: TableClient, *args: Any, **kwargs: Any) -> Any:
                answer = await original(self, *args, **kwargs)
                seen.extend(keys_of(name, args, kwargs))  # what storage accepted
                return answer
            return counted

        monkeypatch.setattr(TableClient, name, make(name, original))
    submit = transactions.submit

    async def submitted(table: TableClient, ops: Any) -> Any:
        answer = await submit(table, ops)
        seen.extend(keys_of("submit_transaction", (ops,), {}))
        return answer

    monkeypatch.setattr(transactions, "submit", submitted)  # the journal's transactions
    return seen


async def test_a_run_and_its_release_only_ever_create_event_rows(make_services, emulator,
                                                                 monkeypatch):
    svc = make_services(**notify_policy(mail=True))
    seen = _watch_table_writes(monkeypatch)
    await run_via_queue(svc, {"user": MEGAN, "requestId": "ao-1", "riskLevel": "high"})
    assert (await svc.journal.get_run("ao-1")).state == "finished"
    await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "ao-1",
                              "requestId": "release-ao-1", "requestedBy": "soc"})
    # a redelivery of both changes nothing in the trail
    await run_via_queue(svc, {"user": MEGAN, "requestId": "ao-1", "riskLevel": "high"},
                        {"user": MEGAN, "action": "release", "runId": "ao-1",
                         "requestId": "release-ao-1", "requestedBy": "soc"})

    event_ops = [(m, pk, rk) for m, pk, rk in seen if rk.startswith("ev-")]
    assert event_ops, "the run wrote no events at all"
    assert {m for m, _, _ in event_ops} <= {"create_entity", "transaction:create"}, \
        [op for op in event_ops if op[0] not in ("create_entity", "transaction:create")]
    created = [(pk, rk) for _, pk, rk in event_ops]
    assert len(created) == len(set(created)), "an event key was written twice"
    kinds = [e["kind"] for e in await svc.journal.events("ao-1")]
    assert any(k.startswith("release") for k in kinds), kinds
    stored = {(r["PartitionKey"], r["RowKey"]) for r in await all_journal_rows(svc)
              if r["RowKey"].startswith("ev-")}
    assert stored == set(created)  # nothing written any other way, nothing removed
