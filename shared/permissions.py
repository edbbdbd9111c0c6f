"""Least privilege, declared beside the code that needs it.

Every component that calls Graph or Exchange (a playbook step, a sweep, a poller) declares
its rights with `declare(...)` at import time, in its own module. `infra/permissions.json`
is generated from `collect()` (`python -m devtools.permissions`) and a test fails when the
file and the code disagree, so the deployed identity gets exactly what the code uses.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Unpack

from shared.errors import Forbidden, ServiceDetails, ServiceError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"


@dataclass(frozen=True)
class Requirement:
    """The rights one component needs.

    `graph` and `exchange` are application permissions (app roles) on those resource apps;
    `roles` are Entra directory roles an administrator must assign to the identity;
    `why` is shown in README and in the generated file. `optional_graph` are Graph
    application permissions requested only when the policy enables the component (a
    very privileged right that most deployments never grant): they are not in the union
    of `summary()`, infra grants them behind a parameter, and preflight checks them only
    when the loaded policy uses the component.
    """

    component: str
    graph: tuple[str, ...] = ()
    exchange: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    why: str = ""
    optional_graph: tuple[str, ...] = ()


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
    "shared.preflight",
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
    optional_graph: tuple[str, ...] | list[str] = (),
) -> Requirement:
    """Register what `component` needs. Re-declaring the same component must agree.

    `optional_graph`: Graph permissions requested only when the policy enables the
    component (see `Requirement`)."""
    req = Requirement(component, tuple(graph), tuple(exchange), tuple(roles), why,
                      tuple(optional_graph))
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


def optional_summary() -> dict[str, list[str]]:
    """Component -> the Graph permissions it requests only when the policy enables it
    (components without any are left out), sorted."""
    return {name: sorted(set(req.optional_graph)) for name, req in collect().items()
            if req.optional_graph}


_PERMISSION_NAME = re.compile(r"\b[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+\b")


def names_in(hint: str | None) -> tuple[str, ...]:
    """The permission names in a call site's hint ("AuditLog.Read.All and Directory.Read.All")."""
    return tuple(dict.fromkeys(_PERMISSION_NAME.findall(hint or "")))


class PermissionForbidden(Forbidden):
    """A 401/403 from Graph or Exchange, carrying what the call site says the call needs, so
    whoever records the failure can name the missing permission (`explain_forbidden`)."""

    def __init__(self, message: str, *, needs: tuple[str, ...] = (),
                 roles: tuple[str, ...] = (), **kw: Unpack[ServiceDetails]) -> None:
        super().__init__(message, **kw)
        self.needs = needs
        self.roles = roles


def declared(component: str) -> Requirement | None:
    """What `component` ("step:reset_password", "sweep:audit", "release", ...) declares."""
    return collect().get(component)


def explain_forbidden(component: str, exc: ServiceError) -> str:
    """A sentence naming what the identity lacks for the call that `exc` refused.

    The call's own permissions (from the call site) that the component declares come first;
    without them, what the component declares for that service. Graph and Exchange never say
    which permission was missing, so the declaration is the best witness there is.
    """
    req = declared(component)
    needs = getattr(exc, "needs", ()) if isinstance(exc, PermissionForbidden) else ()
    hinted_roles = getattr(exc, "roles", ()) if isinstance(exc, PermissionForbidden) else ()
    if req is None:
        perms, roles = list(needs), list(hinted_roles)
    else:
        own = req.exchange if exc.service == "exchange" else (*req.graph, *req.optional_graph)
        perms = [p for p in needs if p in own] or list(needs) or list(own)
        if exc.service == "exchange":
            roles = [r for r in req.roles if "Exchange" in r]
        else:
            roles = [r for r in req.roles if any(r in h for h in hinted_roles)]
        roles = roles or list(hinted_roles)
    if not perms and not roles:
        return f"{component} declares no permission for this call"
    what = []
    if perms:
        what.append("application permission " + " and ".join(perms))
    if roles:
        what.append("directory role " + " or ".join(roles))
    text = f"missing {' or '.join(what)} (declared by {component} for this call)"
    # A call can need a pair (accountEnabled: User.EnableDisableAccount.All with
    # User.Read.All) while its call site names one: say what else the component declares.
    others = [] if req is None else [p for p in (*req.graph, *req.exchange) if p not in perms]
    if others:
        text += f"; {component} also declares {', '.join(others)}"
    return text
