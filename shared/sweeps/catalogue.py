"""The catalogue: every shipped sweep, registered by importing its module here.

A new sweep is one file in `shared/sweeps/` (a `@register`ed class), its name here, one
timer function in `functions/sweeps.py` and its schedule setting in shared/settings.py and
infra/ (a contract test checks that they agree). Sweep names are public: the CLI and the
timer function names (`sweep_<name>`) use them.
"""

from __future__ import annotations

from shared.sweeps import (
    audit,
    forwarding_rules,
    reinfection,
    restricted_senders,
    risky_users,
    secure_score,
    stalled_runs,
)
from shared.sweeps.registry import REGISTRY, Sweep

MODULES = (audit, risky_users, restricted_senders, stalled_runs, forwarding_rules, secure_score,
           reinfection)
"""The sweep modules, in the order the CLI and docs list them."""

SWEEPS: dict[str, type[Sweep]] = {
    cls.name: cls for module in MODULES for cls in REGISTRY.values()
    if cls.__module__ == module.__name__
}
"""Every shipped sweep by name, in `MODULES` order."""

SWEEP_NAMES: tuple[str, ...] = tuple(SWEEPS)
