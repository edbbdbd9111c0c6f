"""Queue trigger: one large alert body the webhook stored (shared/intake/batches.py)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub, services
from shared.intake.batches import take_batch

bp = func.Blueprint()
log = logging.getLogger("responder.functions.intake_worker")


@bp.function_name("intake_worker")
@bp.queue_trigger(arg_name="msg", queue_name="%RESPONDER_INTAKE_QUEUE%",
                  connection="AzureWebJobsStorage")
async def intake_worker(msg: func.QueueMessage) -> None:
    """Take the stored body in; an exception here means "retry this message" to the host."""
    log.info("intake message %s (delivery %s)", msg.id, msg.dequeue_count)
    result = await take_batch(await services(), msg.get_body(),
                              dequeue_count=msg.dequeue_count or 1, message_id=msg.id,
                              hub=await hub())
    log.info("intake message %s: %s %s", msg.id, result.status, result.reason)
