"""Queue trigger: one remediation request per message (schema in README)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub, services
from shared.playbook.worker import handle_message

bp = func.Blueprint()
log = logging.getLogger("responder.functions.worker")


@bp.function_name("remediation_worker")
@bp.queue_trigger(arg_name="msg", queue_name="%REMEDIATION_QUEUE%",
                  connection="AzureWebJobsStorage")
async def remediation_worker(msg: func.QueueMessage) -> None:
    """Contain the account (the containment steps), then queue the rest of the playbook
    for the clean-up lane; an exception here means "retry this message" to the host."""
    log.info("remediation message %s (delivery %s)", msg.id, msg.dequeue_count)
    outcome = await handle_message(await services(), msg.get_body(), hub=await hub(),
                                   dequeue_count=msg.dequeue_count or 1, message_id=msg.id,
                                   lane="contain")
    log.info("remediation message %s: %s %s", msg.id, outcome.status, outcome.reason)
