"""The step registry: one declaration per step, read by the runner, the release, the docs
and infra.

Each step is a small class that declares its name, the rights it needs, whether it is
disruptive, and three methods: `plan` (reads the real current state and says what it would
change), `apply` (changes it) and `undo` (what a release does about those changes). Dry run
is the runner's choice: it calls `plan` only. A step whose change a release leaves in place
says why instead (`cannot_undo` or `kept`). Declaring a step also declares its permissions
(shared.permissions). The shipped steps are registered by importing
`shared.playbook.catalogue`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from shared.models import StepStatus
from shared.permissions import declare
from shared.playbook.undo import ReleaseContext, Undo, finished_changes

if TYPE_CHECKING:
    from shared.models import StepResult
    from shared.playbook.context import Plan, StepContext


@dataclass
class Verification:
    """What a step read back after acting: `verified` when the tenant now shows the change,
    otherwise the differences found (or why nothing could be read back)."""

    verified: bool
    differences: list[str] = field(default_factory=list)
    note: str = ""

    def as_data(self) -> dict[str, object]:
        return {"verified": self.verified, "differences": list(self.differences),
                **({"note": self.note} if self.note else {})}


class Step:
    """Base of every step. Subclasses set the class attributes and implement plan/apply,
    and either implement `undo` or declare why a release leaves their change alone."""

    name: ClassVar[str]
    graph_permissions: ClassVar[tuple[str, ...]] = ()
    exchange_permissions: ClassVar[tuple[str, ...]] = ()
    directory_roles: ClassVar[tuple[str, ...]] = ()
    optional_graph_permissions: ClassVar[tuple[str, ...]] = ()
    """Graph permissions requested only when the policy enables this step (a very
    privileged right most deployments never grant): infra grants them behind a parameter,
    preflight checks them only when a playbook names the step."""
    disruptive: ClassVar[bool] = False
    """Disruptive steps wait for approval on privileged users."""
    reversible: ClassVar[str] = ""
    """How a release undoes it, or why it cannot be undone (for people: docs, reports)."""
    cannot_undo: ClassVar[str] = ""
    """Why a release cannot give this step's change back; reported as `cannotUndo:<name>`.
    A text starting with "cannot" names a real loss (the released run's reason lists it)."""
    kept: ClassVar[str] = ""
    """Why a release deliberately leaves this step's change in place; reported as
    `kept:<name>`."""
    changes_nothing: ClassVar[bool] = False
    """The step only reads or reports: there is nothing in the tenant to undo."""
    undo_order: ClassVar[int] = 100
    """Where this step's items come in a release, lower first (ties: registration order);
    items that restore something always come before those that only report."""
    dry_run_description: ClassVar[str] = ""
    containment: ClassVar[bool] = False
    """A containment step (the attacker loses the account: password, sessions, sign-in).
    From the queue, a run's containment steps act first, and the rest of its playbook
    follows in the clean-up lane, so a storm contains everyone before cleaning up."""
    after: ClassVar[tuple[str, ...]] = ("collect_evidence",)
    """Steps that must finish first when they are in the same run (ordering only)."""
    requires_success: ClassVar[tuple[str, ...]] = ()
    """Steps that must have succeeded (when in the run) for this one to act."""

    async def plan(self, ctx: StepContext) -> Plan:
        raise NotImplementedError

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        raise NotImplementedError

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Read the state back after `apply` changed something, so the record says whether
        the tenant now shows the change. None: this step has nothing it can read back
        (it changes nothing, or the service offers no read of what it changed)."""
        return None

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """What a release does about this step, from the run's record of it.

        `result` is None when the step was not in the run. The default: nothing to undo,
        or, when the step changed something, the declared reason it stays (`cannot_undo`,
        `kept`) as a report-only item. Override it beside `apply` to restore the change.
        """
        changes = finished_changes(result)
        if not changes:
            return []
        if self.cannot_undo:
            return [Undo(f"cannotUndo:{self.name}", f"{self.name}: {self.cannot_undo}",
                         status=StepStatus.SKIPPED, changes=changes)]
        if self.kept:
            return [Undo(f"kept:{self.name}", f"{self.name}: {self.kept}",
                         status=StepStatus.SKIPPED)]
        return []


def undoes(cls: type[Step]) -> bool:
    """Whether the step implements its own undo (rather than the default)."""
    return cls.undo is not Step.undo


REGISTRY: dict[str, type[Step]] = {}


def _add(cls: type[Step]) -> None:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"step {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: add a step to the registry and declare its rights."""
    _add(cls)
    declare(
        f"step:{cls.name}",
        graph=cls.graph_permissions,
        exchange=cls.exchange_permissions,
        roles=cls.directory_roles,
        optional_graph=cls.optional_graph_permissions,
        why=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
    )
    return cls


@contextmanager
def registered(*classes: type[Step]) -> Iterator[None]:
    """Register steps for the duration of a block (tests), then restore the registry.

    The steps' rights are not declared: a step that exists only for a while is not part of
    the deployed identity (infra/permissions.json is generated from the shipped steps).
    """
    saved = dict(REGISTRY)
    try:
        for cls in classes:
            _add(cls)
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)


def get_step(name: str) -> Step:
    """A fresh instance of a registered step (steps hold no state between runs)."""
    try:
        return REGISTRY[name]()
    except KeyError as exc:
        raise KeyError(f"unknown step {name!r}") from exc


def all_steps() -> dict[str, type[Step]]:
    """Every registered step (`shared.playbook.catalogue` registers the shipped ones)."""
    return dict(REGISTRY)
