"""Extending the playbook: a new reversible step is one class, and a release undoes it.

The step below exists only in this test. It declares its `apply` and its `undo` side by
side, is registered for the test's duration, and nothing else names it: not the release,
not a table, not the catalogue. Yet a request naming it runs through the real queue and
worker, and releasing that run restores the tenant from the run's record.
"""

from __future__ import annotations

from pathlib import Path

from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, all_steps, registered
from shared.playbook.release import RELEASE_ROW, items_from_record
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph.client import build_path
from tests.playbook.conftest import MEGAN, run_via_queue, writes

ROOT = Path(__file__).resolve().parents[2]
LABEL = "Under investigation"
ORIGINAL_TITLE = "Accounts Payable Lead"  # Megan's job title in the demo tenant


class LabelJobTitle(Step):
    """Label the account's job title while it is investigated (exists only in this test)."""

    name = "label_job_title_for_test"
    graph_permissions = ("User.ReadWrite.All",)
    reversible = "release restores the recorded job title"
    dry_run_description = "would set the job title to the investigation label"

    async def plan(self, ctx: StepContext) -> Plan:
        user = await ctx.graph.request("GET", build_path("/users/{}", ctx.user.id),
                                       params={"$select": "jobTitle"})
        before = (user or {}).get("jobTitle")
        if before == LABEL:
            return Plan.nothing_to_do("already labelled")
        return Plan(actions=[f"job title {before!r} -> {LABEL!r}"], data={"before": before})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await ctx.graph.request("PATCH", build_path("/users/{}", ctx.user.id),
                                body={"jobTitle": LABEL})
        return StepResult(step=self.name, status=StepStatus.DONE, summary="job title labelled",
                          changes=[{"what": "jobTitle", "from": plan.data["before"],
                                    "to": LABEL}])

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        items: list[Undo] = []
        for change in finished_changes(result):
            async def restore(before: str | None = change.get("from")) -> None:
                await ctx.graph.request("PATCH", build_path("/users/{}", ctx.user_id),
                                        body={"jobTitle": before})
            items.append(Undo("jobTitle", f"job title restored to {change.get('from')}",
                              restore))
        return items


def _megan(state: dict) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == MEGAN)


async def test_a_new_step_is_applied_and_released_through_the_real_path(services, emulator):
    assert _megan(emulator.state())["jobTitle"] == ORIGINAL_TITLE
    # the new step's permission is granted to the app, as a deployment would after
    # regenerating infra/permissions.json (the emulator refuses what the app was not granted)
    emulator.grant_permissions(LabelJobTitle.graph_permissions)
    with registered(LabelJobTitle):
        stats = await run_via_queue(services, {"user": MEGAN, "requestId": "ext-1",
                                               "actions": [LabelJobTitle.name]})
        assert stats.failed == 0
        run = await services.journal.get_run("ext-1")
        assert run.state == "finished", run.reason
        assert run.steps == ["collect_evidence", LabelJobTitle.name]
        assert _megan(emulator.state())["jobTitle"] == LABEL

        await run_via_queue(services, {"user": MEGAN, "action": "release", "runId": "ext-1",
                                       "requestId": "release-ext-1", "requestedBy": "soc"})
        assert _megan(emulator.state())["jobTitle"] == ORIGINAL_TITLE
        assert (await services.journal.get_run("ext-1")).state == "released"
        row = await services.journal.get_item("ext-1", RELEASE_ROW)
        assert row is not None and row["state"] == "released"
        items = items_from_record(row)
        assert items["jobTitle"].status == StepStatus.DONE
        assert items["jobTitle"].summary == f"job title restored to {ORIGINAL_TITLE}"

        # idempotent like every release: a second one changes nothing
        emulator.clear_log()
        await run_via_queue(services, {"user": MEGAN, "action": "release", "runId": "ext-1",
                                       "requestId": "release-ext-1b"})
        assert writes(emulator) == []
    assert LabelJobTitle.name not in all_steps()  # the global registry is restored


def test_the_new_step_needed_no_other_file():
    """Only the class above names the step: the release and the tables know nothing of it."""
    for path in (ROOT / "shared").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert LabelJobTitle.name not in text, path
