"""Least privilege, proven against an emulator that authorises like Entra.

The token holds exactly what the code declares (`infra/permissions.json`, generated from the
declarations) and the declared directory roles. Through the real path (queue -> worker ->
Azurite -> emulator; sweeps through run_sweep; intake's reads through the risk_poller timer;
a release through the queue):

1. with the full list nothing is refused anywhere;
2. each declared permission is needed: it is one of the permission sets of a route the code
   calls (a permission no call needs fails);
3. with one permission (or directory role) removed, calls are refused only in phases whose
   components declare it, a step that is refused is one that declares it, and the step's
   recorded result names it.

One emulator and one Azurite serve every run; each run gets a fresh token from
`issue_token`, fresh storage names and a reloaded tenant seed. A phase whose calls (under the
full list) never involve the removed permission cannot change (the emulator decides by the
table alone), so it is not re-run for that permission.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devtools.emulator import EmulatorServer
from functions import runtime
from shared import permissions
from shared.models import StepStatus
from shared.playbook.registry import REGISTRY
from shared.policy import parse_policy
from shared.services import Services
from shared.sweeps.registry import REGISTRY as SWEEPS
from shared.sweeps.runner import run_sweep
from shared.tenant.credentials import StaticTokenCredential
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "devtools" / "tenants" / "demo.json").read_text())
POLICY = json.loads((ROOT / "devtools" / "demo-policy.json").read_text())
GRANT = json.loads((ROOT / "infra" / "permissions.json").read_text())
MEGAN = "megan@contoso.com"
MEGAN_ID = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"
CLIENT_STATE = "graph-client-state-for-least-privilege"
DENIAL_TEXT = ("Insufficient privileges", "Access is denied", "is not allowed to call")
EVERY_STEP = sorted(REGISTRY)

RUNNER = {"exclusions", "approvals", "notify"}
PHASES: dict[str, set[str]] = {
    "playbook": RUNNER | {f"step:{s}" for s in EVERY_STEP},
    **{f"sweep:{s}": {f"sweep:{s}", "exclusions", "notify"} for s in sorted(SWEEPS)},
    "intake": {"alerts.poller", "alerts.user-risk-check", "exclusions"},
    "release": {"release", "exclusions", "notify"},
}
"""Each phase and the components that act in it (their declarations are what it may use)."""
NOT_PHASED = {"preflight"}
"""Components not run here: preflight only reads what it checks (tests/ for it elsewhere)."""


@dataclass
class PhaseRun:
    log: list[dict[str, Any]]
    steps: dict[str, Any] = field(default_factory=dict)
    run_reason: str = ""

    def denied(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e.get("authz") and not e["authz"]["allowed"]]

    def refused(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["status"] in (401, 403)]


def declares(component: str, name: str) -> bool:
    req = permissions.declared(component)
    return req is not None and name in (*req.graph, *req.exchange, *req.roles)


def mentions(entry: dict[str, Any], name: str) -> bool:
    """Does this call's authorization involve the permission or role `name`?"""
    authz = entry.get("authz") or {}
    groups = [*(authz.get("needs") or []), *(authz.get("limited") or [])]
    return any(name in option for group in groups for option in group) \
        or name in (authz.get("roles") or [])


class Harness:
    """One emulator, one Azurite; runs a phase with a given token."""

    def __init__(self, emulator: EmulatorServer, azurite: Any):
        self.emulator = emulator
        self.azurite = azurite
        self.opened: list[Services] = []

    def services(self, token: str, storage: dict[str, str] | None = None) -> Services:
        env = {"RESPONDER_STATIC_TOKEN": token,
               "RESPONDER_GRAPH_CLIENT_STATE": CLIENT_STATE,
               "RESPONDER_SWEEP_FORWARDING_ENABLED": "true",
               **(storage or {})}
        settings = make_settings(self.azurite, self.emulator, **env)
        # Every step acts at once: approvalRequiredSteps would hold some for a person.
        svc = Services.create(settings, credential=StaticTokenCredential(token),
                              policy=parse_policy({**POLICY, "approvalRequiredSteps": []}),
                              confirm_window=0.05)
        # The emulator does not throttle Identity Protection here: no 1 s spacing needed.
        svc.confirm.gate.min_interval = svc.confirm.gate.interval = 0.0
        self.opened.append(svc)
        return svc

    async def close(self) -> None:
        for svc in self.opened:
            await svc.close()
        self.opened.clear()

    async def phase(self, name: str, token: str, full_token: str) -> PhaseRun:
        """Reload the seed, run one phase with `token`, return its slice of the log."""
        self.emulator.load_tenant(SEED)
        svc = self.services(token)
        runtime.use_services(svc)
        try:
            if name in ("release", "sweep:reinfection"):
                # the run to release (or to watch for re-infection) is made with the full
                # grant, in the same journal
                full = self.services(full_token, storage={
                    "REMEDIATION_QUEUE": svc.settings.remediation_queue,
                    "RESPONDER_JOURNAL_TABLE": svc.settings.journal_table,
                    "RESPONDER_EVIDENCE_CONTAINER": svc.settings.evidence_container})
                runtime.use_services(full)
                await _queue(full, {"user": MEGAN, "actions": EVERY_STEP, "requestId": "lp-rel"})
                runtime.use_services(svc)
            start = len(self.emulator.requests())
            result = PhaseRun([])
            if name == "playbook":
                rid = f"lp-{uuid.uuid4().hex[:8]}"
                await _queue(svc, {"user": MEGAN, "actions": EVERY_STEP, "requestId": rid})
                result.steps = await svc.journal.step_results(rid)
                run = await svc.journal.get_run(rid)
                result.run_reason = run.reason if run else ""
            elif name.startswith("sweep:"):
                await run_sweep(svc, name.split(":", 1)[1], trigger="timer")
            elif name == "intake":
                await _notify_and_poll(MEGAN_ID)
            elif name == "release":
                await _queue(svc, {"user": MEGAN, "action": "release", "runId": "lp-rel"})
            result.log = self.emulator.requests()[start:]
            return result
        finally:
            runtime.use_services(None)


async def _queue(svc: Services, body: dict[str, Any]) -> None:
    import function_app
    from devtools.localhost import LocalHost

    await svc.storage.enqueue(svc.settings.remediation_queue, json.dumps(body))
    host = LocalHost(function_app.app, svc.storage,
                     {"REMEDIATION_QUEUE": svc.settings.remediation_queue},
                     visibility_timeout=0.2)
    await host.run_until_idle(60.0, idle_seconds=0.15)


def _function(name: str) -> Callable[..., Awaitable[Any]]:
    import function_app
    from devtools.localhost import app_functions

    for fn in app_functions(function_app.app):
        if fn.get_function_name() == name:
            return fn.get_user_function()  # type: ignore[no-any-return]
    raise KeyError(name)


async def _notify_and_poll(user_id: str) -> None:
    """A Graph change notification for the user, then the risk_poller timer: the poller's
    riskDetections read and the user-risk check's riskyUsers read."""
    note = {"value": [{
        "subscriptionId": "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
        "subscriptionExpirationDateTime": "2026-11-27T03:12:44.1234567+00:00",
        "clientState": CLIENT_STATE, "changeType": "updated", "resource": f"Users/{user_id}",
        "tenantId": SEED["tenantId"],
        "resourceData": {"@odata.type": "#Microsoft.Graph.User",
                         "@odata.id": f"Users/{user_id}", "id": user_id}}]}
    req = func.HttpRequest("POST", "https://responder.example/api/alerts",
                           body=json.dumps(note).encode(),
                           headers={"Content-Type": "application/json"})
    await _function("risk_alert_http")(req)
    await _function("risk_poller")(TimerRequest(past_due=False))


@pytest.fixture
async def harness(azurite: Any) -> AsyncIterator[Harness]:
    with EmulatorServer(SEED, seed=1) as emulator:
        h = Harness(emulator, azurite)
        try:
            yield h
        finally:
            await h.close()


def _declared_everything() -> tuple[list[str], list[str]]:
    """The full grant: the playbook phase runs every step, so the permissions requested only
    when the policy enables a step (optionalGraphApplicationPermissions) are granted too."""
    optional = sorted({p for perms in GRANT["optionalGraphApplicationPermissions"].values()
                       for p in perms} - set(GRANT["graphApplicationPermissions"]))
    perms = [*GRANT["graphApplicationPermissions"], *optional,
             *GRANT["exchangeApplicationPermissions"]]
    return perms, list(GRANT["directoryRoles"])


def test_the_generated_list_is_what_the_code_declares() -> None:
    summary = permissions.summary()
    for key in ("graphApplicationPermissions", "exchangeApplicationPermissions",
                "directoryRoles"):
        assert summary[key] == GRANT[key], (
            f"{key}: the code and infra/permissions.json disagree; run "
            "`python -m devtools.permissions`")
    assert permissions.optional_summary() == GRANT["optionalGraphApplicationPermissions"]
    phased = set().union(*PHASES.values()) | NOT_PHASED
    assert set(permissions.collect()) <= phased, "a component acts in no phase of this test"


async def test_least_privilege_is_exactly_what_the_code_declares(harness: Harness) -> None:
    perms, roles = _declared_everything()
    em = harness.emulator
    full = em.issue_token(perms, directory_roles=roles)

    # 1. the full list: nothing refused anywhere
    baseline = {name: await harness.phase(name, full, full) for name in PHASES}
    for name, run in baseline.items():
        own = permissions.declared(name)
        assert run.log or (own is not None and not own.graph and not own.exchange), \
            f"{name} made no call"
        assert not run.refused(), (name, [(e["method"], e["path"], e["status"])
                                          for e in run.refused()])
    for step, result in baseline["playbook"].steps.items():
        assert result.status != StepStatus.FAILED, (step, result.summary)

    # 2. every declared permission is one a called route accepts
    called = [e for run in baseline.values() for e in run.log]
    unneeded = [p for p in perms if not any(mentions(e, p) for e in called)]
    assert not unneeded, f"declared, but no call the code makes needs them: {unneeded}"

    # 3. one removed at a time: refused only where declared, and named
    problems: list[str] = []
    redundant: list[str] = []
    for name in [*perms, *roles]:
        is_role = name in roles
        token = em.issue_token(perms if is_role else [p for p in perms if p != name],
                               directory_roles=[r for r in roles if r != name] if is_role
                               else roles)
        refused_anywhere = False
        for phase, base in baseline.items():
            if not any(mentions(e, name) for e in base.log):
                continue
            run = await harness.phase(phase, token, full)
            if not run.refused():
                continue
            refused_anywhere = True
            owners = [c for c in PHASES[phase] if declares(c, name)]
            if not owners:
                problems.append(f"without {name}: {phase} was refused, but none of "
                                f"{sorted(PHASES[phase])} declares it")
            problems.extend(_check_steps(name, run))
        if not is_role and refused_anywhere != _any_call_needs_only(name, perms, called):
            problems.append(f"without {name}: refused={refused_anywhere}, but the table says "
                            f"{not refused_anywhere}")
        if not refused_anywhere and not is_role:
            redundant.append(name)
    assert not problems, "\n".join(problems)
    # `redundant`: every call that declares one of these is also satisfied by a higher
    # permission another component needs; each is still the least privileged for its calls.
    print("covered by a higher declared permission:", redundant)


def _any_call_needs_only(name: str, perms: list[str], calls: list[dict[str, Any]]) -> bool:
    """Would some call be refused without `name` (by the emulator's table)?"""
    rest = set(perms) - {name}
    for entry in calls:
        for group in (entry.get("authz") or {}).get("needs") or []:
            if not any(set(option) <= rest for option in group):
                return True
    return False


def _check_steps(name: str, run: PhaseRun) -> list[str]:
    """A step refused for lack of `name` declares it, and its result names it."""
    problems = []
    for step, result in run.steps.items():
        text = result.summary or ""
        refused = any(t in text for t in DENIAL_TEXT)
        if not refused:
            continue
        if not declares(f"step:{step}", name):
            problems.append(f"without {name}: step {step} was refused but does not declare it:"
                            f" {text[:200]}")
        elif result.status == StepStatus.FAILED and name not in text:
            problems.append(f"without {name}: step {step}'s result does not name it: "
                            f"{text[:300]}")
    return problems
