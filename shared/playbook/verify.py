"""Verify after acting: once a step has changed the tenant, read the state back and record
whether the tenant now shows the change.

A write that Graph or Exchange accepted is not always a write that took (a lost write, an
on-premises sync that puts the old value back, a service that applies it later). Each step's
`verify` reads what it changed; this module calls it and keeps the outcome in the step's
result (`data["verification"]`), which the run report shows as "verified" or as the
differences found.

Verifying never changes a step's outcome: a read-back that fails (forbidden, not found,
a transient error) is recorded as "could not verify: <reason>" and is not retried, so a
redelivery never repeats a finished step for the sake of its check. Policy `verify: false`
turns it off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.errors import ResponderError, ServiceError
from shared.models import StepResult, StepStatus

if TYPE_CHECKING:
    from shared.playbook.context import StepContext
    from shared.playbook.registry import Step

log = logging.getLogger("responder.verify")

KEY = "verification"
"""Where a step result keeps its verification (`StepResult.data[KEY]`)."""
VERIFIED_STATES = frozenset({StepStatus.DONE, StepStatus.PARTIAL})


def wanted(ctx: StepContext, result: StepResult) -> bool:
    """A step's change is read back when it changed something for real: done or partial,
    with changes, outside a dry run, and the policy's `verify` is on."""
    return (bool(ctx.policy.verify) and not ctx.dry_run and result.status in VERIFIED_STATES
            and bool(result.changes))


def could_not(reason: str) -> dict[str, Any]:
    """The record of a read-back that did not happen (verified unknown)."""
    return {"verified": None, "differences": [], "note": f"could not verify: {reason}"}


async def verified(ctx: StepContext, step: Step, result: StepResult) -> StepResult:
    """Read back what `step` changed and record it in `result`; returns the same result.

    Called right after `step.apply` (the runner's `_plan_and_apply`). A step whose `verify`
    returns None has nothing it can read back and gets no record."""
    if not wanted(ctx, result):
        return result
    try:
        outcome = await step.verify(ctx, result)
    except ServiceError as exc:
        why = f"{type(exc).__name__}: {exc}"
        if exc.retryable:
            why += " (transient; not retried: the step itself is finished)"
        result.data[KEY] = could_not(why)
        return result
    except ResponderError as exc:
        result.data[KEY] = could_not(f"{type(exc).__name__}: {exc}")
        return result
    except Exception as exc:  # a bug in a read-back must never fail a step that acted
        log.warning("verify of %s crashed", step.name, exc_info=True,
                    extra={"run_id": ctx.run.run_id, "step": step.name})
        result.data[KEY] = could_not(f"internal error: {type(exc).__name__}")
        return result
    if outcome is not None:
        result.data[KEY] = outcome.as_data()
    return result


def describe(result: StepResult | None) -> str:
    """How a step's verification reads in a report: "verified", the differences, "could
    not verify: ...", or "" when it was not read back."""
    record = (result.data.get(KEY) if result is not None else None) or {}
    if not isinstance(record, dict) or "verified" not in record:
        return ""
    note = str(record.get("note") or "")
    if record["verified"] is True:
        return "verified" + (f" ({note})" if note else "")
    if record["verified"] is None:
        return note or "could not verify"
    differences = "; ".join(str(d) for d in record.get("differences") or [])
    text = f"differences: {differences or 'not as expected'}"
    return text + (f" ({note})" if note else "")
