"""HTTP front end (aiohttp) and the EmulatorServer test harness.

The server binds only to loopback. `EmulatorServer.start()` runs the aiohttp app on its
own event loop in a background thread so synchronous and async tests can both use it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .batch import normalise_query
from .messages import (
    DROP,
    EmuRequest,
    EmuResponse,
    exchange_error_response,
    graph_error_response,
)
from .pipeline import DEFAULT_TOKEN, Emulator
from .tenant import Tenant, load_tenant

CONTROL_PREFIX = "/_emulator"


def ensure_loopback(host: str) -> None:
    """Refuse anything but a loopback address: the emulator accepts a fixed token."""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to bind to non-loopback host {host!r}")


def _json_response(resp: EmuResponse) -> web.Response:
    headers = dict(resp.headers)
    if resp.body is None:
        headers.pop("Content-Type", None)
        return web.Response(status=resp.status, headers=headers)
    headers["Content-Type"] = "application/json"
    return web.Response(status=resp.status, body=json.dumps(resp.body).encode(),
                        headers=headers)


class HttpFrontEnd:
    """Turns aiohttp requests into EmuRequests and back."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path == CONTROL_PREFIX or raw_path.startswith(CONTROL_PREFIX + "/"):
            return await self.control(request, raw_path[len(CONTROL_PREFIX):].strip("/"))
        raw = await request.read()
        segs = [unquote(s) for s in raw_path.split("/") if s]
        headers = {k.lower(): v for k, v in request.headers.items()}
        origin = f"{request.scheme}://{request.host}"
        query = normalise_query(list(request.query.items()))
        api, version = "graph", "v1.0"
        if segs and segs[0].lower() in ("v1.0", "beta"):
            version = segs[0].lower()
            route_segs = segs[1:]
        elif segs and segs[0].lower() == "adminapi":
            api, route_segs = "exchange", segs
        else:
            tmp = EmuRequest(request.method, raw_path, segs, query, headers, None, origin)
            seg = segs[0] if segs else ""
            return _json_response(graph_error_response(
                400, "BadRequest", f"Invalid version: {seg}", tmp))
        body: Any = None
        req = EmuRequest(
            method=request.method.upper(),
            path="/" + "/".join(segs),
            segments=route_segs,
            query=query,
            headers=headers,
            body=None,
            origin=origin,
            api=api,
            version=version,
            raw_body_present=bool(raw),
        )
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                if api == "graph":
                    return _json_response(graph_error_response(
                        400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                        "Content-Type header is set and payload is of valid JSON format.", req))
                body = None
        req.body = body
        if api == "exchange" and not (len(segs) == 4 and segs[1].lower() == "beta"
                                      and segs[3].lower() == "invokecommand"):
            return _json_response(exchange_error_response(
                404, "NotFound", f"No route for {req.path}."))
        resp = await self.emulator.handle(req)
        if resp is DROP:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        assert isinstance(resp, EmuResponse)
        if api == "graph":
            rid = resp.headers.get("request-id") or str(uuid.uuid4())
            resp.headers.setdefault("request-id", rid)
            resp.headers.setdefault("client-request-id", headers.get("client-request-id", rid))
        return _json_response(resp)

    async def control(self, request: web.Request, what: str) -> web.Response:
        emu = self.emulator
        method = request.method.upper()
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "invalid JSON"}, status=400)
        try:
            if what == "state" and method == "GET":
                return web.json_response(emu.tenant.dump())
            if what == "log" and method == "GET":
                return web.json_response(emu.log.entries())
            if what == "log" and method == "DELETE":
                emu.log.clear()
                return web.Response(status=204)
            if what == "config" and method == "POST":
                return web.json_response(emu.configure(**(body or {})))
            if what == "config" and method == "GET":
                return web.json_response(emu.configure())
            if what == "faults" and method == "POST":
                return web.json_response(emu.add_fault(**(body or {})), status=201)
            if what == "faults" and method == "DELETE":
                emu.clear_faults()
                return web.Response(status=204)
            if what == "tenant" and method == "POST":
                emu.tenant.load(body or {})
                return web.json_response({"tenantId": emu.tenant.tenant_id})
            if what == "health":
                return web.json_response({"ok": True})
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"error": f"unknown control call {method} /{what}"},
                                 status=404)


async def start_site(emulator: Emulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on host:port (0 = pick a free port); returns (runner, real port)."""
    ensure_loopback(host)
    runner = web.AppRunner(HttpFrontEnd(emulator).make_app(), access_log=None,
                           handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


class EmulatorServer:
    """The emulator in a background thread, for tests and benchmarks.

    >>> with EmulatorServer(load_tenant("devtools/tenants/demo.json")) as srv:
    ...     httpx.get(srv.base_url + "/v1.0/users", headers={"Authorization": "Bearer test-token"})
    """

    def __init__(self, tenant: dict | Tenant | str | Path | None = None, *,
                 token: str = DEFAULT_TOKEN, seed: int = 0, config: dict | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 grant: tuple[Iterable[str], Iterable[str]] | None = None):
        ensure_loopback(host)
        self.emulator = Emulator(load_tenant(tenant), token=token, seed=seed, config=config,
                                 grant=grant)
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        if self._thread is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def tenant(self) -> Tenant:
        return self.emulator.tenant

    @property
    def token(self) -> str:
        return self.emulator.token

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(
                    start_site(self.emulator, self.host, self.port))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="tenant-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=15):
            raise RuntimeError("emulator did not start within 15 s")
        if errors:
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- accessors
    def issue_token(self, roles: Iterable[str], *, directory_roles: Iterable[str] | None = None,
                    audience: str = "graph") -> str:
        """A new JWT-shaped token the emulator accepts with exactly these application
        permissions (see devtools/emulator/authz.py); directory roles default to the app's."""
        return self.emulator.issue_token(roles, directory_roles=directory_roles,
                                         audience=audience)

    def grant_permissions(self, permissions: Iterable[str]) -> None:
        """Grant the fixed token more application permissions (admin consent to a new
        component's declaration)."""
        self.emulator.grant_permissions(permissions)

    def state(self) -> dict:
        """Deep-copied dump of the whole tenant (seed format, no secrets)."""
        return self.emulator.tenant.dump()

    def requests(self) -> list[dict]:
        """The request log (copies); see README for the entry fields."""
        return self.emulator.log.entries()

    def clear_log(self) -> None:
        self.emulator.log.clear()

    def configure(self, **config: Any) -> dict:
        """Merge throttle/latency/fault settings; returns the effective config."""
        return self.emulator.configure(**config)

    def add_fault(self, **kw: Any) -> dict:
        """Add a scripted fault (method, path_regex, cmdlet, status, code, message, count,
        retry_after, retry_after_http_date, delay_ms, headers, body)."""
        return self.emulator.add_fault(**kw)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    def load_tenant(self, seed: dict) -> None:
        """Replace the whole tenant state with a new seed."""
        self.emulator.tenant.load(seed)
