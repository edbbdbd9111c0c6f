"""The step registry: one declaration per step, read by the runner, the docs and infra.

Each step is a small class that declares its name, the rights it needs, whether it is
disruptive, how it is undone, and two methods: `plan` (reads the real current state and
says what it would change) and `apply` (changes it). Dry run is the runner's choice: it
calls `plan` only. Declaring a step also declares its permissions (shared.permissions).
The shipped steps are registered by importing `shared.playbook.catalogue`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from shared.permissions import declare

if TYPE_CHECKING:
    from shared.models import StepResult
    from shared.playbook.context import Plan, StepContext



class Step:
    """Base of every step. Subclasses set the class attributes and implement plan/apply."""

    name: ClassVar[str]
    graph_permissions: ClassVar[tuple[str, ...]] = ()
    exchange_permissions: ClassVar[tuple[str, ...]] = ()
    directory_roles: ClassVar[tuple[str, ...]] = ()
    disruptive: ClassVar[bool] = False
    """Disruptive steps wait for approval on privileged users."""
    reversible: ClassVar[str] = ""
    """How a release undoes it, or why it cannot be undone."""
    dry_run_description: ClassVar[str] = ""
    after: ClassVar[tuple[str, ...]] = ("collect_evidence",)
    """Steps that must finish first when they are in the same run (ordering only)."""
    requires_success: ClassVar[tuple[str, ...]] = ()
    """Steps that must have succeeded (when in the run) for this one to act."""

    async def plan(self, ctx: StepContext) -> Plan:
        raise NotImplementedError

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        raise NotImplementedError


REGISTRY: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: add a step to the registry and declare its rights."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"step {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    declare(
        f"step:{cls.name}",
        graph=cls.graph_permissions,
        exchange=cls.exchange_permissions,
        roles=cls.directory_roles,
        why=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
    )
    return cls


def get_step(name: str) -> Step:
    """A fresh instance of a registered step (steps hold no state between runs)."""
    try:
        return REGISTRY[name]()
    except KeyError as exc:
        raise KeyError(f"unknown step {name!r}") from exc


def all_steps() -> dict[str, type[Step]]:
    """Every registered step (`shared.playbook.catalogue` registers the shipped ones)."""
    return dict(REGISTRY)
