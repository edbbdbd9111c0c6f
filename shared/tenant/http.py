"""The HTTP transport under every Graph and Exchange request: httpx's client API (which
kiota and the retry policy are built on) over aiohttp's connection pool and parser.

httpx's own transport (httpcore over anyio, with the pure-Python h11 parser) spent about a
millisecond of CPU per request here, and it checks every idle pooled connection for
readability on each request; aiohttp (already installed for the storage SDKs' transport)
does the same exchange for about a third of that (bench/RESULTS.md). A storm sends some 40
Graph and Exchange requests per account, so this is the largest single share of the
worker's CPU the app controls.

Errors keep httpx's types, so the retry policy (shared.tenant.retry) treats them as before:
a timeout is `httpx.TimeoutException`, a refused or dropped connection `httpx.NetworkError`
or `httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import aiohttp
import httpx

KEEPALIVE_SECONDS = 5.0
"""How long an idle connection is kept (httpx's default, which this replaces)."""
MAX_CONNECTIONS = 100
"""Connections at once per client (httpx's default)."""
_CONTROL = re.compile(r"[\r\n\x00]")
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding"})
"""Framing headers: aiohttp writes its own from the body it sends."""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through one aiohttp session (per event loop)."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS,
                 keepalive: float = KEEPALIVE_SECONDS) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session belongs to the loop it was made in (a client reused from another
            # loop, as tests do, gets a fresh one).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections,
                                               keepalive_timeout=self._keepalive),
                auto_decompress=False,  # httpx decodes, from the headers, as it always did
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
                skip_auto_headers=("Content-Type",),
                trust_env=False)
            # aiohttp resends an idempotent request once, at once, when its connection
            # drops. Every attempt must pass the retry policy instead: counted, backed off,
            # and for Identity Protection in a slot of the tenant's budget of its own. The
            # switch is not public (tests/tenant/test_graph_client.py sees a drop reach the
            # policy, so an aiohttp that renames it fails there).
            self._session._retry_connection = False
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_here()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.decode("latin-1").lower() not in _NOT_FORWARDED]
        for name, value in headers:
            if _CONTROL.search(name) or _CONTROL.search(value):
                # a UPN with CR/LF in a header (X-AnchorMailbox) never leaves: refused here
                # as httpx's own transport refused it, as a local mistake
                raise httpx.LocalProtocolError(f"illegal character in header {name!r}",
                                               request=request)
        body = await request.aread()
        limits = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=limits.get("connect"),
                                        sock_read=limits.get("read"))
        try:
            async with session.request(request.method, str(request.url), headers=headers,
                                       data=body or None, allow_redirects=False,
                                       timeout=timeout) as answer:
                content = await answer.read()
                return httpx.Response(
                    answer.status, request=request, content=content,
                    headers=[(k.decode("latin-1"), v.decode("latin-1"))
                             for k, v in answer.raw_headers])
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc) or "connection dropped",
                                            request=request) from exc
        except (aiohttp.ClientOSError, OSError) as exc:
            raise httpx.ReadError(str(exc) or "connection error", request=request) from exc
        except aiohttp.ClientError as exc:  # a local mistake (URL, header): not transient
            raise httpx.TransportError(str(exc), request=request) from exc
        except ValueError as exc:  # aiohttp refusing what it cannot write: not transient
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        if self._loop is asyncio.get_running_loop():
            await session.close()
            return
        # Closed from another loop than its own (a test's teardown): its sockets are closed
        # and its pool emptied, but what waits on its own loop cannot be awaited here.
        with contextlib.suppress(RuntimeError, ValueError):
            await session.close()


def http_transport() -> httpx.AsyncBaseTransport:
    """The transport every Graph, Exchange and alert-poller client sends through."""
    return AiohttpTransport()
