"""Timer sweeps that keep the tenant safe (docs/sweeps.md).

Importing this package registers every sweep and declares the rights each needs
(`shared.permissions.COMPONENT_MODULES` lists it)."""

from shared.sweeps import (
    audit,
    forwarding_rules,
    restricted_senders,
    risky_users,
    secure_score,
    stalled_runs,
)
from shared.sweeps.base import SWEEPS, SweepResult, get_sweep, run_sweep

__all__ = ["SWEEPS", "SweepResult", "audit", "forwarding_rules", "get_sweep",
           "restricted_senders", "risky_users", "run_sweep", "secure_score", "stalled_runs"]
