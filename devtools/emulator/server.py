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
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from .batch import normalise_query
from .generate import make_tenant
from .identity import TokenError
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
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == ["oauth2", "v2.0", "token"]:
            return self.token(request, segs[0], raw)
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

    def token(self, request: web.Request, tenant: str, raw: bytes) -> web.Response:
        """The identity platform's token endpoint (identity.py): a form POST."""
        if request.method.upper() != "POST":
            # AADSTS900561: the endpoint only accepts POST requests.
            err = TokenError(400, "invalid_request", 900561,
                             f"The endpoint only accepts POST requests. Received a "
                             f"{request.method.upper()} request.")
            return web.json_response(err.body(), status=400)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        status, body = self.emulator.token_request(tenant, form)
        return web.json_response(body, status=status,
                                 headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def tenants_control(self, method: str, parts: list[str], body: Any) -> web.Response | None:
        """/_emulator/tenants[/{id}[/state|/consent|/log]]: add tenants, read their state
        and log, grant or withdraw the app's consent."""
        emu = self.emulator
        if not parts and method == "GET":
            return web.json_response(emu.tenants())
        if not parts and method == "POST":
            body = body or {}
            if body.get("generate") is not None:
                gen = dict(body["generate"])
                seed: Any = make_tenant(int(gen.pop("n_users", 10)), **gen)
            else:
                seed = body.get("seed")
            tenant = emu.add_tenant(seed, tenant_id=body.get("tenantId"),
                                    consented=bool(body.get("consented", True)),
                                    permissions=body.get("permissions"))
            return web.json_response({"tenantId": tenant.tenant_id}, status=201)
        if len(parts) != 2:
            return None
        name, what = parts
        hosted = emu.tenancy.get(name)
        if what == "state" and method == "GET":
            return web.json_response(hosted.tenant.dump())
        if what == "log" and method == "GET":
            return web.json_response(emu.log.entries(tenant=hosted.tenant_id))
        if what == "consent" and method == "POST":
            emu.grant_consent(name, (body or {}).get("permissions"))
            return web.json_response(hosted.public(hosted is emu.tenancy.default))
        if what == "consent" and method == "DELETE":
            emu.withdraw_consent(name)
            return web.Response(status=204)
        return None

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
            if what == "tenants" or what.startswith("tenants/"):
                parts = [unquote(p) for p in what.split("/")[1:] if p]
                answer = self.tenants_control(method, parts, body)
                if answer is not None:
                    return answer
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
                    audience: str = "graph", tenant: str | None = None) -> str:
        """A new JWT-shaped token the emulator accepts with exactly these application
        permissions (see devtools/emulator/authz.py); directory roles default to the app's.
        `tenant`: a hosted tenant's id (default: the default tenant)."""
        return self.emulator.issue_token(roles, directory_roles=directory_roles,
                                         audience=audience, tenant=tenant)

    def grant_permissions(self, permissions: Iterable[str]) -> None:
        """Grant the fixed token more application permissions (admin consent to a new
        component's declaration)."""
        self.emulator.grant_permissions(permissions)

    def state(self) -> dict:
        """Deep-copied dump of the whole tenant (seed format, no secrets)."""
        return self.emulator.tenant.dump()

    def requests(self, tenant: str | None = None) -> list[dict]:
        """The request log (copies); see README for the entry fields. Each entry names its
        `tenant` (the token's tenant id; None when the token named none hosted here)."""
        return self.emulator.log.entries(tenant=tenant)

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

    # ---------------------------------------------------------------- tenants
    def add_tenant(self, seed: dict | Tenant | str | Path | None = None, *,
                   tenant_id: str | None = None, consented: bool = True,
                   permissions: Iterable[str] | None = None) -> Tenant:
        """Host another tenant: a seed (dict, file, Tenant; None = empty), e.g. one from
        `make_tenant(...)`. See Emulator.add_tenant."""
        if isinstance(seed, Path):
            seed = str(seed)
        return self.emulator.add_tenant(seed, tenant_id=tenant_id, consented=consented,
                                        permissions=permissions)

    def tenant_of(self, tenant: str) -> Tenant:
        """A hosted tenant's state, by id or domain."""
        return self.emulator.tenancy.get(tenant).tenant

    def tenants(self) -> list[dict]:
        return self.emulator.tenants()

    def withdraw_consent(self, tenant: str) -> None:
        self.emulator.withdraw_consent(tenant)

    def grant_consent(self, tenant: str, permissions: Iterable[str] | None = None) -> None:
        self.emulator.grant_consent(tenant, permissions)

    def federate(self, *, app_client_id: str, issuer: str, subject: str,
                 audience: str = "api://AzureADTokenExchange") -> None:
        """Tell the token endpoint the multi-tenant app's client id and its federated
        identity credential (the managed identity it trusts)."""
        self.emulator.configure(app_client_id=app_client_id, federated={
            "issuer": issuer, "subject": subject, "audience": audience})

    def token_url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"
