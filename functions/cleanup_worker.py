"""Queue trigger: the clean-up lane. A run contained its account from the remediation
queue and left the rest of its playbook here (shared/playbook/runner.py, lanes)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub, services
from shared.playbook.worker import handle_message

bp = func.Blueprint()
log = logging.getLogger("responder.functions.cleanup")


@bp.function_name("remediation_cleanup")
@bp.queue_trigger(arg_name="msg", queue_name="%RESPONDER_CLEANUP_QUEUE%",
                  connection="AzureWebJobsStorage")
async def remediation_cleanup(msg: func.QueueMessage) -> None:
    """Run the run's remaining steps; an exception here means "retry this message"."""
    log.info("clean-up message %s (delivery %s)", msg.id, msg.dequeue_count)
    outcome = await handle_message(await services(), msg.get_body(), hub=await hub(),
                                   dequeue_count=msg.dequeue_count or 1, message_id=msg.id,
                                   lane="cleanup")
    log.info("clean-up message %s: %s %s", msg.id, outcome.status, outcome.reason)
