"""HTTP webhook for risk alerts: Sentinel/Logic Apps, Azure Monitor action groups, Defender
automation, Graph change notifications, Event Grid webhooks (docs/intake.md: how to wire).

Answers fast (Graph allows 3 seconds): validate, detect the shape, enqueue, 202. It never
waits for a remediation. A large body (over `shared.intake.batches.SYNC_MAX_BYTES` or
`SYNC_MAX_SIGNALS`) is stored as one blob and queued for the intake worker, and answered
202 at once; the caps (`MAX_BODY_BYTES`, the normaliser's `MAX_RECORDS`) answer 413. A small
body is taken in here: its only Graph calls are directory lookups of users named without an
object id (bounded by `LOOKUP_SECONDS`, cached); group exclusions are checked by the worker.
Authentication: the function key (enforced by the Functions host, AuthLevel.FUNCTION), plus
an optional shared secret header; Graph notifications prove themselves with `clientState`,
item by item, and a body on that path is only ever read as change notifications (user
changes queue a paced risk read, never a run: `shared.intake.user_checks`).
Nothing is enqueued on any 4xx; each refusal is logged and recorded with its reason.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError

from functions.runtime import hub, services
from shared.intake.batches import needs_queue, store_batch
from shared.intake.pipeline import intake_result, record, take_user_changes
from shared.intake.sources import (
    AlertError,
    PayloadTooLarge,
    UnknownShape,
    is_eventgrid_validation,
    normalise,
    notification_client_states,
)
from shared.intake.sources.graph_detections import (
    NOTIFICATION_COLLECTION_KEYS,
    from_change_notifications,
)
from shared.intake.sources.result import NormaliseResult
from shared.services import Services
from shared.tenancy import TenantHub

bp = func.Blueprint()
log = logging.getLogger("responder.functions.alerts_http")

ROUTE = "http"
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest body read (the normaliser's text cap; 10,000 records, its `MAX_RECORDS`, of about
1.6 KB each). Larger: 413, recorded. Bodies over `SYNC_MAX_BYTES` go through the queue."""
LOOKUP_SECONDS = 1.0
"""Bound on directory lookups of users named without an object id, inside the request."""
SECRET_HEADER = "x-responder-secret"  # noqa: S105 (a header name, not a secret)
CLIENT_STATE_SETTING = "RESPONDER_GRAPH_CLIENT_STATE"
MAX_VALIDATION_TOKEN_CHARS = 4096


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) \
        -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers=headers)


async def _refuse(svc: Services, status: int, reason: str, **data: Any) -> func.HttpResponse:
    """Log and record why a request was refused, and answer with a clear 4xx."""
    log.warning("alert webhook refused (%d): %s", status, reason)
    await record(svc, "http-refused", reason, {"route": ROUTE, "status": status, **data})
    return _json(status, {"error": reason})


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the configured one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _is_change_notification(payload: Any) -> bool:
    """Graph change notification collections (`{"value": [{subscriptionId...}]}`)."""
    if not isinstance(payload, dict):
        return False
    items = payload.get("value")
    if isinstance(items, list):
        return any(isinstance(i, dict) and ("subscriptionId" in i or "lifecycleEvent" in i)
                   for i in items)
    return "subscriptionId" in payload and ("changeType" in payload or "lifecycleEvent" in payload)


def _filter_client_state(payload: dict[str, Any], expected: str) -> tuple[Any, int, int]:
    """Keep only notifications whose clientState matches (each checked in constant time)."""
    states = notification_client_states(payload)
    keep = [_same(state, expected) for state in states]
    if isinstance(payload.get("value"), list):
        kept = [item for item, ok in zip(payload["value"], keep, strict=True) if ok]
        return {**payload, "value": kept}, len(kept), len(states) - len(kept)
    return payload, sum(keep), len(keep) - sum(keep)


async def _validation(svc: Services, req: func.HttpRequest, token: str) -> func.HttpResponse:
    """Graph's subscription validation: `POST url?validationToken=T` with no body, answered
    within 10 s with 200, `text/plain`, and the URL-decoded token as the body
    (microsoft-graph-docs-contrib:concepts/includes/
    change-notifications-delivery-notificationurl-validation.md, included in
    https://learn.microsoft.com/graph/change-notifications-overview). Only that handshake is
    answered, and only when a clientState is configured (without one every notification is
    refused, so a subscription must not be validated); the token is never reflected in any
    other answer, and `nosniff` stops a browser from reading it as anything but text."""
    if req.method.upper() != "POST" or (req.get_body() or b"").strip():
        return await _refuse(svc, 400, "validationToken is answered only on the Graph "
                             "validation handshake (a POST with no body)")
    if not svc.settings.graph_client_state:
        return await _refuse(svc, 403, f"subscription validation refused: "
                             f"{CLIENT_STATE_SETTING} is not set, so notifications could not "
                             "be checked")
    if not token or len(token) > MAX_VALIDATION_TOKEN_CHARS:
        return await _refuse(svc, 400, "validationToken is empty or too long")
    return func.HttpResponse(token, status_code=200, mimetype="text/plain",
                             headers={"X-Content-Type-Options": "nosniff"})


async def _notifications(svc: Services, payload: Any,
                         tenants: TenantHub | None = None) -> func.HttpResponse:
    """A Graph change-notification body: each item's clientState is checked in constant
    time, and the kept items are read only as change notifications (never handed to the
    general normaliser, so a risk-detection shape or a `records` array beside a valid
    clientState starts nothing). User changes queue a paced risk read; nothing is enqueued."""
    expected = svc.settings.graph_client_state
    if not expected:
        return await _refuse(svc, 403, f"Graph change notifications are refused: "
                             f"{CLIENT_STATE_SETTING} is not set, so clientState cannot be "
                             "checked")
    try:
        payload, kept, dropped = _filter_client_state(payload, expected)
    except AlertError as exc:
        return await _refuse(svc, 400, f"malformed change notification: {exc}")
    if dropped:
        log.warning("dropped %d Graph notification(s) with a wrong clientState", dropped)
        await record(svc, "http-refused", f"{dropped} notification(s) with a wrong "
                     "clientState dropped", {"route": ROUTE, "status": 403, "kept": kept})
    if not kept:
        return await _refuse(svc, 403, "clientState does not match")
    extra = sorted(str(k)[:40] for k in payload if k not in NOTIFICATION_COLLECTION_KEYS) \
        if isinstance(payload.get("value"), list) else []
    if extra:
        await record(svc, "http-refused", "change-notification body carries fields that are "
                     f"not part of a notification collection ({', '.join(extra[:10])}); they "
                     "are not read", {"route": ROUTE, "status": 202, "fields": extra[:10]})
    result = from_change_notifications(payload)
    for problem in result.problems:
        await record(svc, "problem", f"{problem.error}: {problem.reason}",
                     {"route": ROUTE, "locator": problem.locator, "source": problem.source,
                      "error": problem.error})
    try:
        checks = await take_user_changes(svc, result.user_changes, route=ROUTE, hub=tenants,
                                         client_state_checked=True)
    except AzureError:  # storage trouble: Graph retries the notification
        log.warning("could not queue user checks", exc_info=True)
        return _json(503, {"error": "temporarily unable to take the notifications; retry"},
                     headers={"Retry-After": "10"})
    return _json(202, {"accepted": True, "enqueued": 0, "userChecks": checks,
                       "problems": len(result.problems), "ignored": len(result.ignored),
                       "dropped": dropped})


async def _queue_body(svc: Services, body: bytes, result: NormaliseResult) \
        -> func.HttpResponse:
    """A large body: stored and queued for the intake worker (no per-record work here)."""
    try:
        stored = await store_batch(svc, body, result, route=ROUTE)
    except AzureError:  # storage trouble: nothing was queued, the sender retries
        log.warning("could not store a large alert body", exc_info=True)
        return _json(503, {"error": "temporarily unable to take the alerts; retry"},
                     headers={"Retry-After": "10"})
    log.info("alert webhook: %d signal(s) in %d bytes queued as %s", stored.signals,
             stored.bytes, stored.blob)
    return _json(202, {"accepted": True, "queued": True, "signals": stored.signals,
                       "problems": len(result.problems), "ignored": len(result.ignored)})


async def handle(svc: Services, req: func.HttpRequest,
                 tenants: TenantHub | None = None) -> func.HttpResponse:
    """The whole webhook, testable with a real `func.HttpRequest`. `tenants`: route each
    signal to the tenant its payload names (`svc` is then the hub's default Services)."""
    if req.method.upper() == "OPTIONS":  # CloudEvents webhook abuse-protection handshake
        origin = req.headers.get("webhook-request-origin")
        if not origin:
            return _json(400, {"error": "OPTIONS needs a WebHook-Request-Origin header"})
        if len(origin) > 200 or any(ord(c) < 0x21 or ord(c) == 0x7F for c in origin):
            # echoed into a response header: never let CR/LF or spaces through
            return await _refuse(svc, 400, "WebHook-Request-Origin is not a host name")
        return func.HttpResponse(status_code=200, headers={
            "WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})

    token = req.params.get("validationToken")
    if token is not None:
        return await _validation(svc, req, token)

    secret = svc.settings.webhook_shared_secret
    given = req.headers.get(SECRET_HEADER)
    if secret and given is not None and not _same(given, secret):  # fail before reading
        return await _refuse(svc, 403, f"wrong {SECRET_HEADER} header")

    declared = req.headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > MAX_BODY_BYTES:
        return await _refuse(svc, 413, f"body of {declared} bytes is over the "
                             f"{MAX_BODY_BYTES}-byte limit")
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        return await _refuse(svc, 413, f"body of {len(body)} bytes is over the "
                             f"{MAX_BODY_BYTES}-byte limit")
    if not body.strip():
        return await _refuse(svc, 400, "empty body: expected a JSON alert payload")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return await _refuse(svc, 400, "body is not valid UTF-8 JSON")

    if not isinstance(payload, (dict, list)):
        return await _refuse(svc, 422, "unknown alert shape: expected a JSON object or array, "
                             f"got {type(payload).__name__}")

    code = is_eventgrid_validation(payload)
    if code is not None:  # Event Grid subscription validation handshake
        return _json(200, {"validationResponse": code})

    if _is_change_notification(payload):
        return await _notifications(svc, payload, tenants)
    if secret and given is None:
        return await _refuse(svc, 401, f"missing {SECRET_HEADER} header")

    try:
        result = normalise(payload)
    except UnknownShape as exc:
        return await _refuse(svc, 422, f"unknown alert shape: {exc}")
    except PayloadTooLarge as exc:
        return await _refuse(svc, 413, f"payload too large: {exc}")
    except AlertError as exc:
        return await _refuse(svc, 400, f"malformed alert payload: {exc}")
    if needs_queue(len(body), result):
        return await _queue_body(svc, body, result)
    outcome = await intake_result(svc, result, route=ROUTE, check_groups=False,
                                  lookup_seconds=LOOKUP_SECONDS, hub=tenants)
    summary = outcome.summary()
    if outcome.errors:  # storage trouble: ask the sender to retry (dedupe absorbs repeats)
        log.warning("alert webhook: %d signal(s) failed, asking for a retry", len(outcome.errors))
        return _json(503, {"error": "temporarily unable to queue every alert; retry",
                           **summary}, headers={"Retry-After": "10"})
    return _json(202, {"accepted": True, **summary})


@bp.function_name("risk_alert_http")
@bp.route(route="alerts", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
async def risk_alert_http(req: func.HttpRequest) -> func.HttpResponse:
    """Webhook entry point: POST /api/alerts?code=<function key>."""
    return await handle(await services(), req, await hub())
