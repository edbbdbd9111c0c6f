"""The run report an investigator reads: Markdown for the terminal, HTML for the browser,
JSON for tools. Built from the journal only (run, steps, append-only events, approval and
release records), so it is the same whenever it is printed.

It shows a timeline from the signal to the last step, what changed (from what to what),
what a release undid and what cannot be undone, and where the evidence is. Every value is
HTML-escaped in the page (user input such as rule names and UPNs ends up here), and every
text passes the log redaction as a last line of defence; the journal holds no secrets.

The CLI and the demo also print a run straight from its record and step results, before (or
without) loading the rest: `text_table` for the terminal, `run_json` / `run_json_text`.
The printable case report (and its PDF) builds on this one: `case_report`, `case_pdf`.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.logs import redact
from shared.models import StepResult
from shared.playbook.release import RELEASE_ROW, items_from_record
from shared.playbook.verify import describe as verification_text
from shared.safety import approvals
from shared.state.journal import RunRecord, safe_key

if TYPE_CHECKING:
    from shared.services import Services

_MARK = {
    "done": "done", "nothing_to_do": "nothing to do", "skipped": "skipped",
    "failed": "FAILED", "planned": "would do", "waiting_approval": "waiting approval",
    "partial": "partial",
}
"""How each step status reads in a report."""


@dataclass
class TimelineEntry:
    at: datetime | None
    kind: str
    text: str


@dataclass
class RunReport:
    run: RunRecord
    results: dict[str, StepResult]
    events: list[dict[str, Any]] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    release: dict[str, Any] | None = None
    release_items: dict[str, StepResult] = field(default_factory=dict)
    evidence_url: str = ""


async def load(services: Services, run_id: str) -> RunReport | None:
    journal = services.journal
    run = await journal.get_run(safe_key(run_id))
    if run is None:
        return None
    results = await journal.step_results(run.run_id)
    events = sorted(await journal.events(run.run_id), key=lambda e: e.get("RowKey", ""))
    approval = await approvals.get_approval(services, run.run_id)
    release = await journal.get_item(run.run_id, RELEASE_ROW)
    return RunReport(
        run=run, results=results, events=events,
        approval=approval.public() if approval else None,
        release={k: release[k] for k in ("state", "at", "by") if k in release}
        if release else None,
        release_items=items_from_record(release) if release else {},
        evidence_url=_evidence_url(services, run.evidence_blob),
    )


def _evidence_url(services: Services, blob: str) -> str:
    account = services.settings.storage_account
    if blob and account:
        return f"https://{account}.blob.core.windows.net/{blob}"
    return blob


def _clean(value: Any) -> str:
    return redact(" ".join(str(value if value is not None else "").split()))


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else _clean(value)


def timeline(report: RunReport) -> list[TimelineEntry]:
    """From the signal that started it to the last thing recorded."""
    request = report.run.request or {}
    entries: list[TimelineEntry] = []
    detected = request.get("detectedAt")
    signal = (f"signal from {request.get('source') or 'unknown source'}"
              f"{': ' + str(request['reason']) if request.get('reason') else ''}"
              f" (risk {request.get('riskLevel') or 'n/a'}, requested by "
              f"{request.get('requestedBy') or 'n/a'})")
    if detected:
        try:
            entries.append(TimelineEntry(datetime.fromisoformat(
                str(detected).replace("Z", "+00:00")), "signal", signal))
        except ValueError:
            entries.append(TimelineEntry(None, "signal", f"{signal}; detected {detected}"))
    else:
        entries.append(TimelineEntry(report.run.created_at, "signal", signal))
    for e in report.events:
        entries.append(TimelineEntry(e.get("at"), str(e.get("kind", "")),
                                     str(e.get("message", ""))))
    return entries


def _describe(change: dict[str, Any]) -> str:
    what = change.get("what")
    if what == "inboxRule":
        via = (" (through Exchange; Outlook client-side rules may have been removed)"
               if change.get("via") == "exchange" else "")
        reasons = "; ".join(change.get("reasons") or [])
        return (f"inbox rule '{change.get('name') or change.get('id')}'{via}: "
                f"{change.get('from')} -> {change.get('to')} ({reasons})")
    if what == "authenticationMethod":
        removed = change.get("removed") or {}
        return (f"authentication method removed: {removed.get('kind')} "
                f"'{removed.get('displayName') or removed.get('id')}' (registered "
                f"{removed.get('createdDateTime') or '?'}); cannot be undone")
    if what == "password":
        return "password set to a random value nobody knows (cannot be undone)"
    if what == "groupMembership":
        return f"added to group {change.get('group')}"
    if what == "mailboxForwarding":
        before = change.get("from") or {}
        target = before.get("ForwardingSmtpAddress") or before.get("ForwardingAddress")
        return f"mailbox forwarding to {target} cleared"
    if "from" in change:
        return f"{what}: {change.get('from')} -> {change.get('to')}"
    if "to" in change:
        return f"{what}: {change.get('to')}"
    return ", ".join(f"{k}={v}" for k, v in change.items() if k != "rule")


def describe_change(change: dict[str, Any]) -> str:
    """One recorded change in words (what, from what to what), as every report says it."""
    return _describe(change)


def outcome_word(result: StepResult | None) -> str:
    """How a step's outcome reads in a report ("not run" when it has no result)."""
    return _MARK.get(result.status.value, result.status.value) if result else "not run"


def changes(report: RunReport) -> list[tuple[str, str]]:
    return [(name, _describe(c)) for name in report.run.steps
            for c in (report.results[name].changes if name in report.results else [])]


def not_undoable(report: RunReport) -> list[str]:
    """What a release cannot give back, for this run."""
    from shared.playbook.release import CANNOT_UNDO

    out = []
    for step, why in CANNOT_UNDO.items():
        r = report.results.get(step)
        if r is not None and r.changes:
            out.append(f"{step}: {why}")
    return out


def as_json(report: RunReport) -> dict[str, Any]:
    run = report.run
    return {
        "runId": run.run_id, "user": run.user, "userId": run.user_id, "upn": run.upn,
        "state": run.state, "reason": _clean(run.reason), "playbook": run.playbook,
        "dryRun": run.dry_run, "evidence": report.evidence_url,
        "createdAt": run.created_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "steps": [{"step": n, **(report.results[n].model_dump(mode="json", exclude={"data"})
                                 if n in report.results else {"status": "not_run"}),
                   **_verification(report.results.get(n))}
                  for n in run.steps],
        "timeline": [{"at": _iso(t.at), "kind": t.kind, "text": _clean(t.text)}
                     for t in timeline(report)],
        "changes": [{"step": s, "change": _clean(c)} for s, c in changes(report)],
        "approval": report.approval,
        "release": {**(report.release or {}),
                    "items": [{"item": k, "status": r.status.value, "summary": _clean(r.summary)}
                              for k, r in report.release_items.items()]}
        if report.release else None,
        "cannotBeUndone": not_undoable(report),
    }


def _verification(result: StepResult | None) -> dict[str, Any]:
    """`{"verification": ...}` when the step read its change back (`data["verification"]`),
    else nothing: the key is added only where there is something to say."""
    found = result.data.get("verification") if result is not None else None
    return {"verification": found} if isinstance(found, dict) and "verified" in found else {}


def json_text(report: RunReport) -> str:
    return json.dumps(as_json(report), indent=2, default=str)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(run: RunRecord, results: dict[str, StepResult], *, width: int = 150) -> str:
    """A fixed-width table for the terminal: step, outcome, what changed or why not."""
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


def run_json(run: RunRecord, results: dict[str, StepResult]) -> dict[str, Any]:
    """A run and its step results as JSON (the CLI's --json), without the timeline."""
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


def run_json_text(run: RunRecord, results: dict[str, StepResult]) -> str:
    return json.dumps(run_json(run, results), indent=2, default=str)


def _md(value: Any) -> str:
    return _clean(value).replace("|", "\\|")


def markdown(report: RunReport) -> str:
    run = report.run
    out = [f"# Run {_md(run.run_id)}", "",
           f"- **user**: {_md(run.upn or run.user)} ({_md(run.user_id or '?')})",
           f"- **state**: {_md(run.state)}{' (dry run)' if run.dry_run else ''}",
           f"- **playbook**: {_md(run.playbook)}"]
    if run.reason:
        out.append(f"- **reason**: {_md(run.reason)}")
    if report.evidence_url:
        out.append(f"- **evidence**: {_md(report.evidence_url)}")
    out += ["", "## Timeline", "", "| when (UTC) | what | detail |", "| --- | --- | --- |"]
    out += [f"| {_md(_iso(t.at))} | {_md(t.kind)} | {_md(t.text)} |" for t in timeline(report)]
    out += ["", "## Steps", "", "| step | outcome | detail | read back |",
            "| --- | --- | --- | --- |"]
    for name in run.steps:
        r = report.results.get(name)
        outcome = _MARK.get(r.status.value, r.status.value) if r else "not run"
        out.append(f"| {_md(name)} | {_md(outcome)} | {_md(r.summary if r else '')} | "
                   f"{_md(verification_text(r))} |")
    out += ["", "## What changed", ""]
    out += [f"- {_md(s)}: {_md(c)}" for s, c in changes(report)] or ["- nothing"]
    if report.approval:
        a = report.approval
        out += ["", "## Approval", "",
                f"- state **{_md(a['state'])}** for {_md(', '.join(a['steps']))}",
                f"- roles: {_md(', '.join(a['roles']))}; expires {_md(a['expiresAt'])}"]
        if a.get("decidedAt"):
            out.append(f"- decided by {_md(a['decidedBy'])} ({_md(a['byTrust'])}) at "
                       f"{_md(a['decidedAt'])}")
    if report.release:
        out += ["", "## Release", "", f"- state **{_md(report.release.get('state'))}** "
                f"by {_md(report.release.get('by'))} at {_md(_iso(report.release.get('at')))}"]
        out += [f"- {_md(k)}: {_md(r.status.value)} - {_md(r.summary)}"
                for k, r in report.release_items.items()]
    cannot = not_undoable(report)
    if cannot:
        out += ["", "## Cannot be undone", ""] + [f"- {_md(c)}" for c in cannot]
    return "\n".join(out) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;
color:#1b1b1b;background:#fafafa}h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;
margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}table{border-collapse:
collapse;width:100%;background:#fff}th,td{border:1px solid #ddd;padding:5px 8px;
text-align:left;vertical-align:top}th{background:#f0f0f0}code{font-size:12px}
.state{display:inline-block;padding:2px 8px;border-radius:10px;background:#e8eefc}
.failed,.FAILED{color:#a4262c;font-weight:600}.done{color:#107c10}
ol.timeline{list-style:none;padding:0;border-left:3px solid #7a9ee8;margin-left:8px}
ol.timeline li{margin:0 0 8px;padding-left:14px;position:relative}
ol.timeline li:before{content:"";position:absolute;left:-8px;top:6px;width:11px;
height:11px;border-radius:50%;background:#7a9ee8}
.when{color:#555;font-family:ui-monospace,monospace;font-size:12px}.kind{font-weight:600}
"""


def _h(value: Any) -> str:
    return html.escape(_clean(value), quote=True)


def html_page(report: RunReport) -> str:
    run = report.run
    rows = []
    for name in run.steps:
        r = report.results.get(name)
        outcome = _MARK.get(r.status.value, r.status.value) if r else "not run"
        css = r.status.value if r else ""
        check = verification_text(r)
        check_css = ("done" if check.startswith("verified") else
                     "failed" if check.startswith("differences") else "")
        rows.append(f"<tr><td><code>{_h(name)}</code></td><td class=\"{_h(css)}\">"
                    f"{_h(outcome)}</td><td>{_h(r.summary if r else '')}</td>"
                    f"<td class=\"{check_css}\">{_h(check)}</td></tr>")
    events = "".join(
        f"<li><span class=\"when\">{_h(_iso(t.at))}</span> <span class=\"kind\">{_h(t.kind)}"
        f"</span> {_h(t.text)}</li>" for t in timeline(report))
    changed = "".join(f"<li><code>{_h(s)}</code>: {_h(c)}</li>" for s, c in changes(report))
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        f"<title>Run {_h(run.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Run {_h(run.run_id)}</h1>",
        f"<p>User <strong>{_h(run.upn or run.user)}</strong> ({_h(run.user_id or '?')}) - "
        f"state <span class=\"state\">{_h(run.state)}</span>"
        f"{' (dry run)' if run.dry_run else ''} - playbook {_h(run.playbook)}</p>",
    ]
    if run.reason:
        parts.append(f"<p>Reason: {_h(run.reason)}</p>")
    if report.evidence_url:
        url = report.evidence_url
        link = (f"<a href=\"{_h(url)}\">{_h(url)}</a>" if url.startswith("https://")
                else f"<code>{_h(url)}</code>")
        parts.append(f"<p>Evidence: {link}</p>")
    parts += ["<h2>Timeline</h2>", f"<ol class=\"timeline\">{events}</ol>",
              "<h2>Steps</h2><table><tr><th>step</th><th>outcome</th><th>detail</th>"
              "<th>read back</th></tr>",
              "".join(rows), "</table>", "<h2>What changed</h2>",
              f"<ul>{changed or '<li>nothing</li>'}</ul>"]
    if report.approval:
        a = report.approval
        decided = (f"; decided by {_h(a['decidedBy'])} ({_h(a['byTrust'])}) at "
                   f"{_h(a['decidedAt'])}" if a.get("decidedAt") else "")
        parts.append(f"<h2>Approval</h2><p>State <strong>{_h(a['state'])}</strong> for "
                     f"{_h(', '.join(a['steps']))}; roles {_h(', '.join(a['roles']))}; "
                     f"expires {_h(a['expiresAt'])}{decided}</p>")
    if report.release:
        items = "".join(f"<li><code>{_h(k)}</code>: {_h(r.status.value)} - {_h(r.summary)}"
                        f"</li>" for k, r in report.release_items.items())
        parts.append(f"<h2>Release</h2><p>State <strong>{_h(report.release.get('state'))}"
                     f"</strong> by {_h(report.release.get('by'))} at "
                     f"{_h(_iso(report.release.get('at')))}</p><ul>{items}</ul>")
    cannot = not_undoable(report)
    if cannot:
        parts.append("<h2>Cannot be undone</h2><ul>"
                     + "".join(f"<li>{_h(c)}</li>" for c in cannot) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render(report: RunReport, fmt: str) -> tuple[str, str]:
    """(body, content type) for `md`, `html` or `json`."""
    if fmt == "html":
        return html_page(report), "text/html; charset=utf-8"
    if fmt == "json":
        return json_text(report), "application/json"
    if fmt == "md":
        return markdown(report), "text/markdown; charset=utf-8"
    raise ValueError(f"unknown report format {fmt!r}: use html, md or json")
