"""What every sweep run shares: the result it reports, the context it runs in, a per-sweep
lease so two runs never overlap, and a checkpoint in Table storage so a bounded run resumes
where the last one stopped. The sweeps themselves are `registry` entries; `runner.run_sweep`
is the one entry point used by the timers and the command line.

A sweep pass walks a list of items in a stable order (sorted keys). The checkpoint keeps the
key of the last item handled, saved after each item: a run cut short by its budget, its time
limit or a fault continues after that key, so nothing is skipped and nothing repeated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.state import partitions
from shared.state.clock import now
from shared.state.lease import Lease

if TYPE_CHECKING:
    from shared.services import Services
    from shared.tenant.exchange import ExchangeClient
    from shared.tenant.graph.client import GraphClient

CHECKPOINTS = partitions.SWEEP_CHECKPOINTS
LEASES = partitions.SWEEP_LEASES
REPORTS = partitions.SWEEP_REPORTS
LEASE_MARGIN_SECONDS = 120
"""A lease outlives the run's time limit by this much, so a crashed run frees it soon after."""


def event_partition(name: str) -> str:
    """Journal partition holding a sweep's append-only events."""
    return partitions.sweep_events(name)


@dataclass
class SweepResult:
    """What one sweep run found and did. `complete` is False when a pass continues next run."""

    sweep: str
    dry_run: bool = False
    status: str = "ok"
    """ok | skipped (overlap, disabled) | not-available (licence, 403) | failed"""
    started_at: datetime = field(default_factory=now)
    finished_at: datetime | None = None
    trigger: str = "cli"
    past_due: bool = False
    complete: bool = True
    found: list[dict[str, Any]] = field(default_factory=list)
    """Each finding: kind, who or what, and why."""
    actions: list[dict[str, Any]] = field(default_factory=list)
    """Each action taken (or, in a dry run, that would be taken)."""
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """Findings deliberately left alone, with the reason (excluded, recent run...)."""
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Sweep-specific report data (the posture report puts its score and controls here)."""

    def note(self, line: str) -> None:
        self.notes.append(line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep, "status": self.status, "dryRun": self.dry_run,
            "trigger": self.trigger, "pastDue": self.past_due, "complete": self.complete,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "found": self.found, "actions": self.actions, "skipped": self.skipped,
            "notes": self.notes, "errors": self.errors, "data": self.data,
        }

    def summary(self) -> str:
        verb = "would act" if self.dry_run else "acted"
        tail = "" if self.complete else " (pass continues next run)"
        return (f"sweep {self.sweep}: {self.status}; found {len(self.found)}, {verb} "
                f"{len(self.actions)}, left alone {len(self.skipped)}{tail}")

    def text(self) -> str:
        """A readable report for the terminal."""
        lines = [self.summary() + ("  [dry run]" if self.dry_run else "")]
        lines += [f"  note: {n}" for n in self.notes]
        for title, rows in (("found", self.found), ("done" if not self.dry_run else "would do",
                                                     self.actions),
                            ("left alone", self.skipped)):
            for row in rows:
                what = row.get("what") or row.get("kind") or ""
                who = row.get("user") or row.get("identity") or row.get("runId") or ""
                why = row.get("why") or row.get("reason") or ""
                lines.append(f"  {title}: {what} {who}".rstrip() + (f" - {why}" if why else ""))
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class SweepContext:
    """What a sweep sees: services, read-only client views in a dry run, its limits."""

    services: Services
    result: SweepResult
    dry_run: bool
    budget: int
    deadline: float
    """time.monotonic() value after which no new item is started."""
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def graph(self) -> GraphClient:
        return self.services.graph.view(read_only=self.dry_run)

    @property
    def exchange(self) -> ExchangeClient:
        return self.services.exchange.view(read_only=self.dry_run)

    @property
    def policy(self) -> Any:
        return self.services.policy

    def out_of_budget(self, used: int) -> bool:
        return used >= self.budget or time.monotonic() >= self.deadline

    async def save_checkpoint(self, **values: Any) -> None:
        """Persist the position (never in a dry run: a dry run changes nothing)."""
        self.checkpoint.update(values)
        if not self.dry_run:
            await save_checkpoint(self.services, self.result.sweep, self.checkpoint)

    async def walk(
        self,
        items: Sequence[tuple[str, Any]],
        handle: Callable[[str, Any], Awaitable[None]],
        *,
        budget: int | None = None,
    ) -> bool:
        """Handle items in key order after the checkpoint's cursor; True when the pass ended.

        The cursor is saved after every item, so an interruption (budget, time, a fault that
        propagates) resumes at the next item. At the end of a pass the cursor is cleared.
        """
        cursor = str(self.checkpoint.get("cursor") or "")
        limit = self.budget if budget is None else budget
        todo = sorted((k, v) for k, v in items if k > cursor)
        used = 0
        for key, value in todo:
            if used >= limit or time.monotonic() >= self.deadline:
                self.result.complete = False
                self.result.note(f"stopped after {used} item(s) (budget {limit} per run or "
                                 f"time limit); the next run resumes after {key!r}")
                return False
            await handle(key, value)
            used += 1
            await self.save_checkpoint(cursor=key, passStarted=self.checkpoint.get(
                "passStarted") or now().isoformat())
        await self.save_checkpoint(cursor="", passStarted="", lastPassEnded=now().isoformat())
        return True


# checkpoints ------------------------------------------------------------------------------
async def load_checkpoint(services: Services, name: str) -> dict[str, Any]:
    row = await services.journal.get_item(CHECKPOINTS, name)
    if not row:
        return {}
    try:
        value = json.loads(row.get("state") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def save_checkpoint(services: Services, name: str, state: dict[str, Any]) -> None:
    await services.journal.put_item(CHECKPOINTS, name, state=json.dumps(state, default=str),
                                    at=now())


# the lease --------------------------------------------------------------------------------
async def acquire_lease(services: Services, name: str, holder: str, seconds: float) -> bool:
    """Take the sweep's lease unless another run holds an unexpired one."""
    return await Lease(services.journal, LEASES, name, seconds, owner=holder).acquire()


async def release_lease(services: Services, name: str, holder: str) -> None:
    await Lease(services.journal, LEASES, name, 0, owner=holder).release()


# the dry-run switch and what is worth announcing ----------------------------------------
def sweeps_dry_run(services: Services) -> bool:
    return services.settings.dry_run or services.settings.sweeps_dry_run


def notice_lines(result: SweepResult) -> list[str]:
    """What is worth a notification: what the sweep did, what it only reported (policy says
    report), and errors. Findings left alone because a run already covers them are not news."""
    lines = [f"{a.get('what')}: {a.get('user') or a.get('identity') or a.get('runId')}"
             + (f" ({a.get('why')})" if a.get("why") else "") for a in result.actions]
    lines += [f"found {s.get('kind')}: {s.get('user') or s.get('identity') or s.get('runId')}"
              f" - {s.get('why')}" for s in result.skipped
              if "report only" in str(s.get("why")) or "must look" in str(s.get("why"))]
    lines += [f"error: {e}" for e in result.errors]
    return lines
