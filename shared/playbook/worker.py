"""Queue message -> validated request -> run. The queue trigger is a thin adapter over this.

A message that fails validation is never retried: it is recorded with its reason and moved
to `<queue>-poison` at once (the function then returns normally, so the host deletes the
original). A retryable failure is raised, so the host redelivers it and, after
maxDequeueCount, poisons it; the run record says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from shared.errors import UnknownTenant, ValidationError
from shared.models import MAX_MESSAGE_BYTES, RemediationRequest
from shared.playbook import fairness
from shared.playbook.release import release_run
from shared.playbook.runner import Lane, RunOutcome, run_request
from shared.services import Services
from shared.state import partitions
from shared.state.clock import now
from shared.state.journal import safe_key
from shared.state.storage import poison_queue_name
from shared.tenancy import TenantHub

log = logging.getLogger("responder.worker")
INVALID_PARTITION = partitions.INVALID_MESSAGES
MAX_DEQUEUE_COUNT = 5
"""Must equal host.json extensions.queues.maxDequeueCount (a test checks)."""


@dataclass
class MessageOutcome:
    status: str  # "ran", "invalid", "already-done", "moved" (to the overflow lane)
    reason: str = ""
    run: RunOutcome | None = None


def parse_request(body: bytes | str) -> RemediationRequest:
    """Validate a queue message body; raises ValidationError with a readable reason."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValidationError(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES} cap")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"message is not JSON: {exc.__class__.__name__}") from exc
    if not isinstance(data, dict):
        raise ValidationError("message must be a JSON object")
    try:
        return RemediationRequest.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationError(f"invalid remediation request: {problems}") from exc


async def poison_invalid(services: Services, body: bytes | str, reason: str,
                         message_id: str | None) -> None:
    """Record why a message was refused and move it to the poison queue."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]
    await services.journal.put_item(
        INVALID_PARTITION, message_id or digest, reason=reason[:4000], at=now(),
        sha256=digest, size=len(text), queue=services.settings.remediation_queue,
    )
    await services.storage.enqueue(poison_queue_name(services.settings.remediation_queue),
                                   text[:MAX_MESSAGE_BYTES])
    log.warning("invalid remediation message poisoned: %s", reason,
                extra={"message_id": message_id})


async def handle_message(
    services: Services,
    body: bytes | str,
    *,
    dequeue_count: int = 1,
    message_id: str | None = None,
    max_dequeue_count: int = MAX_DEQUEUE_COUNT,
    lane: Lane = "all",
    hub: TenantHub | None = None,
) -> MessageOutcome:
    """Handle one delivery. Raises (RetryableRunError) only when the host should retry.

    `services` are the default tenant's: a message without `tenant` (or naming the default
    tenant) runs with them exactly as in a single-tenant deployment, with no lookup. A
    message naming another tenant runs with that tenant's Services from `hub`; a tenant the
    hub does not serve (or no hub) refuses the message like any invalid one.

    `lane`: "contain" from the remediation queue, "cleanup" from the clean-up queue
    (shared.playbook.runner, lanes), "overflow" from the overflow queue (a containment a
    tenant over its share moved there, shared.playbook.fairness); "all" runs the whole
    playbook in this delivery."""
    acting = services
    try:
        request = parse_request(body)
        if request.tenant and not services.settings.is_default_tenant(request.tenant):
            acting = await tenant_services(hub, request.tenant)
            # later messages of the run (clean-up lane, deferrals) name the tenant by its id
            request = request.model_copy(update={"tenant": acting.settings.tenant_id})
        admission = await fairness.admit(hub, acting, request, lane=lane,
                                         dequeue_count=dequeue_count)
        if admission.move:
            return MessageOutcome("moved", await fairness.move_to_overflow(acting, request))
        try:
            outcome = await dispatch(acting, request, dequeue_count=dequeue_count,
                                     max_dequeue_count=max_dequeue_count, lane=lane)
        finally:
            admission.release()
    except ValidationError as exc:
        # Recorded in the journal of the tenant the message was routed to (a release of a
        # run that tenant does not have, say); a message refused before routing (not JSON,
        # an unknown tenant) in the default tenant's.
        where = services if isinstance(exc, UnknownTenant) else acting
        await poison_invalid(where, body, str(exc), message_id)
        return MessageOutcome("invalid", str(exc))
    if outcome.already_done:
        return MessageOutcome("already-done", "this request id already ran", outcome)
    return MessageOutcome("ran", outcome.run.reason, outcome)


async def tenant_services(hub: TenantHub | None, tenant: str) -> Services:
    """Another tenant's Services, or UnknownTenant (a deployment without a hub serves its
    default tenant only)."""
    if hub is None:
        raise UnknownTenant(f"unknown tenant: {tenant[:100]!r} (this deployment serves "
                            "RESPONDER_TENANT_ID only)")
    return await hub.services_for(tenant)


async def dispatch(services: Services, request: RemediationRequest, **kw: Any) -> RunOutcome:
    """Route by `action`: remediate (default), release, resume."""
    if request.action == "release":
        # From the queue, a release that finds the run busy is put back for later.
        return await release_run(services, request, requeue=True)
    if request.action == "resume":
        return await resume_run(services, request, **kw)
    return await run_request(services, request, **kw)


async def resume_run(services: Services, request: RemediationRequest, **kw: Any) -> RunOutcome:
    """A `resume` message (sent when an approval is decided): continue the run with its
    original request; the approval gate in the runner decides what may now act."""
    if not request.run_id:
        raise ValidationError("a resume request needs runId")
    run = await services.journal.get_run(safe_key(request.run_id))
    if run is None:
        raise ValidationError(f"no run {request.run_id!r} to resume")
    original = RemediationRequest.model_validate(run.request)
    return await run_request(services, original, **kw)
