"""Users named by change notifications, waiting for a paced read of their risk.

Why a queue of users and not a run: a Graph subscription on `users` (or Event Grid's
`Microsoft.Graph.UserUpdated`) fires when a user is created or updated, whatever changed
(https://learn.microsoft.com/en-us/azure/event-grid/partner-events-graph-api): a licence, a
manager, the responder's own password reset. Such a notification is no evidence of
compromise. It is kept as one row per user (a storm of notifications for one user is one
row), and the risk poller reads that user's risk through Identity Protection's pacing
(`shared.intake.user_risk`); only what that read says may start a run.

This module only stores; it imports nothing that takes alerts in, so the pipeline can use it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from shared.intake.dedupe import row_key
from shared.intake.sources.result import UserChange
from shared.services import Services
from shared.state import partitions

log = logging.getLogger("responder.intake.user_checks")

PARTITION = partitions.INTAKE_USER_CHECKS
INTAKE_EVENTS = partitions.INTAKE


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented clientState with the configured one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _event(services: Services, kind: str, message: str, data: dict[str, object]) -> None:
    try:
        await services.journal.event(INTAKE_EVENTS, kind, message, data)
    except Exception:  # an audit write must not lose the notification
        log.warning("could not record intake event %s: %s", kind, message[:200], exc_info=True)


async def queue_user_checks(services: Services, changes: Iterable[UserChange], *, route: str,
                            client_state_checked: bool = False) -> int:
    """Remember each changed user for a risk read; returns how many were queued.

    Where the caller has not already checked it (the HTTP webhook does, item by item), a
    configured `RESPONDER_GRAPH_CLIENT_STATE` must match the change's clientState.
    """
    expected = services.settings.graph_client_state
    queued = 0
    for change in changes:
        if not client_state_checked and expected and not same_secret(change.client_state,
                                                                     expected):
            await _event(services, "http-refused" if route == "http" else "refused",
                         "user change notification with a wrong clientState dropped",
                         {"route": route, "source": change.source})
            continue
        if not change.user_key:
            continue
        now = datetime.now(UTC)
        await services.journal.ensure()
        await services.journal.put_item(
            PARTITION, row_key(change.user_key), userId=change.user_id or "",
            upn=change.upn or "", changeType=(change.change_type or "")[:100],
            route=route[:50], source=change.source[:100], at=now)
        await _event(services, "user-check-queued",
                     "user change notification: the user's risk will be read (paced); "
                     "the notification itself starts no run",
                     {"route": route, "user": change.user_id or change.upn,
                      "changeType": change.change_type})
        queued += 1
    return queued
