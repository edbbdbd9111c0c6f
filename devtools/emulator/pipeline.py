"""The request pipeline every call goes through, direct or inside $batch:
auth -> log -> scripted fault -> random fault -> throttle -> latency -> handler.
Throttled or faulted requests never reach a handler, so they never change state."""

from __future__ import annotations

import asyncio
import copy
import random
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any

from . import authz, identity
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
from .tenancy import Hosted, Tenancy
from .tenant import Tenant, load_tenant
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
_EXPIRED = "Access token has expired or is not yet valid."
_NOT_HOSTED = "Access token validation failure. The token's tenant is not served here."
_DEFAULT_MESSAGES = {
    429: "Too many requests.", 503: "The service is temporarily unavailable.",
    504: "The gateway timed out.", 500: "An internal server error occurred.",
    403: "Insufficient privileges to complete the operation.",
}


class Emulator:
    """Transport-neutral core: state, config, throttling, faults and the request log.

    It hosts one or more tenants (tenancy.py): the first is the default tenant, the one the
    fixed token acts on. A Graph request is for the tenant of its token's `tid` (a Graph URL
    does not name a tenant); an Exchange request names its tenant in the URL, which must be
    the token's."""

    def __init__(self, tenant: Tenant, *, token: str = DEFAULT_TOKEN, seed: int = 0,
                 config: dict | None = None,
                 grant: tuple[Iterable[str], Iterable[str]] | None = None):
        self.token = token
        # The fixed token carries the app's full grant: `grant` (permissions, directory
        # roles) or, by default, what infra/permissions.json lists.
        self.authority = authz.Authority(token, grant)
        self.seed = seed
        self.log = RequestLog()
        self.lock = threading.RLock()  # guards config, throttlers and fault state
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.tenancy = Tenancy(tenant, self.config["throttle"])
        self.faults = FaultInjector(seed)
        self.reseed(seed)
        if config:
            self.configure(**config)

    @property
    def tenant(self) -> Tenant:
        """The default tenant's state."""
        return self.tenancy.default.tenant

    @property
    def throttler(self) -> Throttler:
        """The default tenant's throttling buckets."""
        return self.tenancy.default.throttler

    # ---------------------------------------------------------------- tenants
    def add_tenant(self, seed: dict | Tenant | str | None = None, *,
                   tenant_id: str | None = None, consented: bool = True,
                   permissions: Iterable[str] | None = None) -> Tenant:
        """Host another tenant (a seed, a seed file, a Tenant, or None for an empty one);
        `tenant_id` overrides the seed's. `consented=False`: the app is not installed there
        yet. `permissions`: what its admin consented to (default: the app's full grant)."""
        if isinstance(seed, dict) and tenant_id is not None:
            seed = {**seed, "tenantId": tenant_id}
        tenant = load_tenant(seed)
        if tenant_id is not None and tenant.tenant_id != tenant_id:
            tenant.load({**tenant.dump(), "tenantId": tenant_id})
        with self.lock:
            throttle = copy.deepcopy(self.config["throttle"])
        self.tenancy.add(tenant, throttle, consented=consented, permissions=permissions)
        return tenant

    def withdraw_consent(self, tenant: str) -> None:
        """The tenant's admin removes the app: no new token for it, and the tokens issued
        so far are refused (see tenancy.py for how this differs from a real tenant)."""
        self.tenancy.get(tenant).withdraw()

    def grant_consent(self, tenant: str, permissions: Iterable[str] | None = None) -> None:
        """The tenant's admin (re)consents, to `permissions` or the app's full grant; tokens
        issued before a withdrawal stay refused."""
        self.tenancy.get(tenant).grant(permissions)

    def tenants(self) -> list[dict[str, Any]]:
        default = self.tenancy.default
        return [h.public(h is default) for h in self.tenancy.all()]

    def token_request(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """`POST /{tenant}/oauth2/v2.0/token` (identity.py); logged without the assertion."""
        hosted, status, body = identity.token_request(self, tenant, form)
        req = EmuRequest("POST", f"/{tenant}/oauth2/v2.0/token", [tenant, "oauth2", "v2.0",
                         "token"], {}, {}, {k: v for k, v in form.items()
                                        if k in ("grant_type", "client_id", "scope")},
                         "", api="identity")
        req.hosted = hosted
        entry = self.log.start(req, "identity")
        if status >= 400:
            entry["error_codes"] = body.get("error_codes")
        self.log.finish(entry, status)
        return status, body

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
                self.tenancy.reset_throttling(self.config["throttle"])
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
                    self.tenancy.configure_throttling(value)
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
        """Request class and throttling key (per mailbox for the mailbox class); the
        buckets themselves are the request's tenant's."""
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
            user = self.tenant_of(req).find_user(req.segments[1])
            return "mailbox", user["id"] if user else segs[1]
        if req.method.upper() != "GET" and segs[0] in _DIRECTORY_ROOTS:
            return "directory_write", "tenant"
        return "directory_read", "tenant"

    def issue_token(self, roles: Iterable[str], *, directory_roles: Iterable[str] | None = None,
                    audience: str = "graph", tenant: str | None = None) -> str:
        """A new JWT-shaped token with exactly these application permissions; the app's
        directory roles for it default to the service principal's (`[]`: none). `tenant`:
        a hosted tenant (default: the default tenant); the token follows its consent."""
        if tenant is None:
            return self.authority.issue(self.tenant, roles, directory_roles=directory_roles,
                                        audience=audience)
        hosted = self.tenancy.get(tenant)
        return self.authority.issue(hosted.tenant, roles, directory_roles=directory_roles,
                                    audience=audience, generation=hosted.generation)

    def grant_permissions(self, permissions: Iterable[str]) -> None:
        """Add application permissions to the fixed token's grant, as an admin consenting to
        what a new component declares (and infra/permissions.json would list)."""
        self.authority.consented.update(permissions)

    def tenant_of(self, req: EmuRequest) -> Tenant:
        """The state a request acts on: its token's tenant (the default before the token is
        read)."""
        hosted = req.hosted
        return hosted.tenant if isinstance(hosted, Hosted) else self.tenant

    def _resolve(self, token: str, req: EmuRequest) -> tuple[Hosted | None, authz.Grant | None]:
        """Which hosted tenant a bearer token is for, and its grant there (None: refused,
        with the reason in req.auth_error)."""
        if token == self.authority.fixed_token:
            hosted = self.tenancy.default
            with hosted.lock:
                consented, permissions = hosted.consented, hosted.permissions
            if not consented:
                req.auth_error = _EXPIRED
                return hosted, None
            return hosted, self.authority.grant_for(token, hosted.tenant, permissions)
        payload = authz.read_jwt(token)
        if payload is None:
            return None, None
        found = self.tenancy.find(str(payload.get("tid") or ""))
        if found is None:
            req.auth_error = _NOT_HOSTED
            return None, None
        issued = self.authority.issued(payload)
        with found.lock:
            live = found.consented and (issued is None or issued.generation == found.generation)
        exp = payload.get("exp")
        if not live or (isinstance(exp, int | float) and exp <= time.time()):
            req.auth_error = _EXPIRED
            return found, None
        if issued is not None and issued.strict_audience and \
                payload.get("aud") != authz.AUDIENCES.get(req.api, payload.get("aud")):
            return found, None
        return found, self.authority.grant_for(token, found.tenant)

    def grant_of(self, req: EmuRequest) -> authz.Grant | None:
        """The one place the bearer token is checked: its grant, or None (401). Also sets
        req.hosted, the tenant the request is for. A $batch item inherits the batch's
        tenant: an item naming another tenant's token is refused."""
        if req.grant is not None:
            return req.grant  # type: ignore[no-any-return]
        auth = req.header("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        outer = req.hosted
        hosted, grant = self._resolve(value.strip(), req)
        if outer is not None and hosted is not outer:
            req.auth_error = _NOT_HOSTED
            return None
        req.hosted = hosted
        req.grant = grant
        return grant

    def authorized(self, req: EmuRequest) -> bool:
        return self.grant_of(req) is not None

    def unauthorized(self, req: EmuRequest) -> EmuResponse:
        # Graph's 401 for a missing, invalid or expired token is InvalidAuthenticationToken;
        # the docs give the status and cause, not the message wording
        # (https://learn.microsoft.com/en-us/graph/resolve-auth-errors).
        if not req.header("authorization"):
            message = "Access token is empty."
        else:
            message = req.auth_error or "Access token validation failure. Invalid audience."
        return graph_error_response(
            401, "InvalidAuthenticationToken", message, req,
            headers={"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                     '"https://login.microsoftonline.com/common/oauth2/authorize"'})

    def wrong_tenant(self, req: EmuRequest) -> EmuResponse | None:
        """An Exchange URL names its tenant: refuse (401) one that is hosted here but is not
        the token's tenant. A name hosted nowhere goes on to the cmdlet router (404
        TenantNotFound, as a single-tenant emulator answers)."""
        if req.api != "exchange" or len(req.segments) < 3:
            return None
        named = self.tenancy.find_by_name(req.segments[2])
        if named is None or named is req.hosted:
            return None
        req.auth_error = ("Access token validation failure: the token is for another "
                          "tenant than the one the URL names.")
        return self.unauthorized(req)

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
        grant = self.grant_of(req)
        cls, key = self.classify(req)
        entry = entry or self.log.start(req, cls)
        entry["cls"] = cls
        if grant is None:  # a $batch item that names another, unknown token
            self.log.finish(entry, 401)
            return self.unauthorized(req)
        tenant = self.tenant_of(req)
        throttler = req.hosted.throttler
        with tenant.lock:
            verdict = authz.decide(req, grant, tenant)
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
                decision = throttler.admit(cls, key)
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
                throttler.release(cls, key)
        if resp is DROP:
            self.log.finish(entry, None, fault="drop")
            return resp
        resp = authz.limit(req, grant, resp)
        self.log.finish(entry, resp.status, write=resp.write and resp.status < 400)
        return resp

    def dispatch(self, req: EmuRequest) -> EmuResponse:
        tenant = self.tenant_of(req)
        with tenant.lock:
            try:
                with self.lock:
                    config = copy.deepcopy(self.config)
                if req.api == "exchange":
                    return dispatch_exchange(req, tenant, config)
                return dispatch_graph(req, tenant, config)
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
        refused = self.wrong_tenant(req)
        if refused is not None:
            entry = self.log.start(req, "exchange")
            self.log.finish(entry, 401)
            return refused
        if req.api == "exchange":
            bad = parse_invoke(req)
            if bad is not None:
                entry = self.log.start(req, "exchange")
                self.log.finish(entry, bad.status)
                return bad
        if req.api == "graph" and [s.lower() for s in req.segments] == ["$batch"]:
            return await self.execute(req, dispatch=lambda r, e: run_batch(self, r, e))
        return await self.execute(req)
