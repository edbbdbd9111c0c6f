"""Run reports: a readable table for the terminal, Markdown, and JSON.

Reports are built from the journal only (what was recorded), so a report printed later is
the same one an investigator gets; they never contain secrets because the journal never
does.
"""

from __future__ import annotations

import json
from typing import Any

from shared.models import StepResult
from shared.state.journal import RunRecord

_MARK = {
    "done": "done", "nothing_to_do": "nothing to do", "skipped": "skipped",
    "failed": "FAILED", "planned": "would do", "waiting_approval": "waiting approval",
    "partial": "partial",
}


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(run: RunRecord, results: dict[str, StepResult], *, width: int = 150) -> str:
    """A fixed-width table: step, outcome, what changed or why not."""
    lines = [
        f"run {run.run_id}  user {run.upn or run.user} ({run.user_id or '?'})",
        f"state {run.state}{'  (dry run)' if run.dry_run else ''}  playbook {run.playbook}",
    ]
    if run.reason:
        lines.append(f"reason: {run.reason}")
    if run.evidence_blob:
        lines.append(f"evidence: {run.evidence_blob}")
    name_w = max([len(s) for s in run.steps] + [4])
    lines.append("")
    lines.append(f"{'step'.ljust(name_w)}  {'outcome'.ljust(16)}  detail")
    lines.append(f"{'-' * name_w}  {'-' * 16}  {'-' * 40}")
    for name in run.steps:
        r = results.get(name)
        outcome = _MARK.get(r.status.value, r.status.value) if r else "not run"
        detail = (r.summary if r else "") or ""
        if r and r.request_id:
            detail += f" [request-id {r.request_id}]"
        lines.append(f"{name.ljust(name_w)}  {outcome.ljust(16)}  "
                     f"{_clip(detail, max(20, width - name_w - 20))}")
    return "\n".join(lines)


def as_json(run: RunRecord, results: dict[str, StepResult]) -> dict[str, Any]:
    return {
        "runId": run.run_id, "user": run.user, "userId": run.user_id, "upn": run.upn,
        "state": run.state, "reason": run.reason, "playbook": run.playbook,
        "dryRun": run.dry_run, "evidence": run.evidence_blob,
        "createdAt": run.created_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "steps": [
            {"step": n, **(results[n].model_dump(mode="json") if n in results
                           else {"status": "not_run"})}
            for n in run.steps
        ],
    }


def json_text(run: RunRecord, results: dict[str, StepResult]) -> str:
    return json.dumps(as_json(run, results), indent=2, default=str)
