"""A loopback HTTP server on 127.0.0.1 that records what reached it, for the transport
tests."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from aiohttp import web


class Server:
    """A loopback server that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append({"method": request.method, "path": request.path_qs, "body": body,
                          "headers": [(k, v) for k, v in request.headers.items()]})
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(b'{"ok": true}'), headers={
                "Content-Encoding": "gzip", "Content-Type": "application/json"})
        if request.path == "/slow":
            await asyncio.sleep(2)
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPInternalServerError()
        return web.json_response({"echo": body.decode()}, status=201, headers={
            "Retry-After": "1", "Set-Cookie": "a=b"})


async def serve(state: Server) -> web.AppRunner:
    """Start `state` on a free loopback port (its `url`); the runner stops it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    return runner
