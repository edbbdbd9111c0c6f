"""The Graph helpers against the emulator over real HTTP, through msgraph-sdk's adapter."""

from __future__ import annotations

import time

import pytest

from shared.errors import Forbidden, NotFound, Throttled, Unavailable
from shared.tenant.credentials import StaticTokenCredential
from shared.tenant.graph import directory
from shared.tenant.graph.batch import BatchRequest, chunk, run_batch
from shared.tenant.graph.client import create_graph_client
from shared.tenant.retry import RetryPolicy
from tests.conftest import TOKEN

OBRIEN = "o'brien@contoso.com"


def _graph_calls(emulator, path_part: str) -> list[dict]:
    return [e for e in emulator.requests() if path_part in e["path"]]


async def test_upn_with_apostrophe_found_through_escaped_filter(graph, emulator):
    user = await directory.resolve_user(graph, OBRIEN)
    assert user.upn == OBRIEN
    call = [e for e in emulator.requests() if e["path"] == "/v1.0/users"][-1]
    assert call["query"]["$filter"] == "userPrincipalName eq 'o''brien@contoso.com'"


async def test_guest_upn_resolves(graph):
    user = await directory.resolve_user(graph, "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    assert user.is_guest


async def test_unknown_user_is_typed_not_found(graph):
    with pytest.raises(NotFound):
        await directory.resolve_user(graph, "nobody@contoso.com")
    with pytest.raises(NotFound) as info:
        await directory.resolve_user(graph, "00000000-0000-0000-0000-00000000dead")
    assert info.value.status == 404 and info.value.request_id


async def test_429_with_fractional_retry_after_is_waited_out(graph, emulator):
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=429,
                       retry_after="1.5", count=1)
    started = time.monotonic()
    found = await directory.domains(graph)
    assert found
    assert time.monotonic() - started >= 1.5
    assert graph.stats.throttled == 1 and graph.stats.retries == 1
    assert len(_graph_calls(emulator, "/v1.0/domains")) == 2


async def test_429_with_http_date_retry_after(graph, emulator):
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=429,
                       retry_after="1", retry_after_http_date=True, count=1)
    assert await directory.domains(graph)
    assert graph.stats.throttled == 1


async def test_429_without_retry_after_backs_off_then_succeeds(graph, emulator):
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=429, count=2)
    assert await directory.domains(graph)
    assert graph.stats.throttled == 2
    assert graph.stats.waited_seconds > 0


async def test_persistent_429_gives_up_within_bound(settings, emulator):
    policy = RetryPolicy(max_attempts=4, max_total_wait=3.0, base_delay=0.2)
    client = create_graph_client(settings, StaticTokenCredential(TOKEN), policy=policy)
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=429,
                       retry_after="0.3", count=None)
    started = time.monotonic()
    try:
        with pytest.raises(Throttled) as info:
            await directory.domains(client)
    finally:
        await client.close()
    assert time.monotonic() - started < 5
    assert info.value.retryable
    assert len(_graph_calls(emulator, "/v1.0/domains")) == 4


async def test_server_errors_and_dropped_connections_are_retried(graph, emulator):
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=503, count=1)
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=504, count=1)
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status="drop", count=1)
    assert await directory.domains(graph)
    assert graph.stats.server_errors == 2 and graph.stats.transport_errors == 1


async def test_persistent_503_becomes_unavailable(settings, emulator):
    client = create_graph_client(settings, StaticTokenCredential(TOKEN),
                                 policy=RetryPolicy(max_attempts=2, base_delay=0.05))
    emulator.add_fault(method="GET", path_regex=r"^/v1\.0/domains$", status=503, count=None)
    try:
        with pytest.raises(Unavailable):
            await directory.domains(client)
    finally:
        await client.close()


async def test_403_is_forbidden_naming_the_permission(graph, emulator):
    user = await directory.resolve_user(graph, OBRIEN)
    emulator.add_fault(method="POST", path_regex=r"/revokeSignInSessions$", status=403,
                       code="Authorization_RequestDenied",
                       message="Insufficient privileges to complete the operation.", count=None)
    with pytest.raises(Forbidden) as info:
        await directory.revoke_sessions(graph, user.id)
    err = info.value
    assert err.code == "Authorization_RequestDenied"
    assert "User.RevokeSessions.All" in str(err)
    assert err.request_id and not err.retryable


async def test_paging_collects_every_page(graph, emulator):
    pages = [p async for p in graph.pages("/users", params={"$top": "2"})]
    everyone = [u for p in pages for u in p]
    assert len(pages) >= 3
    assert len(everyone) == len(emulator.state()["users"])
    assert len({u["id"] for u in everyone}) == len(everyone)


async def test_static_token_is_sent_and_required(settings, emulator):
    bad = create_graph_client(settings, StaticTokenCredential("wrong-token"))
    try:
        with pytest.raises(Forbidden) as info:
            await directory.domains(bad)
    finally:
        await bad.close()
    assert info.value.status == 401


def test_chunking_is_20_20_5_and_keeps_dependencies_together():
    reqs = [BatchRequest(str(i), "GET", f"/users/{i}") for i in range(45)]
    assert [len(c) for c in chunk(reqs)] == [20, 20, 5]
    with pytest.raises(ValueError):
        chunk([BatchRequest("a", "GET", "/x"), BatchRequest("a", "GET", "/y")])


async def test_batch_of_45_goes_as_20_20_5_and_retries_429_items_alone(graph, emulator):
    users = emulator.state()["users"]
    ids = [u["id"] for u in users]
    reqs = [BatchRequest(f"r{i}", "GET", f"/users/{ids[i % len(ids)]}") for i in range(45)]
    reqs[3] = BatchRequest("r3", "GET", "/domains")
    emulator.add_fault(method="GET", path_regex=r"/domains$", status=429, retry_after="0.2",
                       count=1)
    results = await run_batch(graph, reqs)
    assert all(r.ok for r in results.values()), {k: r.status for k, r in results.items()}
    assert results["r3"].attempts == 2 and results["r3"].body["value"]
    assert results["r4"].attempts == 1 and results["r4"].body["id"] == ids[4]
    posts = [e for e in emulator.requests() if e["path"].endswith("/$batch")]
    sizes = [len((e["body"] or {}).get("requests", [])) for e in posts]
    assert sizes == [20, 1, 20, 5], "45 go as 20+20+5; only the throttled item is resent"
    resent = posts[1]["body"]["requests"]
    assert [r["id"] for r in resent] == ["r3"]


async def test_batch_dependency_failure_surfaces_424(graph, emulator):
    reqs = [
        BatchRequest("a", "GET", "/users/00000000-0000-0000-0000-00000000dead"),
        BatchRequest("b", "GET", "/domains", depends_on=("a",)),
    ]
    results = await run_batch(graph, reqs)
    assert results["a"].status == 404 and isinstance(results["a"].error, NotFound)
    assert results["b"].status == 424 and results["b"].error is not None
