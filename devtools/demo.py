"""The demo: contain a compromised account end to end on this machine, no Azure account.

Starts Azurite and the tenant emulator (seeded with a compromised user), puts a
remediation request on the queue exactly as an alert would, runs the queue-triggered
function through the local host, prints the run report and what changed in the tenant,
writes the run's case report to demo-out/ (HTML, and PDF when Chromium is installed), and
exits 0 when the run finished.

    python -m devtools.demo [--user UPN] [--dry-run] [--json] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TENANT = ROOT / "devtools" / "tenants" / "demo.json"
POLICY = ROOT / "devtools" / "demo-policy.json"
OUT = ROOT / "demo-out"
"""Where the demo writes the case report of its run (HTML, and PDF when Chromium is there)."""
HARD_CASES = (
    # (user, steps, what it shows): accounts this tenant cannot fully contain on its own
    ("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", ["reset_password", "revoke_sessions"],
     "B2B guest: password and sessions live in the home tenant"),
    ("diego@contoso.com", ["reset_password", "disable_account", "revoke_sessions"],
     "synced user: the cloud refuses password and sign-in writes"),
)


def _user(state: dict[str, Any], upn: str) -> dict[str, Any]:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == upn.lower())


def tenant_changes(before: dict[str, Any], after: dict[str, Any], upn: str) -> list[str]:
    """A person-readable list of what differs for one user between two emulator dumps."""
    b, a = _user(before, upn), _user(after, upn)
    out: list[str] = []
    if a.get("passwordChangeCount", 0) != b.get("passwordChangeCount", 0):
        out.append("password: reset to a random value nobody knows (not shown anywhere)")
    if a.get("sessionsRevokedCount", 0) != b.get("sessionsRevokedCount", 0):
        out.append("sign-in sessions: revoked")
    if a.get("accountEnabled") != b.get("accountEnabled"):
        out.append(f"account enabled: {b.get('accountEnabled')} -> {a.get('accountEnabled')}")
    if a.get("perUserMfaState") != b.get("perUserMfaState"):
        out.append(f"per-user MFA: {b.get('perUserMfaState')} -> {a.get('perUserMfaState')}")
    groups = {g["id"]: g["displayName"] for g in after.get("groups", [])}
    for gid in set(a.get("memberOf", [])) - set(b.get("memberOf", [])):
        out.append(f"added to group: {groups.get(gid, gid)}")
    gone = {m["id"] for m in b.get("authMethods", [])} - {m["id"] for m in a.get("authMethods", [])}
    for m in b.get("authMethods", []):
        if m["id"] in gone:
            name = m.get("displayName") or (
                f"{m.get('phoneType')} ...{str(m.get('phoneNumber', ''))[-4:]}"
                if m.get("phoneType") else "")
            when = m.get("createdDateTime") or "(no createdDateTime: dated by the audit log)"
            out.append(f"MFA method removed: {m.get('type') or m.get('@odata.type')} "
                       f"'{name}' registered {when}")
    rules_b = {r["id"]: r for r in (b.get("mailbox") or {}).get("rules", [])}
    for r in (a.get("mailbox") or {}).get("rules", []):
        old = rules_b.get(r["id"], {})
        if old.get("isEnabled", True) != r.get("isEnabled", True):
            hidden = " (hidden rule)" if r.get("hidden") else ""
            out.append(f"inbox rule '{r.get('displayName')}'{hidden}: disabled (kept for restore)")
        elif r.get("isEnabled", True) and (r.get("actions") or {}).get("forwardTo"):
            to = ", ".join(str((x.get("emailAddress") or {}).get("address"))
                           for x in r["actions"]["forwardTo"])
            out.append(f"inbox rule '{r.get('displayName')}': left enabled (forwards to {to}, "
                       "inside the organisation)")
    mb_b, mb_a = b.get("mailbox") or {}, a.get("mailbox") or {}
    if mb_b.get("forwardingSmtpAddress") != mb_a.get("forwardingSmtpAddress"):
        out.append(f"mailbox forwarding: {mb_b.get('forwardingSmtpAddress')} -> "
                   f"{mb_a.get('forwardingSmtpAddress')}")
    if mb_b.get("auditEnabled") != mb_a.get("auditEnabled"):
        out.append(f"mailbox auditing: {mb_b.get('auditEnabled')} -> {mb_a.get('auditEnabled')}")
    risky_b = {r["id"]: r for r in before.get("riskyUsers", [])}
    for r in after.get("riskyUsers", []):
        if r["id"] == a["id"] and risky_b.get(r["id"], {}).get("riskState") != r["riskState"]:
            out.append(f"risk state: {risky_b.get(r['id'], {}).get('riskState')} -> "
                       f"{r['riskState']}")
    blocked_b = {x["SenderAddress"].lower() for x in before.get("blockedSenders", [])}
    blocked_a = {x["SenderAddress"].lower() for x in after.get("blockedSenders", [])}
    for addr in blocked_b - blocked_a:
        out.append(f"restricted senders: {addr} released")
    return out


async def print_hard_cases(services: Any, requests: list[Any], dry_run: bool) -> None:
    """What the responder could and could not do for a guest and a synced user."""
    from shared.playbook.runner import run_id_for

    if not requests:
        return
    print("\naccounts this tenant cannot fully contain (reported, not pretended):")
    for request in requests:
        run_id = run_id_for(request, dry_run)
        results = await services.journal.step_results(run_id)
        print(f"  {request.user} - {request.reason}")
        for name in request.actions or []:
            r = results.get(name)
            if r is not None:
                print(f"    - {name}: {r.status.value}: {r.summary}")


async def print_posture(services: Any) -> None:
    """The tenant's posture against account compromise (Secure Score sweep, dry run)."""
    from shared.sweeps import run_sweep
    from shared.sweeps.secure_score import posture_text

    result = await run_sweep(services, "secure_score", dry_run=True)
    print("\nposture (Secure Score controls that bear on account compromise):")
    print(posture_text(result) if result.status != "skipped" else result.text())


async def write_case_report(services: Any, run_id: str, out_dir: Path) -> list[Path]:
    """The run's case report into `out_dir`: the printable HTML always, the PDF when
    Chromium is there to print it (otherwise the reason is printed, and the demo goes on)."""
    from shared.playbook.case_pdf import PdfFailed, PdfUnavailable, find_chromium, html_to_pdf
    from shared.playbook.case_report import case_html, load_case

    case = await load_case(services, run_id)
    if case is None:
        return []
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    page = case_html(case)
    html_path = out_dir / f"case-{run_id}.html"
    await asyncio.to_thread(html_path.write_text, page, encoding="utf-8")
    written = [html_path]
    try:
        pdf = await html_to_pdf(page, chromium=find_chromium(services.settings),
                                limit_seconds=services.settings.pdf_timeout_seconds)
    except (PdfUnavailable, PdfFailed) as exc:
        print(f"case report: no PDF ({exc})", file=sys.stderr)
        return written
    pdf_path = out_dir / f"case-{run_id}.pdf"
    await asyncio.to_thread(pdf_path.write_bytes, pdf)
    return [*written, pdf_path]


async def run_demo(user: str, dry_run: bool, as_json: bool, posture: bool = True,
                   out_dir: Path = OUT) -> int:
    import function_app
    from devtools.azurite import start_azurite
    from devtools.emulator import EmulatorServer, load_tenant
    from devtools.localhost import LocalHost
    from functions import runtime
    from shared.models import RemediationRequest
    from shared.playbook.reports import run_json_text, text_table
    from shared.services import Services
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential

    token = secrets.token_urlsafe(24)  # a fresh local token; the emulator accepts only it
    started = time.monotonic()
    print("starting Azurite and the tenant emulator ...", file=sys.stderr)
    with start_azurite() as azurite, \
            EmulatorServer(load_tenant(TENANT), token=token, seed=7) as emulator:
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
            "GRAPH_BASE_URL": emulator.base_url, "EXCHANGE_BASE_URL": emulator.base_url,
            "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": token,
            "REMEDIATION_QUEUE": "remediation-requests", "RESPONDER_POLICY": str(POLICY),
        }
        settings = Settings.from_env(env)
        services = Services.create(settings, credential=StaticTokenCredential(token))
        runtime.use_services(services)
        try:
            before = emulator.state()
            request = RemediationRequest.model_validate({
                "user": user, "requestId": f"demo-{int(time.time())}", "riskLevel": "high",
                "reason": "Entra ID Protection: unfamiliar sign-in properties, high risk",
                # the seeded detection's time, as an alert carries it: the MFA-method window
                # is measured from it
                "detectedAt": "2026-11-25T03:12:44Z",
                "source": "demo", "requestedBy": "devtools.demo", "dryRun": dry_run,
            })
            await services.storage.enqueue(settings.remediation_queue, request.to_message())
            extra = [] if as_json else [RemediationRequest.model_validate({
                "user": who, "requestId": f"{request.request_id}-{i}", "actions": steps,
                "reason": why, "source": "demo", "requestedBy": "devtools.demo",
                "dryRun": dry_run}) for i, (who, steps, why) in enumerate(HARD_CASES)
                if who.lower() != user.lower()]
            for other in extra:
                await services.storage.enqueue(settings.remediation_queue, other.to_message())
            print(f"queued a remediation request for {user}"
                  + (f" (and {len(extra)} short ones for a guest and a synced user)"
                     if extra else "") + "; running the queue worker ...", file=sys.stderr)
            host = LocalHost(function_app.app, services.storage, env, visibility_timeout=1)
            stats = await host.run_until_idle(120)
            from shared.playbook.runner import run_id_for

            run_id = run_id_for(request, dry_run or settings.dry_run)
            run = await services.journal.get_run(run_id)
            if run is None:
                print("the run was not recorded", file=sys.stderr)
                return 1
            results = await services.journal.step_results(run_id)
            after = emulator.state()
            if as_json:
                print(run_json_text(run, results))
            else:
                print()
                print(text_table(run, results))
                print("\nwhat changed in the tenant:")
                changes = tenant_changes(before, after, run.upn or user)
                for line in changes or ["nothing (dry run)" if dry_run else "nothing"]:
                    print(f"  - {line}")
                writes = [e for e in emulator.requests() if e.get("write")]
                print(f"\n{len(emulator.requests())} Graph/Exchange calls, {len(writes)} "
                      f"writes; {stats.delivered} queue deliveries; "
                      f"{time.monotonic() - started:.1f} s in all")
                await print_hard_cases(services, extra, dry_run or settings.dry_run)
                if posture:
                    await print_posture(services)
            for path in await write_case_report(services, run_id, out_dir):
                # on stderr with --json, so that stdout stays one JSON document
                print(f"case report: {path}", file=sys.stderr if as_json else sys.stdout)
            return 0 if run.state == "finished" else 1
        finally:
            runtime.use_services(None)
            await services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", default="megan@contoso.com")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-posture", action="store_true",
                        help="skip the Secure Score posture report after the run")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="folder for the run's case report (default: demo-out/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run_demo(args.user, args.dry_run, args.json, not args.no_posture,
                                args.out))


if __name__ == "__main__":
    raise SystemExit(main())
