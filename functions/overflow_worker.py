"""Queue trigger: the overflow lane. When the deployment serves several tenants, a tenant
that already holds its share of an instance has its further requests moved here from the
remediation queue, so another tenant's request is not queued behind them
(shared/playbook/fairness.py). They run here as they would have there, never moved again."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub, services
from shared.playbook.worker import handle_message

bp = func.Blueprint()
log = logging.getLogger("responder.functions.overflow")


@bp.function_name("remediation_overflow")
@bp.queue_trigger(arg_name="msg", queue_name="%RESPONDER_OVERFLOW_QUEUE%",
                  connection="AzureWebJobsStorage")
async def remediation_overflow(msg: func.QueueMessage) -> None:
    """Contain the account, as the remediation worker does; an exception here means "retry
    this message" to the host."""
    log.info("overflow message %s (delivery %s)", msg.id, msg.dequeue_count)
    outcome = await handle_message(await services(), msg.get_body(), hub=await hub(),
                                   dequeue_count=msg.dequeue_count or 1, message_id=msg.id,
                                   lane="overflow")
    log.info("overflow message %s: %s %s", msg.id, outcome.status, outcome.reason)
