"""The request pipeline every call goes through, direct or inside $batch:
auth -> log -> scripted fault -> random fault -> throttle -> latency -> handler.
Throttled or faulted requests never reach a handler, so they never change state."""

from __future__ import annotations

import asyncio
import copy
import random
import sys
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from . import authz
from .batch import run_batch
from .exchange_routes import dispatch_exchange, parse_invoke
from .faults import FaultInjector, ScriptedFault
from .graph_routes import dispatch_graph
from .messages import (
    DROP,
    EmuRequest,
    EmuResponse,
    exchange_error_response,
    graph_error_response,
)
from .requestlog import RequestLog
from .tenant import Tenant
from .throttle import ThrottleDecision, Throttler, format_retry_after

DEFAULT_TOKEN = "test-token"  # noqa: S105 (a fixed test credential for a local emulator)

DEFAULT_CONFIG: dict[str, Any] = {
    "throttle": {},
    "latency_ms": {"default": 0},
    "faults": {"rate": 0.0, "kinds": None, "classes": None, "retry_after": "1"},
    "confirm_max_user_ids": 100,
    "secure_score_forbidden": False,
    "batch_max_requests": 20,
    "page_sizes": {},
    "exchange_page_size": 1000,
    "exchange_default_result_size": 1000,
    "exchange_check_tenant": True,
}

_MAILBOX_SEGMENTS = {"mailfolders", "messages", "sendmail", "mailboxsettings",
                     "inferenceclassification", "messagerules"}
_DIRECTORY_ROOTS = {"users", "groups", "directoryobjects", "directoryroles", "domains",
                    "organization", "me"}
_DEFAULT_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound", 409: "Conflict", 423: "Locked",
    429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
    503: "ServiceUnavailable", 504: "GatewayTimeout",
}
_DEFAULT_MESSAGES = {
    429: "Too many requests.", 503: "The service is temporarily unavailable.",
    504: "The gateway timed out.", 500: "An internal server error occurred.",
    403: "Insufficient privileges to complete the operation.",
}


class Emulator:
    """Transport-neutral core: state, config, throttling, faults and the request log."""

    def __init__(self, tenant: Tenant, *, token: str = DEFAULT_TOKEN, seed: int = 0,
                 config: dict | None = None,
                 grant: tuple[Iterable[str], Iterable[str]] | None = None):
        self.tenant = tenant
        self.token = token
        # The fixed token carries the app's full grant: `grant` (permissions, directory
        # roles) or, by default, what infra/permissions.json lists.
        self.authority = authz.Authority(token, grant)
        self.seed = seed
        self.log = RequestLog()
        self.lock = threading.RLock()  # guards config, throttler and fault state
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.throttler = Throttler()
        self.faults = FaultInjector(seed)
        self.reseed(seed)
        if config:
            self.configure(**config)

    # ---------------------------------------------------------------- config
    def reseed(self, seed: int) -> None:
        with self.lock:
            self.seed = seed
            self.faults.reseed(seed)
            self.shuffle_rng = random.Random(f"shuffle:{seed}")

    def configure(self, **cfg: Any) -> dict[str, Any]:
        """Merge settings. `throttle`/`latency_ms` merge per class (a None value removes a
        class); `faults` replaces the fault settings; `seed` reseeds the RNGs."""
        with self.lock:
            if cfg.pop("reset", False):
                self.config = copy.deepcopy(DEFAULT_CONFIG)
                self.throttler = Throttler()
                self.faults.configure(self.config["faults"])
                self.faults.clear()
            if "seed" in cfg:
                self.reseed(int(cfg.pop("seed")))
            if "token" in cfg:
                self.token = str(cfg.pop("token"))
                self.authority.fixed_token = self.token
            for key, value in cfg.items():
                if key == "throttle":
                    value = value or {}
                    for cls, c in value.items():
                        if c is None:
                            self.config["throttle"].pop(cls, None)
                        else:
                            self.config["throttle"][cls] = dict(c)
                    self.throttler.configure(value)
                elif key == "latency_ms":
                    if isinstance(value, int | float):
                        value = {"default": value}
                    self.config["latency_ms"].update(value or {})
                elif key == "faults":
                    self.config["faults"] = {**DEFAULT_CONFIG["faults"], **(value or {})}
                    self.faults.configure(self.config["faults"])
                else:
                    self.config[key] = copy.deepcopy(value)
            return copy.deepcopy(self.config)

    def add_fault(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            return self.faults.add(**kw).public()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # ---------------------------------------------------------------- pipeline
    def classify(self, req: EmuRequest) -> tuple[str, str]:
        """Request class and throttling key (per mailbox for the mailbox class)."""
        if req.api == "exchange":
            return "exchange", "tenant"
        segs = [s.lower() for s in req.segments]
        if not segs:
            return "directory_read", "tenant"
        if segs[0] == "$batch":
            return "batch", "tenant"
        if segs[0] == "identityprotection":
            return "identity_protection", "tenant"
        if segs[0] == "security":
            return "security", "tenant"
        if segs[0] == "users" and len(segs) >= 3 and segs[2] in _MAILBOX_SEGMENTS:
            user = self.tenant.find_user(req.segments[1])
            return "mailbox", user["id"] if user else segs[1]
        if req.method.upper() != "GET" and segs[0] in _DIRECTORY_ROOTS:
            return "directory_write", "tenant"
        return "directory_read", "tenant"

    def issue_token(self, roles: Iterable[str], *, directory_roles: Iterable[str] | None = None,
                    audience: str = "graph") -> str:
        """A new JWT-shaped token with exactly these application permissions; the app's
        directory roles for it default to the service principal's (`[]`: none)."""
        return self.authority.issue(self.tenant, roles, directory_roles=directory_roles,
                                    audience=audience)

    def grant_permissions(self, permissions: Iterable[str]) -> None:
        """Add application permissions to the fixed token's grant, as an admin consenting to
        what a new component declares (and infra/permissions.json would list)."""
        self.authority.consented.update(permissions)

    def grant_of(self, req: EmuRequest) -> authz.Grant | None:
        """The one place the bearer token is checked: its grant, or None (401)."""
        if req.grant is not None:
            return req.grant  # type: ignore[no-any-return]
        auth = req.header("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        req.grant = self.authority.grant_for(value.strip(), self.tenant)
        return req.grant  # type: ignore[no-any-return]

    def authorized(self, req: EmuRequest) -> bool:
        return self.grant_of(req) is not None

    def unauthorized(self, req: EmuRequest) -> EmuResponse:
        return graph_error_response(
            401, "InvalidAuthenticationToken",
            "Access token is empty." if not req.header("authorization")
            else "Access token validation failure. Invalid audience.", req,
            headers={"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                     '"https://login.microsoftonline.com/common/oauth2/authorize"'})

    def error(self, req: EmuRequest, status: int, code: str | None, message: str | None,
              headers: dict | None = None, extra_inner: dict | None = None) -> EmuResponse:
        code = code or _DEFAULT_CODES.get(status, "Error")
        message = message or _DEFAULT_MESSAGES.get(status, code)
        if req.api == "exchange":
            return exchange_error_response(status, code, message, headers=headers)
        return graph_error_response(status, code, message, req, headers, extra_inner)

    def _scripted_response(self, req: EmuRequest, f: ScriptedFault) -> EmuResponse | object:
        if f.status == "drop":
            return DROP
        status = int(f.status)
        headers = dict(f.headers)
        ra = format_retry_after(f.retry_after if f.retry_after is None or isinstance(
            f.retry_after, str) else float(f.retry_after), f.retry_after_http_date)
        if ra is not None:
            headers["Retry-After"] = ra
        if f.body is not None or status < 400:
            headers.setdefault("Content-Type", "application/json")
            return EmuResponse(status, f.body, headers)
        return self.error(req, status, f.code, f.message, headers)

    def _random_fault(self, req: EmuRequest, kind: str) -> EmuResponse | object:
        if kind == "drop":
            return DROP
        if kind == "429":
            return self.error(req, 429, None, None,
                              {"Retry-After": str(self.config["faults"].get("retry_after", "1"))})
        if kind == "429_no_retry_after":
            return self.error(req, 429, None, None)
        status = int(kind) if kind.isdigit() else 503
        return self.error(req, status, None, None)

    def _throttled(self, req: EmuRequest, d: ThrottleDecision) -> EmuResponse:
        headers = {"Retry-After": d.retry_after} if d.retry_after is not None else {}
        if d.cls == "mailbox":
            kind = "MailboxConcurrency" if d.model == "concurrency" else "RequestLimit"
            return self.error(req, 429, "ApplicationThrottled",
                              f"Application is over its {kind} limit.", headers)
        if d.cls == "identity_protection":
            return self.error(req, 429, "TooManyRequests", "Too many requests.", headers,
                              {"status": "429", "code": "429"})
        return self.error(req, 429, "TooManyRequests",
                          "Too many requests. Please retry after some time.", headers)

    def latency(self, cls: str) -> float:
        lat = self.config.get("latency_ms") or {}
        return float(lat.get(cls, lat.get("default", 0)) or 0) / 1000.0

    async def execute(self, req: EmuRequest, *, entry: dict | None = None,
                      dispatch: Any = None) -> EmuResponse | object:
        """Run one request through faults, throttling, latency and the handler."""
        cls, key = self.classify(req)
        entry = entry or self.log.start(req, cls)
        entry["cls"] = cls
        grant = self.grant_of(req)
        if grant is None:  # a $batch item that names another, unknown token
            self.log.finish(entry, 401)
            return self.unauthorized(req)
        with self.tenant.lock:
            verdict = authz.decide(req, grant, self.tenant)
        entry["authz"] = verdict.public()
        if not verdict.allowed:
            resp = authz.denial(req, verdict)
            self.log.finish(entry, resp.status)
            return resp
        with self.lock:
            scripted = self.faults.match(req)
            kind = None if scripted else self.faults.draw(cls)
            decision = None
            if scripted is None and kind is None:
                decision = self.throttler.admit(cls, key)
        if scripted is not None:
            if scripted.delay_ms:
                await asyncio.sleep(scripted.delay_ms / 1000.0)
            resp = self._scripted_response(req, scripted)
            status = None if resp is DROP else resp.status
            self.log.finish(entry, status, fault=f"scripted:{scripted.status}")
            return resp
        if kind is not None:
            resp = self._random_fault(req, kind)
            self.log.finish(entry, None if resp is DROP else resp.status, fault=kind)
            return resp
        if decision is not None:
            resp = self._throttled(req, decision)
            self.log.finish(entry, 429, throttled=True)
            return resp
        try:
            delay = self.latency(cls)
            if delay > 0:
                await asyncio.sleep(delay)
            if dispatch is not None:
                resp = await dispatch(req, entry)
            else:
                resp = self.dispatch(req)
        finally:
            with self.lock:
                self.throttler.release(cls, key)
        if resp is DROP:
            self.log.finish(entry, None, fault="drop")
            return resp
        resp = authz.limit(req, grant, resp)
        self.log.finish(entry, resp.status, write=resp.write and resp.status < 400)
        return resp

    def dispatch(self, req: EmuRequest) -> EmuResponse:
        with self.tenant.lock:
            try:
                with self.lock:
                    config = copy.deepcopy(self.config)
                if req.api == "exchange":
                    return dispatch_exchange(req, self.tenant, config)
                return dispatch_graph(req, self.tenant, config)
            except Exception as exc:  # a bug in the emulator: say so loudly, answer 500
                traceback.print_exc(file=sys.stderr)
                return self.error(req, 500, "InternalServerError",
                                  f"Emulator error: {type(exc).__name__}: {exc}")

    async def handle(self, req: EmuRequest) -> EmuResponse | object:
        """Entry point for a request arriving over HTTP."""
        if not self.authorized(req):
            cls, _ = self.classify(req)
            entry = self.log.start(req, cls)
            self.log.finish(entry, 401)
            return self.unauthorized(req)
        if req.api == "exchange":
            bad = parse_invoke(req)
            if bad is not None:
                entry = self.log.start(req, "exchange")
                self.log.finish(entry, bad.status)
                return bad
        if req.api == "graph" and [s.lower() for s in req.segments] == ["$batch"]:
            return await self.execute(req, dispatch=lambda r, e: run_batch(self, r, e))
        return await self.execute(req)
