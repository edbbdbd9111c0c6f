"""Notification fan-out: the SOC mailbox (Graph sendMail), a Teams channel (Workflows
webhook) and a generic webhook signed with HMAC-SHA256, each optional (policy `notify`).

Why it never raises: a notification is a courtesy on top of the work; a dead receiver must
not fail or retry a run. Every delivery, good or bad, is journaled (channel, event, outcome,
the receiver's host only: Teams Workflows URLs carry a `sig` credential in their query).
Nothing secret is sent: messages are built from journaled summaries, never from passwords
or bearer tokens. The one deliberate exception is the approval links of an
`approval.needed` message, whose single-use tokens ARE the approval (see shared.safety.approvals);
they are sent, never logged or journaled.

Generic webhook signature: `X-Responder-Signature: sha256=<hex>` is
HMAC-SHA256(secret, f"{X-Responder-Timestamp}.{raw body}"); receivers check it with
`verify_signature` (constant time) and refuse timestamps older than a few minutes (replay).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from shared.logs import redact
from shared.permissions import declare
from shared.settings import _is_loopback
from shared.state import partitions
from shared.state.clock import now
from shared.tenant.graph import directory

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger("responder.notify")

declare("notify", graph=("Mail.Send",),
        why="mail notifications to the SOC mailbox from the policy's sender mailbox")

SIGNATURE_HEADER = "X-Responder-Signature"
TIMESTAMP_HEADER = "X-Responder-Timestamp"
EVENT_HEADER = "X-Responder-Event"
DELIVERY_HEADER = "X-Responder-Delivery"
NOTIFICATIONS_PARTITION = partitions.NOTIFICATIONS
"""Journal partition for deliveries that belong to no run (sweep findings)."""
EVENTS = ("run.finished", "run.failed", "run.released", "approval.needed",
          "approval.escalated", "sweep.findings")


@dataclass
class Notification:
    """One thing to tell people about; rendered per channel."""

    event: str
    title: str
    lines: list[str] = field(default_factory=list)
    run_id: str | None = None
    facts: dict[str, str] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)
    """(label, url) pairs: report links, approve/deny links."""
    data: dict[str, Any] = field(default_factory=dict)
    """Machine-readable detail for the generic webhook."""


@dataclass
class Delivery:
    channel: str
    ok: bool
    detail: str = ""
    status: int | None = None
    target: str = ""


class UnsafeUrl(ValueError):
    """A receiver URL that is not https (or http on loopback)."""


def check_url(url: str) -> str:
    """Only http(s) URLs, and plain http only for a loopback host. Returns the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("receiver URL must be an absolute https URL")
    if parts.scheme == "http" and not _is_loopback(url):
        raise UnsafeUrl("receiver URL may use http only for a loopback host")
    if parts.username or parts.password:
        raise UnsafeUrl("receiver URL must not carry credentials")
    return url


def redact_url(url: str) -> str:
    """What is safe to record about a receiver: scheme, host and port only."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *,
                     tolerance_seconds: float = 300, now_epoch: float | None = None) -> bool:
    """For receivers (and tests): a valid, fresh signature. Constant-time comparison."""
    try:
        age = abs((now_epoch if now_epoch is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    if age > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _text(note: Notification) -> str:
    lines = [note.title, "", *note.lines]
    if note.facts:
        lines += ["", *(f"{k}: {v}" for k, v in note.facts.items())]
    if note.links:
        lines += ["", *(f"{label}: {url}" for label, url in note.links)]
    return "\n".join(lines)


_MARKDOWN_SAFE = str.maketrans({"[": "(", "]": ")", "*": "\u2217"})


def card_text(text: str) -> str:
    """Adaptive Card TextBlocks render a Markdown subset: an attacker-chosen rule name or
    address must not become a link or bold text in the SOC channel. Link brackets and
    asterisks are replaced (backslash escapes are not reliably honoured by Teams)."""
    return str(text).translate(_MARKDOWN_SAFE)


def teams_card(note: Notification) -> dict[str, Any]:
    """A Workflows-webhook message carrying one Adaptive Card."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": card_text(note.title), "weight": "Bolder",
         "size": "Medium", "wrap": True},
    ]
    if note.lines:
        body.append({"type": "TextBlock", "text": "\n\n".join(card_text(x) for x in note.lines),
                     "wrap": True})
    if note.facts:
        body.append({"type": "FactSet",
                     "facts": [{"title": card_text(k), "value": card_text(v)}
                               for k, v in note.facts.items()]})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body,
    }
    if note.links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": label, "url": url}
                           for label, url in note.links]
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": card}]}


def webhook_body(note: Notification) -> bytes:
    return json.dumps({
        "event": note.event, "title": note.title, "runId": note.run_id, "lines": note.lines,
        "facts": note.facts, "links": [{"label": a, "url": b} for a, b in note.links],
        "data": note.data, "sentAt": now().isoformat(),
    }, default=str, sort_keys=True).encode("utf-8")


async def _post(services: Services, url: str, body: bytes,
                headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=services.settings.notify_timeout_seconds,
                                 follow_redirects=False, trust_env=False,
                                 transport=services.notify_transport) as client:
        return await client.post(url, content=body,
                                 headers={"Content-Type": "application/json", **headers})


async def _mail(services: Services, note: Notification) -> Delivery:
    cfg = services.policy.notify
    assert cfg.sender and cfg.soc_mailbox
    message = {
        "subject": f"[responder] {note.title}"[:250],
        "body": {"contentType": "Text", "content": _text(note)},
        "toRecipients": [{"emailAddress": {"address": cfg.soc_mailbox}}],
    }
    await directory.send_mail(services.graph, cfg.sender, message)
    return Delivery("mail", True, f"mailed to {cfg.soc_mailbox}", target=cfg.soc_mailbox)


async def _teams(services: Services, note: Notification) -> Delivery:
    url = check_url(services.policy.notify.teams_webhook_url or "")
    body = json.dumps(teams_card(note)).encode("utf-8")
    response = await _post(services, url, body, {})
    return _http_delivery("teams", url, response)


async def _webhook(services: Services, note: Notification) -> Delivery:
    cfg = services.policy.notify
    url = check_url(cfg.webhook_url or "")
    secret = services.settings.secret_named(cfg.webhook_secret_setting)
    if not secret:
        return Delivery("webhook", False, f"not sent: the app setting "
                        f"{cfg.webhook_secret_setting} (webhook secret) is not set; unsigned "
                        "webhooks are never sent", target=redact_url(url))
    body = webhook_body(note)
    stamp = str(int(time.time()))
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body),
               EVENT_HEADER: note.event, DELIVERY_HEADER: uuid.uuid4().hex}
    response = await _post(services, url, body, headers)
    return _http_delivery("webhook", url, response)


def _http_delivery(channel: str, url: str, response: httpx.Response) -> Delivery:
    ok = 200 <= response.status_code < 300
    return Delivery(channel, ok, f"HTTP {response.status_code}", response.status_code,
                    redact_url(url))


async def _attempt(channel: str, target: str, coro: Awaitable[Delivery]) -> Delivery:
    try:
        return await coro
    except UnsafeUrl as exc:
        return Delivery(channel, False, f"refused: {exc}", target=target)
    except httpx.HTTPError as exc:  # connection refused, timeout, ...: never the URL
        return Delivery(channel, False, f"{type(exc).__name__}: receiver unreachable",
                        target=target)
    except Exception as exc:  # a notification must never fail the run
        return Delivery(channel, False, redact(f"{type(exc).__name__}: {exc}")[:500],
                        target=target)


async def send(services: Services, note: Notification, *,
               journal: bool = True) -> list[Delivery]:
    """Deliver to every configured channel; journal each outcome (unless the caller
    journals them itself, `outcome_event`: the notify step, with its own record); never
    raise."""
    cfg = services.policy.notify
    jobs: list[Any] = []
    if cfg.soc_mailbox and cfg.sender:
        jobs.append(_attempt("mail", cfg.soc_mailbox, _mail(services, note)))
    if cfg.teams_webhook_url:
        jobs.append(_attempt("teams", redact_url(cfg.teams_webhook_url),
                             _teams(services, note)))
    if cfg.webhook_url:
        jobs.append(_attempt("webhook", redact_url(cfg.webhook_url),
                             _webhook(services, note)))
    if not jobs:
        return []
    deliveries = list(await asyncio.gather(*jobs))
    for d in deliveries:
        if not d.ok:
            log.warning("notification %s via %s failed: %s", note.event, d.channel,
                        d.detail, extra={"run_id": note.run_id} if note.run_id else {})
        if journal:
            await _record(services, note, d)
    return deliveries


def outcome_event(note: Notification, d: Delivery) -> tuple[str, str, dict[str, Any]]:
    """The audit event of one delivery: kind, message and data."""
    outcome = "delivered" if d.ok else "FAILED"
    return ("notification" if d.ok else "notification-failed",
            f"{note.event} via {d.channel}: {outcome} ({d.detail})",
            {"channel": d.channel, "event": note.event, "ok": d.ok, "status": d.status,
             "detail": d.detail, "target": d.target})


async def _record(services: Services, note: Notification, d: Delivery) -> None:
    try:
        await services.journal.event(note.run_id or NOTIFICATIONS_PARTITION,
                                     *outcome_event(note, d))
    except Exception:  # the journal being down must not turn a courtesy into a failure
        log.exception("could not journal a notification outcome")


def configured(services: Services) -> bool:
    cfg = services.policy.notify
    return bool((cfg.soc_mailbox and cfg.sender) or cfg.teams_webhook_url or cfg.webhook_url)


def summary(deliveries: list[Delivery]) -> str:
    return "; ".join(f"{d.channel}: {'delivered' if d.ok else 'failed: ' + d.detail}"
                     for d in deliveries) or "no channel configured"


async def sweep_findings(services: Services, sweep: str, findings: list[str],
                         data: dict[str, Any] | None = None) -> list[Delivery]:
    """For the timer sweeps: announce what a sweep found (nothing is sent for no findings)."""
    if not findings:
        return []
    return await send(services, Notification(
        event="sweep.findings", title=f"sweep {sweep}: {len(findings)} finding(s)",
        lines=findings[:50], data={"sweep": sweep, **(data or {})}))


def run_note(run: Any, results: dict[str, Any], *, event: str | None = None,
             lines: list[str] | None = None) -> Notification:
    """The run's summary as a notification: one line per step, from the journal."""
    failed = [n for n, r in results.items() if getattr(r.status, "value", r.status) == "failed"]
    event = event or ("run.failed" if failed or run.state == "failed" else "run.finished")
    who = run.upn or run.user
    title = {"run.failed": f"run FAILED for {who}",
             "run.released": f"run released for {who} (false positive)"}.get(
        event, f"compromised account contained: {who}")
    body = list(lines or [])
    for name in run.steps or list(results):
        r = results.get(name)
        if r is not None and name != "notify":
            body.append(f"- {name}: {getattr(r.status, 'value', r.status)} - {r.summary}")
    if run.reason:
        body.append(f"reason: {run.reason}")
    facts = {"run": run.run_id, "user": f"{who} ({run.user_id or '?'})",
             "state": run.state, "report": f"python -m shared.cli report {run.run_id}"}
    return Notification(event=event, title=title, lines=body, run_id=run.run_id,
                        facts=facts, data={"state": run.state, "failedSteps": failed,
                                           "userId": run.user_id, "upn": run.upn})


async def announce_run(services: Services, run: Any, results: dict[str, Any], *,
                       event: str | None = None,
                       lines: list[str] | None = None) -> list[Delivery]:
    """Run finished / failed / released. Never raises."""
    try:
        note = run_note(run, results, event=event, lines=lines)
    except Exception:
        log.exception("could not build the run notification")
        return []
    return await send(services, note)
