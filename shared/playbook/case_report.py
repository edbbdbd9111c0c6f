"""The case report: one printable page a SOC attaches to a ticket or an audit.

It is the run report (`reports`) laid out for print, with what an auditor asks for next to
each other: the timeline (the run's journal events), a summary of the evidence (where it is,
when it was taken, its SHA-256, what could not be read), every change the run made with its
undo status (from the step results and, after a release, the release's recorded outcome of
each item), and whether each step's change was read back from the tenant (`verification`
in the step's data, when the step recorded one).

Built from the journal and the evidence blob only, like the run report. The page loads
nothing (inline CSS, a Content-Security-Policy that forbids everything else), every value is
HTML-escaped and passes the log redaction: rule names, UPNs and subjects come from the
attacker as often as from the user. `case_pdf` prints this page with headless Chromium.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.logs import redact
from shared.models import StepResult, StepStatus
from shared.playbook import reports
from shared.playbook.registry import all_steps
from shared.playbook.undo import ReleaseContext, Undo

if TYPE_CHECKING:
    from shared.services import Services


@dataclass
class ChangeRow:
    """One change a step made, and what became (or would become) of it on release."""

    step: str
    change: str
    undo: str
    """A short status: undone, not undone (not released), cannot be undone, kept, ..."""
    detail: str = ""


@dataclass
class CaseReport:
    report: reports.RunReport
    evidence: dict[str, Any] | None = None
    evidence_sha256: str = ""
    changes: list[ChangeRow] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def load_case(services: Services, run_id: str) -> CaseReport | None:
    """The run report plus the evidence document and each change's undo status."""
    report = await reports.load(services, run_id)
    if report is None:
        return None
    evidence = (await services.journal.get_evidence(report.run.run_id, "evidence")
                if report.run.evidence_blob else None)
    plan = await _undo_items(services, report, evidence)
    return CaseReport(report=report, evidence=evidence, evidence_sha256=_sha256(evidence),
                      changes=change_rows(report, plan))


def _sha256(evidence: dict[str, Any] | None) -> str:
    """SHA-256 of the evidence blob's bytes: the journal writes it with sorted keys and a
    2-space indent, so the parsed document re-serialises to the same bytes."""
    if evidence is None:
        return ""
    data = json.dumps(evidence, default=str, indent=2, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


async def _undo_items(services: Services, report: reports.RunReport,
                      evidence: dict[str, Any] | None) -> dict[str, list[Undo]]:
    """Each step's release items, as its `undo` plans them from the run's record. Planning
    calls nothing (the items' actions are not run): it only names the items, so a change
    can be matched to the release item that restores it."""
    ctx = ReleaseContext(services, report.run, evidence)
    steps = all_steps()
    out: dict[str, list[Undo]] = {}
    for name in report.run.steps:
        result = report.results.get(name)
        if name in steps and result is not None and result.changes:
            out[name] = await steps[name]().undo(ctx, result)
    return out


def _identifiers(change: dict[str, Any]) -> set[str]:
    return {str(v) for v in change.values() if isinstance(v, str | int) and str(v)}


def _items_for(change: dict[str, Any], items: list[Undo],
               all_changes: list[dict[str, Any]]) -> list[Undo]:
    """The release items that concern one change: those that name it (the change is in the
    item, or the item's key ends with the change's id or group), else the step's items that
    name no other change of the step."""
    own = [i for i in items if (i.changes and change in i.changes)
           or (":" in i.key and i.key.split(":", 1)[1] in _identifiers(change))]
    if own:
        return own

    def names_another(item: Undo) -> bool:
        return any(c is not change and ((item.changes and c in item.changes) or (
            ":" in item.key and item.key.split(":", 1)[1] in _identifiers(c)))
            for c in all_changes)
    return [i for i in items if not names_another(i)]


_RELEASED = {
    StepStatus.DONE: "undone", StepStatus.NOTHING_TO_DO: "nothing left to undo",
    StepStatus.PARTIAL: "partly undone", StepStatus.FAILED: "undo FAILED",
    StepStatus.PLANNED: "would be undone",
}


def _status(item: Undo, released: StepResult | None, has_release: bool) -> tuple[str, str]:
    reported = item.key.startswith(("cannotUndo:", "kept:")) or item.action is None
    if reported:
        # A declared text starting with "cannot" names a real loss (registry.Step.cannot_undo);
        # otherwise there is nothing to give back (sessions: the user signs in again).
        declared = item.summary.split(": ", 1)[-1]
        word = ("kept" if item.key.startswith("kept:") else
                ("cannot be undone" if declared.startswith("cannot") else "nothing to undo")
                if item.key.startswith("cannotUndo:") else
                "needs a person" if item.status == StepStatus.PARTIAL else "not undone")
        return word, (released.summary if released else item.summary)
    if released is not None:
        word = _RELEASED.get(released.status, released.status.value)
        return word, released.summary
    if has_release:
        return "not undone", f"not in the release: {item.summary}"
    return "not released", f"a release would: {item.summary}"


def change_rows(report: reports.RunReport,
                plan: dict[str, list[Undo]]) -> list[ChangeRow]:
    """Every change of the run with its undo status, in the run's step order."""
    rows: list[ChangeRow] = []
    has_release = report.release is not None
    steps = all_steps()
    for name in report.run.steps:
        result = report.results.get(name)
        if result is None:
            continue
        for change in result.changes:
            text = reports.describe_change(change)
            if result.status not in (StepStatus.DONE, StepStatus.PARTIAL):
                rows.append(ChangeRow(name, text, "not undone",
                                      f"the step ended {result.status.value}"))
                continue
            items = _items_for(change, plan.get(name, []), result.changes)
            if not items:
                declared = steps[name].reversible if name in steps else ""
                rows.append(ChangeRow(name, text, "no undo declared", declared))
                continue
            found = [_status(i, report.release_items.get(i.key), has_release) for i in items]
            rows.append(ChangeRow(name, text, "; ".join(dict.fromkeys(w for w, _ in found)),
                                  "; ".join(d for _, d in found)))
    return rows


def verification(result: StepResult | None) -> dict[str, Any] | None:
    """The step's read-back (`data["verification"]`), when it recorded one: `verified`
    is true, false (differences found) or None (it could not be read back; `note` says why)."""
    if result is None:
        return None
    found = result.data.get("verification")
    return found if isinstance(found, dict) and "verified" in found else None


def _clean(value: Any) -> str:
    return redact(" ".join(str(value if value is not None else "").split()))


def _h(value: Any) -> str:
    return html.escape(_clean(value), quote=True)


def _when(value: Any) -> str:
    """A time in UTC to the second (journal times are UTC; naive ones are taken as UTC)."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%d %H:%M:%S")
    return _clean(value)


def evidence_summary(case: CaseReport) -> list[tuple[str, str]]:
    """(label, value) lines about the evidence document, for people (not the document)."""
    doc, report = case.evidence, case.report
    out: list[tuple[str, str]] = []
    if report.evidence_url:
        out.append(("location", report.evidence_url))
    if doc is None:
        out.append(("document", "no evidence document was stored for this run"
                    if not report.run.evidence_blob else "the evidence document is missing"))
        return out
    out.append(("collected at (UTC)", _clean(doc.get("collectedAt"))))
    out.append(("SHA-256 of the blob", case.evidence_sha256))
    user = doc.get("user") or {}
    if user:
        out.append(("account at collection",
                    f"{user.get('userPrincipalName') or '?'} ({user.get('id') or '?'}), "
                    f"enabled {user.get('accountEnabled', '?')}"))
    risky = doc.get("riskyUser") or {}
    if risky:
        out.append(("risk", f"level {risky.get('riskLevel') or '?'}, state "
                    f"{risky.get('riskState') or '?'}"))
    for label, key in (("risk detections", "riskDetections"),
                       ("authentication methods", "authenticationMethods"),
                       ("inbox rules (Graph)", "inboxRules"),
                       ("inbox rules (Exchange)", "exchangeInboxRules"),
                       ("group and role memberships", "memberOf")):
        if isinstance(doc.get(key), list):
            out.append((label, str(len(doc[key]))))
    box = doc.get("mailbox") or {}
    if box:
        target = box.get("ForwardingSmtpAddress") or box.get("ForwardingAddress")
        out.append(("mailbox forwarding at collection", str(target or "none")))
    collected = sorted(k for k in doc if k not in ("runId", "collectedAt", "unavailable",
                                                   "federated"))
    out.append(("parts collected", ", ".join(collected)))
    missing = doc.get("unavailable") or {}
    out += [(f"unavailable: {k}", str(v)) for k, v in sorted(missing.items())]
    return out


def detections(case: CaseReport, limit: int = 20) -> list[dict[str, str]]:
    """The risk detections in the evidence (newest first, at most `limit`)."""
    rows = [d for d in (case.evidence or {}).get("riskDetections") or [] if isinstance(d, dict)]
    rows.sort(key=lambda d: str(d.get("detectedDateTime") or ""), reverse=True)
    out = []
    for d in rows[:limit]:
        loc = d.get("location") or {}
        where = ", ".join(str(x) for x in (loc.get("city"), loc.get("countryOrRegion")) if x)
        out.append({"at": str(d.get("detectedDateTime") or ""),
                    "type": str(d.get("riskEventType") or ""),
                    "level": str(d.get("riskLevel") or ""),
                    "ip": str(d.get("ipAddress") or ""), "where": where})
    return out


_CSS = """
@page{size:A4;margin:14mm 12mm 16mm}
*{box-sizing:border-box}
body{font:10.5pt/1.4 "Liberation Sans","DejaVu Sans",Arial,Helvetica,sans-serif;color:#111;
margin:0;background:#fff}
header{border-bottom:2px solid #1f3a68;padding-bottom:6px;margin-bottom:10px}
h1{font-size:17pt;margin:0;color:#1f3a68}
.sub{color:#444;font-size:9.5pt}
h2{font-size:12.5pt;margin:16px 0 6px;color:#1f3a68;border-bottom:1px solid #ccd;
padding-bottom:2px;break-after:avoid}
table{border-collapse:collapse;width:100%;margin:4px 0 8px;font-size:9.5pt}
thead{display:table-header-group}
tr{break-inside:avoid}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th.nw,td.nw{white-space:nowrap;overflow-wrap:normal}
th{background:#e9edf5;overflow-wrap:normal}
table.facts th{width:30%;background:#f4f6fa;font-weight:600}
code,.mono{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:8.8pt}
.when{white-space:nowrap;font-family:"DejaVu Sans Mono","Liberation Mono",monospace;
font-size:8.8pt}
.bad{color:#a4262c;font-weight:600}.good{color:#107c10;font-weight:600}
.warn{color:#8a5300;font-weight:600}
.summary{display:flex;gap:8px;flex-wrap:wrap;margin:6px 0}
.summary div{border:1px solid #ccd;border-radius:4px;padding:4px 8px;background:#f7f9fc}
.summary b{display:block;font-size:13pt}
footer{margin-top:18px;border-top:1px solid #ccd;padding-top:4px;color:#555;font-size:8.5pt}
"""

_GOOD = ("undone", "nothing left to undo", "nothing to undo", "verified")
_BAD = ("undo FAILED", "cannot be undone", "NOT verified", "not undone")


def _mark(word: str) -> str:
    css = ("bad" if any(word.startswith(b) for b in _BAD) else
           "good" if any(word.startswith(g) for g in _GOOD) else "warn")
    return f"<span class=\"{css}\">{_h(word)}</span>"


def _table(head: list[str], rows: list[list[str]], nowrap: tuple[int, ...] = (0,)) -> str:
    """A table; `rows` hold already-escaped HTML. The `nowrap` columns (names, statuses,
    times) keep to one line; the others wrap, even inside a long token (hashes, URLs)."""
    def cell(tag: str, i: int, content: str) -> str:
        return f"<{tag} class=\"nw\">{content}</{tag}>" if i in nowrap else \
            f"<{tag}>{content}</{tag}>"
    return ("<table><thead><tr>" + "".join(cell("th", i, _h(h)) for i, h in enumerate(head))
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>"
                      for r in rows)
            + "</tbody></table>")


def _facts(rows: list[tuple[str, Any]]) -> str:
    return ("<table class=\"facts\"><tbody>"
            + "".join(f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in rows)
            + "</tbody></table>")


def _verification_cell(result: StepResult | None) -> str:
    v = verification(result)
    if v is None:
        return ""
    if v.get("verified") is None:  # the read-back itself failed: the note says why
        cell = _mark("not verified")
    elif v.get("verified"):
        cell = _mark("verified")
    else:
        cell = _mark("NOT verified")
        diffs = v.get("differences") or []
        if diffs:
            cell += "<br>" + "<br>".join(_h(d) for d in diffs)
    if v.get("note"):
        cell += f"<br><span class=\"sub\">{_h(v['note'])}</span>"
    return cell


def case_html(case: CaseReport) -> str:
    """The printable case page (A4), self-contained: no script, no external resource."""
    report = case.report
    run = report.run
    request = run.request or {}
    user = run.upn or run.user
    results = report.results
    verified = [verification(results.get(n)) for n in run.steps]
    checked = [v for v in verified if v is not None]
    undone = sum(1 for c in case.changes if c.undo.startswith("undone"))
    lost = sum(1 for c in case.changes if "cannot be undone" in c.undo)
    timeline_rows = [[f"<span class=\"when\">{_h(_when(t.at))}</span>", _h(t.kind),
                      _h(t.text)] for t in reports.timeline(report)]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        f"<title>Case report - run {_h(run.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Case report: compromised account {_h(user)}</h1>",
        f"<div class=\"sub\">run <code>{_h(run.run_id)}</code> - generated "
        f"{_h(_when(case.generated_at))} UTC from the run journal</div></header>",
        "<h2>Case</h2>",
        _facts([
            ("user", f"{user} ({run.user_id or '?'})"),
            ("run state", run.state + (" (dry run: nothing was changed)" if run.dry_run
                                       else "")),
            ("playbook", run.playbook or "explicit steps"),
            ("signal", f"{request.get('source') or 'unknown source'}"
                       f"{': ' + str(request['reason']) if request.get('reason') else ''}"),
            ("risk level", request.get("riskLevel") or "n/a"),
            ("detected at", request.get("detectedAt") or "n/a"),
            ("requested by", request.get("requestedBy") or "n/a"),
            ("started / finished (UTC)", f"{_when(run.created_at)} / "
                                         f"{_when(run.finished_at) if run.finished_at else '-'}"),
            *([("outcome", run.reason)] if run.reason else []),
        ]),
        "<div class=\"summary\">"
        f"<div><b>{len(case.changes)}</b>changes</div>"
        f"<div><b>{undone}</b>undone by a release</div>"
        f"<div><b>{lost}</b>cannot be undone</div>"
        f"<div><b>{sum(1 for v in checked if v.get('verified'))}/{len(checked)}</b>"
        "changes read back and verified</div>"
        f"<div><b>{sum(1 for v in checked if v.get('verified') is False)}</b>"
        "read back with differences</div></div>",
        "<h2>Timeline</h2>",
        _table(["when (UTC)", "event", "detail"], timeline_rows, (0, 1)),
        "<h2>Evidence</h2>", _facts(evidence_summary(case)),
    ]
    found = [[f"<span class=\"when\">{_h(d['at'])}</span>", _h(d["type"]), _h(d["level"]),
              _h(d["ip"]), _h(d["where"])] for d in detections(case)]
    if found:
        parts.append(_table(["detected (UTC)", "risk event", "level", "IP address", "where"],
                            found, (0, 2, 3)))
    step_rows = []
    for name in run.steps:
        r = results.get(name)
        outcome = reports.outcome_word(r)
        detail = _h(r.summary if r else "")
        if r and r.request_id:
            detail += f" <span class=\"mono\">[request-id {_h(r.request_id)}]</span>"
        step_rows.append([f"<code>{_h(name)}</code>",
                          _mark(outcome) if outcome == "FAILED" else _h(outcome),
                          _verification_cell(r), detail])
    parts += ["<h2>Steps</h2>",
              _table(["step", "outcome", "verification", "detail"], step_rows, (0, 1))]
    parts.append("<h2>Changes and undo status</h2>")
    if case.changes:
        change_cells = [[f"<code>{_h(c.step)}</code>", _h(c.change), _mark(c.undo),
                         _h(c.detail)] for c in case.changes]
        parts.append(_table(["step", "change", "undo status", "detail"], change_cells, (0, 2)))
    else:
        parts.append("<p>The run changed nothing in the tenant.</p>")
    if report.approval:
        a = report.approval
        parts += ["<h2>Approval</h2>", _facts([
            ("state", a.get("state")), ("steps", ", ".join(a.get("steps") or [])),
            ("roles", ", ".join(a.get("roles") or [])), ("expires", a.get("expiresAt")),
            *([("decided", f"by {a.get('decidedBy')} ({a.get('byTrust')}) at "
                           f"{a.get('decidedAt')}")] if a.get("decidedAt") else []),
        ])]
    if report.release:
        rel = report.release
        items = [[f"<code>{_h(k)}</code>", _h(r.status.value), _h(r.summary)]
                 for k, r in report.release_items.items()]
        parts += ["<h2>Release</h2>",
                  _facts([("state", rel.get("state")), ("by", rel.get("by")),
                          ("at (UTC)", _when(rel.get("at")))]),
                  _table(["item", "outcome", "detail"], items, (0, 1))]
    cannot = reports.not_undoable(report)
    if cannot:
        parts += ["<h2>Cannot be undone</h2>",
                  "<ul>" + "".join(f"<li>{_h(c)}</li>" for c in cannot) + "</ul>"]
    parts.append("<footer>Built from the run's journal (append-only events, step results, "
                 "approval and release records) and its evidence document. No password or "
                 "token is journaled, so none can appear here.</footer></body></html>")
    return "\n".join(parts)
