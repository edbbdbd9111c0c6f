"""The sweep registry: one declaration per sweep, read by the timers, the CLI, docs and infra.

Each sweep is a small `@register`ed class in its own module that declares its name, the
rights it needs, the app setting holding its timer schedule and that setting's default,
any other app settings it reads, and `run(ctx)`. Declaring a sweep also declares its
permissions (shared.permissions), as a step does. `functions/sweeps.py` takes each timer's
`%SETTING%` from here; a contract test holds the schedule settings, shared/settings.py and
infra/ to the same names and defaults. The shipped sweeps are registered by importing
`shared.sweeps.catalogue`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from shared.permissions import declare
from shared.sweeps.base import SweepContext, SweepResult, notice_lines

if TYPE_CHECKING:
    from shared.services import Services

COMMON_SETTINGS: tuple[str, ...] = ("RESPONDER_DRY_RUN", "RESPONDER_SWEEPS_DRY_RUN")
"""App settings every sweep run reads (through `run_sweep`): either one makes it a dry run."""


class Sweep:
    """Base of every sweep. Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    """One line for the CLI and docs: what it finds."""
    schedule_setting: ClassVar[str]
    """The app setting holding the timer's 6-field NCRONTAB schedule (a public name)."""
    default_schedule: ClassVar[str]
    """That setting's default, as shared/settings.py and infra/ set it."""
    settings: ClassVar[tuple[str, ...]] = ()
    """Other app settings this sweep reads (besides `COMMON_SETTINGS`)."""
    graph_permissions: ClassVar[tuple[str, ...]] = ()
    exchange_permissions: ClassVar[tuple[str, ...]] = ()
    directory_roles: ClassVar[tuple[str, ...]] = ()
    why: ClassVar[str] = ""
    """Why it needs its rights (README and infra/permissions.json); the docstring otherwise."""
    opt_in: ClassVar[bool] = False

    def enabled(self, services: Services) -> bool:
        return True

    def budget(self, services: Services) -> int:
        return int(services.policy.sweeps.max_items_per_run)

    async def run(self, ctx: SweepContext) -> None:
        raise NotImplementedError

    def notice_lines(self, result: SweepResult) -> list[str]:
        """Lines for the SOC notification (empty: nothing worth announcing)."""
        return notice_lines(result)


REGISTRY: dict[str, type[Sweep]] = {}


def register(cls: type[Sweep]) -> type[Sweep]:
    """Class decorator: add a sweep to the registry and declare its rights."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"sweep {cls.name!r} registered twice")
    taken = {s.schedule_setting: n for n, s in REGISTRY.items() if n != cls.name}
    if cls.schedule_setting in taken:
        raise ValueError(f"sweep {cls.name!r}: schedule setting {cls.schedule_setting} is "
                         f"already sweep {taken[cls.schedule_setting]!r}'s")
    REGISTRY[cls.name] = cls
    doc = (cls.__doc__ or "").strip()
    declare(
        f"sweep:{cls.name}",
        graph=cls.graph_permissions,
        exchange=cls.exchange_permissions,
        roles=cls.directory_roles,
        why=cls.why or (doc.splitlines()[0] if doc else ""),
    )
    return cls


def get_sweep(name: str) -> Sweep:
    """A fresh instance of a registered sweep (sweeps keep their state in storage)."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown sweep {name!r}; known: {', '.join(sorted(REGISTRY))}") \
            from None


def all_sweeps() -> dict[str, type[Sweep]]:
    """Every registered sweep (`shared.sweeps.catalogue` registers the shipped ones)."""
    return dict(REGISTRY)
