"""Meta tests over the step registry: every step is fully declared, and tested."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.permissions import collect
from shared.playbook.catalogue import STEP_NAMES
from shared.playbook.registry import all_steps, undoes
from shared.playbook.worker import MAX_DEQUEUE_COUNT

ROOT = Path(__file__).resolve().parents[2]
DESIGN_CATALOGUE = (
    "collect_evidence", "revoke_sessions", "reset_password", "disable_account",
    "confirm_compromised", "require_mfa", "remove_suspicious_auth_methods",
    "disable_malicious_inbox_rules", "clear_mailbox_forwarding", "enable_mailbox_audit",
    "request_unblock", "notify",
)


def test_catalogue_is_the_public_contract():
    assert set(DESIGN_CATALOGUE) <= set(STEP_NAMES)
    assert set(all_steps()) == set(STEP_NAMES)


@pytest.mark.parametrize("name", STEP_NAMES)
def test_every_step_is_fully_declared(name):
    cls = all_steps()[name]
    assert cls.__doc__ and cls.__doc__.strip(), "a docstring that says why"
    assert cls.graph_permissions or cls.exchange_permissions, "the rights it needs"
    assert cls.dry_run_description, "what a dry run reports"
    assert cls.reversible, "how it is undone, or why it cannot be"
    req = collect()[f"step:{name}"]
    assert set(req.graph) == set(cls.graph_permissions)
    assert set(req.exchange) == set(cls.exchange_permissions)
    for perm in cls.graph_permissions:
        assert re.fullmatch(r"[A-Za-z]+(-[A-Za-z]+)?(\.[A-Za-z]+)+", perm), perm


@pytest.mark.parametrize("name", STEP_NAMES)
def test_every_step_is_exercised_by_a_test(name):
    texts = [p.read_text() for p in (ROOT / "tests").rglob("test_*.py")
             if "contract" not in p.parts]
    assert any(name in t for t in texts), f"no test mentions {name}"


@pytest.mark.parametrize("name", STEP_NAMES)
def test_every_step_declares_its_undo(name):
    """Beside `apply`: an `undo` of its own, or exactly one declared reason a release leaves
    the step alone (it cannot be undone, its change is kept, or it changes nothing)."""
    cls = all_steps()[name]
    reasons = [bool(cls.cannot_undo), bool(cls.kept), cls.changes_nothing]
    assert sum(reasons) <= 1, "one reason a release leaves it alone, not several"
    assert undoes(cls) or any(reasons), "an undo, or why a release does not undo it"
    if cls.changes_nothing:
        assert not undoes(cls), "a step that changes nothing has nothing to undo"
    for text, prefix in ((cls.cannot_undo, ("cannot be undone: ", "nothing to undo: ")),
                         (cls.kept, ("kept: ",))):
        assert not text or text.startswith(prefix), text
    assert isinstance(cls.undo_order, int)


def test_steps_that_undo_override_the_default():
    reversible = {n for n, c in all_steps().items() if undoes(c)}
    assert {"disable_account", "disable_malicious_inbox_rules", "clear_mailbox_forwarding",
            "require_mfa", "confirm_compromised", "request_unblock"} <= reversible


def test_disruptive_steps_are_the_ones_that_lock_people_out():
    disruptive = {n for n, c in all_steps().items() if c.disruptive}
    assert {"reset_password", "disable_account", "remove_suspicious_auth_methods"} <= disruptive
    assert "revoke_sessions" not in disruptive


def test_host_json_matches_the_worker_and_the_contract():
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_generated_permissions_cover_every_step():
    data = json.loads((ROOT / "infra" / "permissions.json").read_text())
    for cls in all_steps().values():
        assert set(cls.graph_permissions) <= set(data["graphApplicationPermissions"])
        assert set(cls.exchange_permissions) <= set(data["exchangeApplicationPermissions"])
