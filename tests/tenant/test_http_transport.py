"""The aiohttp-backed transport under the Graph and Exchange clients, against a real HTTP
server on 127.0.0.1: requests leave as httpx built them, answers come back as httpx
responses, and each failure has the httpx type the retry policy knows."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.tenant.http import AiohttpTransport
from shared.tenant.retry import TRANSIENT_ERRORS, RetryPolicy, RetryTransport
from tests.tenant.loopback import Server, serve


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    runner = await serve(state)
    yield state
    await runner.cleanup()


async def test_a_request_leaves_as_httpx_built_it_and_its_answer_comes_back(server):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        answer = await client.post(f"{server.url}/users/o'brien?$filter=a eq 'b'",
                                   content=b'{"x": 1}',
                                   headers={"Authorization": "Bearer t", "X-Test": "1"})
        empty = await client.post(f"{server.url}/revoke")
        assert empty.status_code == 201
        again = await client.get(f"{server.url}/next")
    assert answer.status_code == 201 and answer.json() == {"echo": '{"x": 1}'}
    assert answer.headers["retry-after"] == "1"
    sent = server.seen[0]
    names = [k.lower() for k, _ in sent["headers"]]
    assert len(names) == len(set(names)), names  # no header twice
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["authorization"] == "Bearer t" and headers["x-test"] == "1"
    assert headers["content-length"] == "8" and "application/octet-stream" not in str(headers)
    assert sent["path"] == "/users/o'brien?$filter=a%20eq%20'b'"
    assert {k.lower(): v for k, v in server.seen[1]["headers"]}["content-length"] == "0"
    # the httpx client keeps cookies as it always did: the transport adds none of its own
    assert {k.lower(): v for k, v in server.seen[2]["headers"]}.get("cookie") == "a=b"
    assert again.status_code == 201


async def test_a_compressed_answer_is_decoded_by_httpx(server):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        answer = await client.get(f"{server.url}/gzip")
    assert answer.json() == {"ok": True}


async def test_failures_have_the_types_the_retry_policy_retries(server):
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server.url}/slow", timeout=httpx.Timeout(5, read=0.2))
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/drop")
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/nothing")
    assert issubclass(httpx.ReadTimeout, TRANSIENT_ERRORS)
    assert issubclass(httpx.RemoteProtocolError, TRANSIENT_ERRORS)
    assert issubclass(httpx.ConnectError, TRANSIENT_ERRORS)
    # a dropped GET was sent once: the transport does not resend behind the policy's back
    assert [s["path"] for s in server.seen].count("/drop") == 1


async def test_every_attempt_after_a_drop_passes_the_retry_policy(server):
    retry = RetryTransport(AiohttpTransport(), RetryPolicy(max_attempts=3, base_delay=0.01))
    async with httpx.AsyncClient(transport=retry) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/drop")
    assert retry.stats.transport_errors == 3 and retry.stats.gave_up == 1
    assert [s["path"] for s in server.seen] == ["/drop"] * 3


def test_a_transport_serves_one_event_loop_after_another():
    """A client kept across event loops (a Functions worker's, a test's) gets a session of
    the loop it is used in."""
    transport = AiohttpTransport()

    async def once() -> int:
        state = Server()
        runner = await serve(state)
        try:
            client = httpx.AsyncClient(transport=transport)
            answer = await client.post(f"{state.url}/x", content=b"1")
            await client.aclose()  # closes this loop's session; the next loop makes its own
            return answer.status_code
        finally:
            await runner.cleanup()

    assert asyncio.run(once()) == 201
    assert asyncio.run(once()) == 201


def test_the_clients_send_through_it():
    from shared.tenant import retry

    assert isinstance(retry.RetryTransport()._inner, AiohttpTransport)
