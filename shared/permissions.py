"""Least privilege, declared beside the code that needs it.

Every component that calls Graph or Exchange (a playbook step, a sweep, a poller) declares
its rights with `declare(...)` at import time, in its own module. `infra/permissions.json`
is generated from `collect()` (`python -m devtools.permissions`) and a test fails when the
file and the code disagree, so the deployed identity gets exactly what the code uses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"


@dataclass(frozen=True)
class Requirement:
    """The rights one component needs.

    `graph` and `exchange` are application permissions (app roles) on those resource apps;
    `roles` are Entra directory roles an administrator must assign to the identity;
    `why` is shown in README and in the generated file.
    """

    component: str
    graph: tuple[str, ...] = ()
    exchange: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    why: str = ""


@dataclass
class _Catalogue:
    entries: dict[str, Requirement] = field(default_factory=dict)


_CATALOGUE = _Catalogue()

COMPONENT_MODULES: tuple[str, ...] = (
    "shared.playbook.steps",
    "shared.intake.poller",
    "shared.sweeps",
    "shared.safety.notify",
    "shared.safety.approvals",
    "shared.playbook.release",
    "shared.safety.exclusions",
)
"""Modules that declare requirements; importing them fills the catalogue.

A module listed here that does not exist yet is skipped (features land issue by issue)."""


def declare(
    component: str,
    *,
    graph: tuple[str, ...] | list[str] = (),
    exchange: tuple[str, ...] | list[str] = (),
    roles: tuple[str, ...] | list[str] = (),
    why: str = "",
) -> Requirement:
    """Register what `component` needs. Re-declaring the same component must agree."""
    req = Requirement(component, tuple(graph), tuple(exchange), tuple(roles), why)
    existing = _CATALOGUE.entries.get(component)
    if existing is not None and existing != req:
        raise ValueError(f"conflicting permission declarations for {component!r}")
    _CATALOGUE.entries[component] = req
    return req


def collect() -> dict[str, Requirement]:
    """Import every declaring module and return the catalogue, by component name."""
    for name in COMPONENT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
    return dict(sorted(_CATALOGUE.entries.items()))


def summary() -> dict[str, list[str]]:
    """The union of rights: what the deployed identity must hold, sorted and deduplicated."""
    reqs = collect().values()
    return {
        "graphApplicationPermissions": sorted({p for r in reqs for p in r.graph}),
        "exchangeApplicationPermissions": sorted({p for r in reqs for p in r.exchange}),
        "directoryRoles": sorted({p for r in reqs for p in r.roles}),
    }
