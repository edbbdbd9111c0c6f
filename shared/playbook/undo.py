"""What a release does about one step: the types a step's `undo` speaks in.

A step declares its undo beside its `apply` (shared.playbook.registry); the release
(shared.playbook.release) collects the items and carries them out. These types live apart
from both so that a step module never has to import the release.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.models import StepResult, StepStatus

if TYPE_CHECKING:
    from shared.services import Services
    from shared.state.journal import Journal, RunRecord
    from shared.tenant.exchange import ExchangeClient
    from shared.tenant.graph.client import GraphClient

FINISHED = (StepStatus.DONE, StepStatus.PARTIAL)
"""Only a step that finished (fully or partly) left changes a release has to consider."""


@dataclass
class Undo:
    """One release item: what it restores, and the call that restores it (None: report).

    The call returns None when it restored something, or a note saying why there was
    nothing to do (the item is then recorded as nothing_to_do).
    """

    key: str
    summary: str
    action: Callable[[], Awaitable[str | None]] | None = None
    status: StepStatus = StepStatus.DONE
    changes: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ReleaseContext:
    """What a step's undo may read: the run being released and the clients to undo it with.

    Undo works from the journal only (the step records and the evidence snapshot), never
    from a StepContext: the run finished long ago and its plans are gone.
    """

    services: Services
    run: RunRecord
    evidence: dict[str, Any] | None

    @property
    def graph(self) -> GraphClient:
        return self.services.graph

    @property
    def exchange(self) -> ExchangeClient:
        return self.services.exchange

    @property
    def journal(self) -> Journal:
        return self.services.journal

    @property
    def user_id(self) -> str:
        return str(self.run.user_id)

    @property
    def mailbox(self) -> str:
        """The mailbox identity Exchange is addressed with (the UPN once resolved)."""
        return self.run.upn or self.run.user


def finished_changes(result: StepResult | None) -> list[dict[str, Any]]:
    """The changes a step recorded, when it finished; otherwise none to undo."""
    return list(result.changes) if result is not None and result.status in FINISHED else []
