"""The case report (printable HTML, and PDF through headless Chromium) after a real run
through the queue, Azurite and the emulator, and a release of it."""

from __future__ import annotations

import copy
import hashlib
import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import azure.functions as func
import pytest

from functions import runtime
from shared.cli import main_async
from shared.logs import redact
from shared.models import StepResult, StepStatus
from shared.playbook import case_pdf, reports
from shared.playbook.case_report import case_html, load_case
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, registered
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph.client import build_path
from tests.conftest import make_settings
from tests.playbook.conftest import MEGAN, build_services, run_via_queue

CHROMIUM = next((p for p in map(shutil.which, case_pdf.BROWSERS) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install -y chromium; .ci/run installs it, "
           "and in CI this test never skips)")
HOSTILE_RULE = "</script><img src=x onerror=alert(1)>Invoices"
HOSTILE_REASON = "<script>alert('case')</script> & <b>bold</b>"
RULE_ID = "AQAAAJ5dZqE="  # Megan's rule that forwards invoices outside (demo tenant)
PDF_LIMIT = 60.0
DEMO_SEED = json.loads(Path("devtools/tenants/demo.json").read_text(encoding="utf-8"))


def esc(value: object) -> str:
    """A value as the report writes it: whitespace folded, redacted, HTML-escaped."""
    return html.escape(redact(" ".join(str(value).split())), quote=True)


def _megan(state: dict) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == MEGAN)


async def _contained_and_released(services, emulator, run_id: str) -> None:
    """Megan, with a hostile rule name, contained through the queue and then released."""
    seed = copy.deepcopy(DEMO_SEED)
    rule = next(r for r in _megan(seed)["mailbox"]["rules"] if r["id"] == RULE_ID)
    rule["displayName"] = HOSTILE_RULE
    emulator.load_tenant(seed)
    await run_via_queue(services, {"user": MEGAN, "requestId": run_id, "riskLevel": "high",
                                   "reason": HOSTILE_REASON, "source": "graph.riskDetection",
                                   "detectedAt": "2026-11-25T03:12:44Z"})
    run = await services.journal.get_run(run_id)
    assert run.state == "finished", run.reason
    assert not _rule(emulator)["isEnabled"]  # the hostile rule was disabled
    await run_via_queue(services, {"user": MEGAN, "action": "release", "runId": run_id,
                                   "requestedBy": "soc"})
    assert (await services.journal.get_run(run_id)).state == "released"


def _rule(emulator) -> dict:
    return next(r for r in _megan(emulator.state())["mailbox"]["rules"] if r["id"] == RULE_ID)


async def test_case_html_has_timeline_changes_undo_status_and_escapes(services, emulator):
    await _contained_and_released(services, emulator, "case-1")
    assert _rule(emulator)["isEnabled"]  # the release re-enabled it
    case = await load_case(services, "case-1")
    page = case_html(case)

    # the timeline: every journal event of the run, with its kind
    events = await services.journal.events("case-1")
    assert {"run-started", "release-started", "released"} <= {e["kind"] for e in events}
    for event in events:
        assert esc(event["message"]) in page, event["kind"]
        assert f"<td class=\"nw\">{esc(event['kind'])}</td>" in page

    # every change of every step, each with its undo status from the release's record
    results = await services.journal.step_results("case-1")
    recorded = [(name, c) for name in case.report.run.steps
                for c in (results[name].changes if name in results else [])]
    assert len(case.changes) == len(recorded) >= 4
    for row, (name, change) in zip(case.changes, recorded, strict=True):
        assert row.step == name and row.change == reports.describe_change(change)
        assert f"<td>{esc(row.change)}</td>" in page
    undo = {(r.step, r.change): r.undo for r in case.changes}
    rule_row = next(r for r in case.changes if r.step == "disable_malicious_inbox_rules"
                    and HOSTILE_RULE in r.change)
    assert rule_row.undo == "undone" and "re-enabled" in rule_row.detail
    assert (f"<td>{esc(rule_row.change)}</td><td class=\"nw\"><span class=\"good\">undone"
            "</span></td>" in page)
    by_step = {step: word for (step, _), word in undo.items()}
    assert by_step["reset_password"] == "cannot be undone"
    assert by_step["clear_mailbox_forwarding"] == "undone"
    assert by_step["remove_suspicious_auth_methods"] == "cannot be undone"
    assert "<h2>Release</h2>" in page and "Cannot be undone" in page

    # hostile strings (rule name, reason) are text, never markup
    for hostile in (HOSTILE_RULE, HOSTILE_REASON):
        assert hostile not in page
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;Invoices" in page
    assert "<img" not in page and "<b>bold" not in page
    # nothing is loaded from anywhere: no script, no external resource, a CSP forbidding both
    assert not re.search(r"<(script|img|link|iframe|object|embed|base)\b", page, re.I)
    assert not re.search(r"<[^>]*\s(src|href)\s*=", page) and "url(" not in page
    assert "@import" not in page and "default-src 'none'" in page

    # evidence: where, when, and the SHA-256 of the blob exactly as stored
    container, blob = case.report.run.evidence_blob.split("/", 1)
    raw = await (await services.storage.blobs.get_blob_client(container, blob)
                 .download_blob()).readall()
    assert case.evidence_sha256 == hashlib.sha256(raw).hexdigest()
    assert case.evidence_sha256 in page and esc(case.report.run.evidence_blob) in page


async def test_undo_status_before_a_release_and_verification_shown(services, emulator):
    emulator.grant_permissions(LabelForCase.graph_permissions)
    with registered(LabelForCase):
        await run_via_queue(services, {"user": MEGAN, "requestId": "case-2",
                                       "actions": [LabelForCase.name]})
        page = case_html(await load_case(services, "case-2"))
        assert "<span class=\"warn\">not released</span>" in page
        assert "a release would: job title restored to Accounts Payable Lead" in page
        assert "<span class=\"bad\">NOT verified</span>" in page
        assert esc(DIFFERENCE) in page and DIFFERENCE not in page
        data = json.loads(reports.json_text(await reports.load(services, "case-2")))
        step = next(s for s in data["steps"] if s["step"] == LabelForCase.name)
        assert step["verification"]["verified"] is False
        assert "verification" not in data["steps"][0]  # only where a step recorded one

        await run_via_queue(services, {"user": MEGAN, "action": "release", "runId": "case-2"})
        case = await load_case(services, "case-2")
        (row,) = case.changes
        assert (row.undo, row.detail) == ("undone", "job title restored to Accounts Payable Lead")
        assert _megan(emulator.state())["jobTitle"] == "Accounts Payable Lead"


DIFFERENCE = "jobTitle reads <i>back</i> as 'x'"


class LabelForCase(Step):
    """Label the job title (exists only in this test) and record a read-back that found a
    difference, as the runner's verification keeps it in the step's data."""

    name = "label_job_title_for_case"
    graph_permissions = ("User.ReadWrite.All",)
    reversible = "release restores the recorded job title"
    dry_run_description = "would label the job title"

    async def plan(self, ctx: StepContext) -> Plan:
        return Plan(actions=["label the job title"], data={"before": ctx.user.raw.get(
            "jobTitle", "Accounts Payable Lead")})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await ctx.graph.request("PATCH", build_path("/users/{}", ctx.user.id),
                                body={"jobTitle": "Under investigation"})
        return StepResult(step=self.name, status=StepStatus.DONE, summary="labelled",
                          changes=[{"what": "jobTitle", "from": plan.data["before"],
                                    "to": "Under investigation"}],
                          data={"verification": {"verified": False,
                                                 "differences": [DIFFERENCE],
                                                 "note": "read back once"}})

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        items = []
        for change in finished_changes(result):
            async def restore(before: str | None = change.get("from")) -> None:
                await ctx.graph.request("PATCH", build_path("/users/{}", ctx.user_id),
                                        body={"jobTitle": before})
            items.append(Undo("jobTitle", f"job title restored to {change.get('from')}",
                              restore))
        return items


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def _cli_env(monkeypatch, settings, **extra: str) -> None:
    """The CLI's environment: the same storage and emulator as `settings`."""
    for key, value in {
        "AzureWebJobsStorage": settings.storage_connection,
        "RESPONDER_TENANT_ID": settings.tenant_id,
        "GRAPH_BASE_URL": settings.graph_base_url,
        "EXCHANGE_BASE_URL": settings.exchange_base_url,
        "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": settings.static_token,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
        "RESPONDER_JOURNAL_TABLE": settings.journal_table,
        "RESPONDER_EVIDENCE_CONTAINER": settings.evidence_container, **extra,
    }.items():
        monkeypatch.setenv(key, value)


@needs_chromium
@pytest.mark.timeout(240)
async def test_pdf_from_the_cli_and_the_endpoint(services, emulator, settings, monkeypatch,
                                                 tmp_path, capsys):
    await _contained_and_released(services, emulator, "case-3")

    _cli_env(monkeypatch, settings, RESPONDER_PDF_TIMEOUT_SECONDS=str(PDF_LIMIT))
    out = tmp_path / "case.pdf"
    assert await main_async(["report", "case-3", "--pdf", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    text = _pdf_text(data)
    assert MEGAN in text and "Timeline" in text and "undone" in text
    assert "cannot be undone" in text and "case-3" in text
    assert await main_async(["report", "nope", "--pdf", str(tmp_path / "x.pdf")]) == 1
    assert not (tmp_path / "x.pdf").exists()

    resp = await _report_http("case-3", "pdf")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="case-case-3.pdf"'
    assert MEGAN in _pdf_text(resp.get_body())
    case = await _report_http("case-3", "case")
    assert case.status_code == 200 and case.headers["Content-Type"].startswith("text/html")
    assert "Changes and undo status" in case.get_body().decode()
    assert (await _report_http("no-such-run", "pdf")).status_code == 404


async def test_pdf_endpoint_is_501_without_chromium_and_needs_the_function_key(
        azurite, emulator, tmp_path, monkeypatch, capsys):
    import function_app
    from devtools.localhost import app_functions

    fn = next(f for f in app_functions(function_app.app)
              if f.get_function_name() == "run_report")
    assert str(fn.get_bindings()[0].get_dict_repr()["authLevel"].value) == "function"

    nowhere = str(tmp_path / "no" / "chromium")
    settings = make_settings(azurite, emulator, RESPONDER_CHROMIUM_PATH=nowhere)
    svc = build_services(settings)
    runtime.use_services(svc)
    try:
        await run_via_queue(svc, {"user": MEGAN, "requestId": "case-4",
                                  "actions": ["revoke_sessions"]})
        resp = await _report_http("case-4", "pdf")
        assert resp.status_code == 501
        body = resp.get_body().decode()
        assert "RESPONDER_CHROMIUM_PATH" in body and nowhere in body
        assert (await _report_http("case-4", "case")).status_code == 200  # HTML still works
        assert (await _report_http("case-4", "docx")).status_code == 400
        with pytest.raises(case_pdf.PdfUnavailable, match="RESPONDER_CHROMIUM_PATH"):
            await case_pdf.case_pdf(svc, "case-4")

        # the CLI: the case page prints without a browser; --pdf says why it cannot (exit 2)
        _cli_env(monkeypatch, settings, RESPONDER_CHROMIUM_PATH=nowhere)
        capsys.readouterr()
        assert await main_async(["report", "case-4", "--format", "case"]) == 0
        assert "<h2>Changes and undo status</h2>" in capsys.readouterr().out
        assert await main_async(["report", "case-4", "--pdf", str(tmp_path / "c.pdf")]) == 2
        assert "RESPONDER_CHROMIUM_PATH" in capsys.readouterr().err
        assert not (tmp_path / "c.pdf").exists()
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_a_browser_that_hangs_is_killed_at_the_limit(tmp_path):
    """The bound holds: a 'browser' that never finishes is killed, with a clear error."""
    fake = tmp_path / "slow-browser"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    with pytest.raises(case_pdf.PdfFailed, match="within 1 s"):
        await case_pdf.html_to_pdf("<p>x</p>", chromium=str(fake), limit_seconds=1)


async def _report_http(run_id: str, fmt: str) -> func.HttpResponse:
    from tests.safety.conftest import app_function

    req = func.HttpRequest("GET", f"http://localhost/api/runs/{run_id}/report",
                           params={"format": fmt}, body=b"", route_params={"runId": run_id})
    return await app_function("run_report")(req)


def test_pdf_filename_is_safe():
    assert case_pdf.pdf_filename('a"b/../c\r\nd') == "case-a_b_.._c__d.pdf"
    assert Path(case_pdf.pdf_filename("")).name == "case-run.pdf"
