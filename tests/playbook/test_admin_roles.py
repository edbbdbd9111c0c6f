"""remove_admin_roles through the real path: for ANY user it waits for approval
(`approvalRequiredSteps`) while the rest of the run goes ahead; once approved, the active
role assignments are recorded and removed, eligible ones reported and left; the step reads
its work back; a release assigns the roles again. Its write permission is optional: without
it the step says which permission is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import runtime
from shared.models import RemediationRequest, StepStatus
from shared.playbook.context import StepContext
from shared.playbook.registry import REGISTRY, get_step
from shared.safety import approvals
from shared.tenant.graph.directory import resolve_user
from tests.playbook.conftest import build_services, run_via_queue, writes
from tests.safety.conftest import Receiver, notify_policy, safety_settings

STEP = "remove_admin_roles"
DIEGO = "diego@contoso.com"
DIEGO_ID = "a7c4f0d5-9e6b-4b1a-8d84-5c0f3e1b7a46"
HELPDESK = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
SECURITY_ADMIN = "194ae4cb-b126-40b2-bd5b-6091b380977d"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
DEMO = json.loads((Path(__file__).resolve().parents[2] / "devtools" / "tenants"
                   / "demo.json").read_text())
# Diego is not privileged by this policy (only Global Administrator counts), so only
# approvalRequiredSteps can hold his steps.
POLICY = {"privileged": {"roleTemplateIds": [GLOBAL_ADMIN]}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def admin_tenant(emulator):
    """Diego holds Helpdesk Administrator (active) and may activate Security Administrator."""
    seed = json.loads(json.dumps(DEMO))
    diego = next(u for u in seed["users"] if u["id"] == DIEGO_ID)
    diego["directoryRoles"] = [HELPDESK]
    seed["roleEligibilities"] = [{"principalId": DIEGO_ID,
                                  "roleDefinitionId": SECURITY_ADMIN}]
    emulator.load_tenant(seed)
    return emulator


def _roles(emulator) -> list[str]:
    return next(u for u in emulator.state()["users"] if u["id"] == DIEGO_ID)["directoryRoles"]


def _approve_token(receiver: Receiver) -> str:
    for body in receiver.json("/hook"):
        if body["event"] == "approval.needed":
            link = next(x for x in body["links"] if x["label"].startswith("Approve"))
            return str(link["url"].split("#token=", 1)[1])
    raise AssertionError(f"no approval.needed notification: {receiver.events()}")


async def _services(azurite, emulator, receiver, **policy):
    svc = build_services(safety_settings(azurite, emulator),
                         **{**POLICY, **notify_policy(receiver, mail=False), **policy})
    runtime.use_services(svc)
    return svc


async def test_roles_are_removed_only_after_approval_and_restored_on_release(
        azurite, admin_tenant, receiver):
    emulator = admin_tenant
    # the deployment enabled role removal (enableRoleRemoval): the optional permission
    emulator.grant_permissions(REGISTRY[STEP].optional_graph_permissions)
    svc = await _services(azurite, emulator, receiver)
    try:
        before = next(u for u in emulator.state()["users"] if u["id"] == DIEGO_ID)
        stats = await run_via_queue(svc, {"user": DIEGO, "requestId": "ar-1",
                                          "actions": ["revoke_sessions", STEP]})
        assert stats.failed == 0
        run = await svc.journal.get_run("ar-1")
        assert run.state == "waiting_approval", run.reason
        results = await svc.journal.step_results("ar-1")
        assert results["revoke_sessions"].status == StepStatus.DONE  # not held
        assert results[STEP].status == StepStatus.WAITING_APPROVAL
        assert "for every user" in results[STEP].summary
        assert _roles(emulator) == [HELPDESK]  # nothing removed yet
        approval = await approvals.get_approval(svc, "ar-1")
        assert approval.state == "pending" and approval.steps == [STEP]
        assert approval.roles == []  # not a privileged user: held by the policy list
        after = next(u for u in emulator.state()["users"] if u["id"] == DIEGO_ID)
        assert after["sessionsRevokedCount"] == before["sessionsRevokedCount"] + 1

        await approvals.decide(svc, _approve_token(receiver), by="soc.lead@contoso.com",
                               by_trust=approvals.SELF_ASSERTED)
        emulator.clear_log()
        await run_via_queue(svc)  # the resume the decision queued
        run = await svc.journal.get_run("ar-1")
        assert run.state == "finished", run.reason
        result = (await svc.journal.step_results("ar-1"))[STEP]
        assert result.status == StepStatus.DONE, result.summary
        assert _roles(emulator) == []
        deleted = [e["path"] for e in writes(emulator) if e["method"] == "DELETE"]
        assert deleted == [f"/v1.0/roleManagement/directory/roleAssignments/"
                           f"{HELPDESK}-{DIEGO_ID}"]
        # the record: the active assignment (role, scope), the eligible one reported
        assert [(a["role"], a["directoryScopeId"]) for a in result.data["active"]] == \
            [("Helpdesk Administrator", "/")]
        assert [e["role"] for e in result.data["eligible"]] == ["Security Administrator"]
        assert emulator.state()["roleEligibilities"][0]["principalId"] == DIEGO_ID
        assert result.changes[0]["roleDefinitionId"] == HELPDESK

        ctx = StepContext(services=svc, run=run,
                          request=RemediationRequest.model_validate({"user": DIEGO}),
                          user=await _user(svc), dry_run=False, detected_at=run.created_at)
        check = await get_step(STEP).verify(ctx, result)
        assert check is not None and check.verified, check

        await run_via_queue(svc, {"user": DIEGO, "action": "release", "runId": "ar-1",
                                  "requestId": "release-ar-1"})
        assert (await svc.journal.get_run("ar-1")).state == "released"
        assert _roles(emulator) == [HELPDESK]
        check = await get_step(STEP).verify(ctx, result)
        assert check is not None and not check.verified  # assigned again
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_with_the_knob_off_a_normal_users_roles_go_at_once(azurite, admin_tenant,
                                                                 receiver):
    emulator = admin_tenant
    emulator.grant_permissions(REGISTRY[STEP].optional_graph_permissions)
    svc = await _services(azurite, emulator, receiver, approvalRequiredSteps=[])
    try:
        await run_via_queue(svc, {"user": DIEGO, "requestId": "ar-off", "actions": [STEP]})
        run = await svc.journal.get_run("ar-off")
        assert run.state == "finished", run.reason
        assert _roles(emulator) == []
        assert await approvals.get_approval(svc, "ar-off") is None
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_dry_run_changes_nothing(azurite, admin_tenant, receiver):
    emulator = admin_tenant
    svc = await _services(azurite, emulator, receiver)
    try:
        await run_via_queue(svc, {"user": DIEGO, "requestId": "ar-dry", "actions": [STEP],
                                  "dryRun": True})
        result = (await svc.journal.step_results("dry-ar-dry"))[STEP]
        assert result.status == StepStatus.PLANNED
        assert result.data["wouldDo"][0] == "remove Helpdesk Administrator (scope /)"
        assert "report eligible Security Administrator" in result.data["wouldDo"][1]
        assert writes(emulator) == [] and _roles(emulator) == [HELPDESK]
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_without_the_optional_permission_the_refusal_names_it(azurite, admin_tenant,
                                                                    receiver):
    emulator = admin_tenant  # role removal not enabled: no RoleManagement.ReadWrite.Directory
    svc = await _services(azurite, emulator, receiver, approvalRequiredSteps=[])
    try:
        await run_via_queue(svc, {"user": DIEGO, "requestId": "ar-403", "actions": [STEP]})
        result = (await svc.journal.step_results("ar-403"))[STEP]
        assert result.status == StepStatus.PARTIAL
        assert _roles(emulator) == [HELPDESK]
        [refused] = result.data["notRemoved"]
        assert "RoleManagement.ReadWrite.Directory" in refused["reason"]
    finally:
        runtime.use_services(None)
        await svc.close()


async def _user(svc):
    return await resolve_user(svc.graph, DIEGO)
