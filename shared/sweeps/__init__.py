"""Timer sweeps that keep the tenant safe (docs/sweeps.md).

Importing this package registers every sweep (`catalogue`) and declares the rights each
needs (`shared.permissions.COMPONENT_MODULES` lists it)."""

from shared.sweeps import (
    audit,
    forwarding_rules,
    reinfection,
    restricted_senders,
    risky_users,
    secure_score,
    stalled_runs,
)
from shared.sweeps.base import SweepResult
from shared.sweeps.catalogue import SWEEP_NAMES, SWEEPS
from shared.sweeps.registry import Sweep, all_sweeps, get_sweep
from shared.sweeps.runner import run_sweep

__all__ = ["SWEEPS", "SWEEP_NAMES", "Sweep", "SweepResult", "all_sweeps", "audit",
           "forwarding_rules", "get_sweep", "reinfection", "restricted_senders", "risky_users",
           "run_sweep", "secure_score", "stalled_runs"]
