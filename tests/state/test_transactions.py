"""The journal's own entity-group transactions against Azurite: what they write reads back
as the SDK's own writes do, and a refused one reports and writes what the SDK's would."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.state import transactions
from shared.state.storage import TRANSPORT

HOSTILE = "o'brien \"q\"\r\n--changeset_x\r\nHTTP/1.1 500 Oops\r\n\r\n{} é 中 %27 +&="


@pytest.fixture
async def table(azurite: Any) -> AsyncIterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite.connection_string, **TRANSPORT)
    async with service:
        client = service.get_table_client(f"tx{uuid.uuid4().hex[:12]}")
        await client.create_table()
        yield client


def values(n: int) -> dict[str, Any]:
    """Every property type the journal writes, with text that looks like the wire format."""
    return {"state": "running", "text": HOSTILE, "attempt": n, "big": -(2**31),
            "flag": n % 2 == 0, "ratio": 0.25, "at": datetime(2026, 12, 1, 3, 4, 5, 678901,
                                                              tzinfo=UTC),
            "raw": b"\x00\xff", "gone": None}


async def rows(table: TableClient) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    async for entity in table.list_entities():
        found[(entity["PartitionKey"], entity["RowKey"])] = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in entity.items()}
    return found


async def test_a_transaction_writes_what_the_sdk_writes(table):
    mine = [("create", {"PartitionKey": "p'1 é", "RowKey": "a'b c", **values(1)}),
            ("upsert", {"PartitionKey": "p'1 é", "RowKey": "run", **values(2)},
             {"mode": UpdateMode.MERGE})]
    answers = await transactions.submit(table, mine)
    assert [sorted(a) for a in answers] == [["etag"], ["etag"]]
    ours = await rows(table)
    for key in list(ours):
        await table.delete_entity(*key)
    await table.submit_transaction(mine)  # the SDK's own encoder, for comparison
    assert ours == await rows(table)
    written = ours[("p'1 é", "a'b c")]
    assert written["text"] == HOSTILE and written["raw"] == b"\x00\xff"
    assert written["at"] == "2026-12-01T03:04:05.678901+00:00" and "gone" not in written


async def test_the_etags_answered_are_the_rows_etags(table):
    answers = await transactions.submit(table, [
        ("create", {"PartitionKey": "p", "RowKey": "one", "n": 1}),
        ("create", {"PartitionKey": "p", "RowKey": "two", "n": 2})])
    for answer, row in zip(answers, ("one", "two"), strict=True):
        assert (await table.get_entity("p", row)).metadata["etag"] == answer["etag"]
    # a merge conditional on that ETag, and a conditional delete, both in one transaction
    again = await transactions.submit(table, [
        ("update", {"PartitionKey": "p", "RowKey": "one", "m": 3},
         {"mode": UpdateMode.MERGE, "etag": answers[0]["etag"],
          "match_condition": MatchConditions.IfNotModified}),
        ("delete", {"PartitionKey": "p", "RowKey": "two"},
         {"etag": answers[1]["etag"], "match_condition": MatchConditions.IfNotModified})])
    assert again[1] == {} and again[0]["etag"] != answers[0]["etag"]
    assert await rows(table) == {("p", "one"): {"PartitionKey": "p", "RowKey": "one",
                                                "n": 1, "m": 3}}


@pytest.mark.parametrize("case", ["exists", "changed", "missing"])
async def test_a_refused_operation_is_reported_as_the_sdk_reports_it(table, case):
    first = await transactions.submit(table, [("create", {"PartitionKey": "p", "RowKey": "a"})])
    stale = first[0]["etag"].replace("T", "X")
    refused = {
        "exists": [("upsert", {"PartitionKey": "p", "RowKey": "new"}, {"mode": UpdateMode.MERGE}),
                   ("create", {"PartitionKey": "p", "RowKey": "a"})],
        "changed": [("update", {"PartitionKey": "p", "RowKey": "a", "x": 1},
                     {"mode": UpdateMode.MERGE, "etag": stale,
                      "match_condition": MatchConditions.IfNotModified})],
        "missing": [("create", {"PartitionKey": "p", "RowKey": "new"}),
                    ("delete", {"PartitionKey": "p", "RowKey": "nothing"})],
    }[case]
    seen = []
    for send in (transactions.submit, lambda t, ops: t.submit_transaction(ops)):
        with pytest.raises(TableTransactionError) as caught:
            await send(table, refused)
        exc = caught.value
        seen.append((exc.status_code, exc.error_code, exc.index))
    assert seen[0] == seen[1]
    assert seen[0] == {"exists": (409, "EntityAlreadyExists", 1),
                       "changed": (412, "UpdateConditionNotSatisfied", 0),
                       "missing": (404, "ResourceNotFound", 1)}[case]
    assert list(await rows(table)) == [("p", "a")]  # all or nothing: nothing else written


async def test_what_the_service_cannot_hold_is_refused_before_sending(table):
    with pytest.raises(ValueError, match="holds 100"):
        await transactions.submit(table, [("create", {"PartitionKey": "p", "RowKey": str(n)})
                                          for n in range(101)])
    with pytest.raises(TypeError, match="Int32"):
        await transactions.submit(table, [("create", {"PartitionKey": "p", "RowKey": "a",
                                                      "n": 2**31})])
    with pytest.raises(ValueError, match="etag"):
        await transactions.submit(table, [("delete", {"PartitionKey": "p", "RowKey": "a"},
                                           {"match_condition": MatchConditions.IfNotModified})])
    assert await rows(table) == {}


async def test_a_missing_table_is_an_error_not_an_answer(azurite):
    service = TableServiceClient.from_connection_string(azurite.connection_string, **TRANSPORT)
    async with service:
        table = service.get_table_client(f"none{uuid.uuid4().hex[:12]}")
        with pytest.raises(HttpResponseError) as caught:
            await transactions.submit(table, [("create", {"PartitionKey": "p", "RowKey": "a"})])
    assert caught.value.status_code == 404
