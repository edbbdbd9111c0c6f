"""The catalogue: every shipped step, registered by importing its module here.

A new step is one file in `steps/` (a `@register`ed class) and, for a new module, one name
in the import below. Everything else (the runner, release, approvals, the permission list,
the contract tests) reads the registry. The step names are public (design.md): users'
policies and tooling name them.
"""

from __future__ import annotations

from shared.errors import PolicyError
from shared.playbook.registry import REGISTRY
from shared.playbook.steps import (
    account,
    client_access,
    consents,
    delegation,
    evidence,
    followup,
    mailbox,
    mfa,
    roles,
)
from shared.policy import Policy

MODULES = (evidence, account, mfa, mailbox, followup, consents, roles, delegation,
           client_access)
STEP_NAMES: tuple[str, ...] = tuple(REGISTRY)
"""Every registered step, in registration order."""


def check_policy(policy: Policy) -> Policy:
    """Refuse a policy whose playbooks name steps that do not exist (at start, by name)."""
    for name, steps in policy.playbooks.items():
        unknown = [s for s in steps if s not in REGISTRY]
        if unknown:
            raise PolicyError(f"playbook {name!r} names unknown steps {unknown}; known: "
                              f"{sorted(REGISTRY)}")
    return policy
