"""Command line: `python -m shared.cli <command>` against the configured tenant.

The same app settings as the Functions app (environment variables) choose the tenant,
the storage and the credential: point them at the emulator to try things locally.
Exit codes: 0 success, 1 a step failed or the run did not finish, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from shared.errors import ResponderError, ValidationError
from shared.logs import configure_logging
from shared.models import RemediationRequest
from shared.services import Services
from shared.settings import Settings, SettingsError, tenant_guid
from shared.state.journal import safe_key
from shared.state.tenants import TenantRecord
from shared.sweeps.catalogue import SWEEP_NAMES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared.cli",
                                description="Compromised-account responder")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("remediate", help="run a playbook for one user now")
    r.add_argument("user", help="object id or UPN")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--playbook", help="a playbook name from the policy")
    g.add_argument("--actions", help="comma-separated step names instead of a playbook")
    r.add_argument("--risk-level", choices=("low", "medium", "high"))
    r.add_argument("--dry-run", action="store_true", help="plan and report, write nothing")
    r.add_argument("--request-id", help="idempotency key (a repeated id does not run again)")
    r.add_argument("--reason", default="manual remediation from the command line")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rep = sub.add_parser("report", help="print the report of a run")
    rep.add_argument("run_id")
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--format", choices=("text", "md", "html", "json", "case"),
                     default="text", help="md for the terminal, html for a browser, json for "
                                          "tools, case for the printable case report (HTML)")
    rep.add_argument("--pdf", metavar="FILE",
                     help="write the case report as PDF to FILE (needs Chromium: "
                          "RESPONDER_CHROMIUM_PATH, or chromium on PATH)")
    rep.add_argument("--tenant", help="the tenant of the run: a registered tenant's id or "
                                      "domain (default: RESPONDER_TENANT_ID)")
    rel = sub.add_parser("release", help="undo a run after a false positive "
                                         "(docs/safety.md)")
    rel.add_argument("run_id", nargs="?", help="the run to undo (or give --user)")
    rel.add_argument("--user", help="object id or UPN: undo that user's most recent "
                                    "unreleased run")
    rel.add_argument("--all", action="store_true", help="with --user: every unreleased run")
    rel.add_argument("--dry-run", action="store_true", help="show what would be undone")
    rel.add_argument("--reason", default="false positive (command line)")
    rel.add_argument("--tenant", help="the tenant of the run or user: a registered tenant's "
                                      "id or domain (default: RESPONDER_TENANT_ID)")
    sw = sub.add_parser("sweep", help="run one timer sweep now (docs/sweeps.md)")
    sw.add_argument("name", help=", ".join(SWEEP_NAMES))
    sw.add_argument("--dry-run", action="store_true", help="report, change nothing")
    sw.add_argument("--budget", type=int, help="items handled this run (default: policy)")
    sw.add_argument("--json", action="store_true")
    pos = sub.add_parser("posture", help="Secure Score posture against account compromise")
    pos.add_argument("--dry-run", action="store_true", help="do not record the history")
    pos.add_argument("--json", action="store_true")
    pf = sub.add_parser("preflight", help="check, read-only, that this tenant can run the "
                                          "responder (permissions, roles, policy, licences)")
    pf.add_argument("--json", action="store_true", help="print JSON for automation")
    pf.add_argument("--tenant", help="a registered tenant's id or domain (default: "
                                     "RESPONDER_TENANT_ID)")
    _tenant_parser(sub)
    rp = sub.add_parser("replay", help="feed a saved alert payload through intake "
                                      "(docs/intake.md)")
    rp.add_argument("file", nargs="?",
                    help="a JSON payload file (or a tests/fixtures/alerts fixture)")
    rp.add_argument("--dead-letter", action="store_true",
                    help="instead of a file: take in again every Event Hub event kept after "
                         "its last retry, and remove each one that went through")
    rp.add_argument("--dry-run", action="store_true",
                    help="show the user(s) and playbook it would produce; enqueue nothing")
    rp.add_argument("--json", action="store_true")
    return p


def _tenant_parser(sub: Any) -> None:
    t = sub.add_parser("tenant", help="the tenants this deployment protects "
                                      "(docs/multi-tenant.md)")
    ts = t.add_subparsers(dest="tenant_command", required=True)
    add = ts.add_parser("add", help="register a tenant (or update its row)")
    add.add_argument("--tenant-id", required=True, help="the tenant's id (a GUID)")
    add.add_argument("--name", default="", help="display name")
    add.add_argument("--domain", action="append", default=[],
                     help="an accepted domain (repeatable): routes alerts naming a UPN only")
    add.add_argument("--policy", help="a policy file under the app (policies/msp.json) or an "
                                      "inline JSON policy; default: the app's policy")
    add.add_argument("--exclude", action="append", default=[],
                     help="a UPN or object id never touched (repeatable)")
    add.add_argument("--notify", action="append", default=[],
                     help="an https webhook URL or a mailbox address (repeatable)")
    add.add_argument("--feature", action="append", default=[],
                     help="an enabled step or sweep name (repeatable; none: all)")
    add.add_argument("--disabled", action="store_true", help="register it disabled")
    ls = ts.add_parser("list", help="list registered tenants")
    ls.add_argument("--json", action="store_true")
    show = ts.add_parser("show", help="print one tenant's row")
    show.add_argument("tenant_id")
    rm = ts.add_parser("remove", help="stop serving a tenant (its journal and evidence stay)")
    rm.add_argument("tenant_id")


def consent_link(tenant_id: str, app_client_id: str) -> str:
    """The tenant-wide admin consent URL of the multi-tenant app: an administrator of the
    tenant opens it once (https://learn.microsoft.com/en-us/entra/identity/enterprise-apps/grant-admin-consent)."""
    return (f"https://login.microsoftonline.com/{tenant_id}/adminconsent"
            f"?client_id={app_client_id}")


def _tenant_record(args: argparse.Namespace, services: Services) -> TenantRecord:
    from pydantic import ValidationError as PydanticValidationError

    from shared.playbook.catalogue import STEP_NAMES, check_policy
    from shared.tenancy import tenant_policy

    policy: Any = args.policy
    if policy and policy.lstrip().startswith("{"):
        try:
            policy = json.loads(policy)
        except ValueError as exc:
            raise ValidationError(f"--policy is not valid JSON: {exc}") from exc
    try:
        record = TenantRecord.model_validate({
            "tenantId": args.tenant_id, "displayName": args.name, "domains": args.domain,
            "policy": policy, "exclusions": args.exclude, "notify": args.notify,
            "features": args.feature, "enabled": not args.disabled})
    except PydanticValidationError as exc:
        raise ValidationError("; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
                                        for e in exc.errors())) from exc
    unknown = [f for f in record.features if f not in STEP_NAMES and f not in SWEEP_NAMES]
    if unknown:
        raise ValidationError(f"unknown feature(s) {unknown}: give step or sweep names")
    check_policy(tenant_policy(services.policy, record))  # refused now, not at its first run
    return record


async def _tenant(args: argparse.Namespace, services: Services) -> int:
    from shared.state.tenants import TenantRegistry

    registry = TenantRegistry(services.storage, services.settings.tenants_table)
    command = args.tenant_command
    if command == "add":
        record = await registry.add(_tenant_record(args, services))
        print(f"tenant {record.tenant_id} ({record.display_name or 'no name'}) registered"
              f"{'' if record.enabled else ' (disabled)'}")
        if record.tenant_id == tenant_guid(services.settings.tenant_id):
            print("note: this is RESPONDER_TENANT_ID, the default tenant")
        app = services.settings.app_client_id
        if app:
            print("1. an administrator of the tenant grants the app's permissions once:")
            print(f"   {consent_link(record.tenant_id, app)}")
        else:
            print("1. set RESPONDER_APP_CLIENT_ID (the multi-tenant app) to get the tenant's "
                  "admin-consent link")
        print(f"2. then check it: python -m shared.cli preflight --tenant {record.tenant_id}")
        return 0
    if command == "list":
        records = await registry.list()
        if args.json:
            print(json.dumps([r.model_dump(mode="json", by_alias=True) for r in records],
                             indent=2))
            return 0
        for r in records:
            state = "enabled" if r.enabled else "disabled"
            print(f"{r.tenant_id}  {state:<8}  consent {r.consent_status:<9}  "
                  f"{r.display_name}  {' '.join(r.domains)}")
        print(f"({len(records)} registered tenant(s); default: "
              f"{services.settings.tenant_id})")
        return 0
    found = await registry.get(args.tenant_id)
    if found is None:
        print(f"tenant {args.tenant_id!r} is not registered", file=sys.stderr)
        return 1
    if command == "show":
        doc = found.model_dump(mode="json", by_alias=True)
        if services.settings.app_client_id:
            doc["adminConsentUrl"] = consent_link(found.tenant_id,
                                                  services.settings.app_client_id)
        print(json.dumps(doc, indent=2))
        return 0
    await registry.remove(found.tenant_id)
    table = services.settings.for_tenant(found.tenant_id)
    print(f"tenant {found.tenant_id} removed: no message or alert for it runs any more. Its "
          f"journal (table {table.journal_table}) and evidence (container "
          f"{table.evidence_container}) are kept.")
    return 0


async def _remediate(args: argparse.Namespace, services: Services) -> int:
    from shared.playbook import reports
    from shared.playbook.runner import run_request
    from shared.playbook.worker import parse_request

    fields = {
        "user": args.user, "playbook": args.playbook,
        "actions": [a.strip() for a in args.actions.split(",")] if args.actions else None,
        "riskLevel": args.risk_level, "dryRun": args.dry_run, "requestId": args.request_id,
        "reason": args.reason, "requestedBy": "cli", "source": "cli",
    }
    # The same validation as a queue message: a typo gives a clear error, not a traceback.
    request = parse_request(json.dumps({k: v for k, v in fields.items() if v is not None}))
    outcome = await run_request(services, request)
    print(reports.run_json_text(outcome.run, outcome.results) if args.json
          else reports.text_table(outcome.run, outcome.results))
    return 0 if outcome.run.state == "finished" and not outcome.failed_steps else 1


@asynccontextmanager
async def _tenant_services(tenant: str | None, services: Services) -> AsyncIterator[Services]:
    """The Services acting for `--tenant`: the default tenant's are `services` themselves
    (no lookup); another tenant's come from the registry (UnknownTenant when it is not
    served), so a run id is looked up in that tenant's journal only."""
    if not tenant or services.settings.is_default_tenant(tenant):
        yield services
        return
    from shared.playbook.catalogue import check_policy
    from shared.tenancy import TenantHub
    from shared.tenant.credentials import credential_factory

    hub = TenantHub(services, credential_factory(services.settings), check_policy=check_policy)
    try:
        yield await hub.services_for(tenant)
    finally:
        await hub.close()


async def _report(args: argparse.Namespace, services: Services) -> int:
    async with _tenant_services(args.tenant, services) as acting:
        return await _report_for(args, acting)


async def _report_for(args: argparse.Namespace, services: Services) -> int:
    if args.pdf:
        return await _report_pdf(args, services)
    if args.format == "case":
        from shared.playbook.case_report import case_html, load_case

        case = await load_case(services, args.run_id)
        if case is None:
            print(f"no run {args.run_id!r}", file=sys.stderr)
            return 1
        print(case_html(case))
        return 0
    if args.format != "text" or args.json:
        from shared.playbook import reports

        report = await reports.load(services, args.run_id)
        if report is None:
            print(f"no run {args.run_id!r}", file=sys.stderr)
            return 1
        print(reports.render(report, "json" if args.json else args.format)[0])
        return 0
    return await _report_table(args, services)


async def _report_pdf(args: argparse.Namespace, services: Services) -> int:
    """The case report printed to a PDF file by headless Chromium (docs/safety.md)."""
    from pathlib import Path

    from shared.playbook.case_pdf import PdfFailed, PdfUnavailable, case_pdf

    try:
        data = await case_pdf(services, args.run_id)
    except PdfUnavailable as exc:
        print(f"pdf: {exc}", file=sys.stderr)
        return 2
    except PdfFailed as exc:
        print(f"pdf: {exc}", file=sys.stderr)
        return 1
    if data is None:
        print(f"no run {args.run_id!r}", file=sys.stderr)
        return 1
    await asyncio.to_thread(Path(args.pdf).write_bytes, data)
    print(f"case report written to {args.pdf} ({len(data)} bytes)")
    return 0


async def _release(args: argparse.Namespace, services: Services) -> int:
    from shared.playbook.release import release_run

    if bool(args.run_id) == bool(args.user) or (args.all and not args.user):
        print("release: give a run id, or --user (with --all for every run)", file=sys.stderr)
        return 2
    fields = {"user": args.user or "release", "action": "release", "runId": args.run_id,
              "all": True if args.all else None, "dryRun": args.dry_run,
              "reason": args.reason, "requestedBy": "cli", "source": "cli"}
    request = RemediationRequest.model_validate({k: v for k, v in fields.items()
                                                 if v is not None})
    async with _tenant_services(args.tenant, services) as acting:
        first = await release_run(acting, request)
    failed = []
    for outcome in [first, *first.others]:
        title = "would undo" if args.dry_run else ("already released" if outcome.already_done
                                                   else f"release of {outcome.run.run_id}")
        print(f"{title} (user {outcome.run.upn or outcome.run.user}):")
        for key, result in outcome.results.items():
            print(f"  {result.status.value:<14} {key}: {result.summary}")
        failed += [k for k, r in outcome.results.items() if r.status.value == "failed"]
    return 1 if failed else 0


async def _report_table(args: argparse.Namespace, services: Services) -> int:
    from shared.playbook import reports

    run = await services.journal.get_run(safe_key(args.run_id))
    if run is None:
        print(f"no run {args.run_id!r}", file=sys.stderr)
        return 1
    results = await services.journal.step_results(run.run_id)
    print(reports.run_json_text(run, results) if args.json
          else reports.text_table(run, results))
    return 0


async def _sweep(args: argparse.Namespace, services: Services) -> int:
    from shared.sweeps import get_sweep, run_sweep

    try:
        get_sweep(args.name)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    result = await run_sweep(services, args.name, dry_run=args.dry_run, budget=args.budget)
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else result.text())
    return 1 if result.status == "failed" else 0


async def _posture(args: argparse.Namespace, services: Services) -> int:
    from shared.sweeps import run_sweep
    from shared.sweeps.secure_score import posture_text

    result = await run_sweep(services, "secure_score", dry_run=args.dry_run)
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json
          else posture_text(result) if result.status != "skipped" else result.text())
    return 1 if result.status == "failed" else 0


async def _replay(args: argparse.Namespace, services: Services) -> int:
    from shared.intake.pipeline import intake_payload, load_payload_file, outcome_json, outcome_text
    from shared.intake.sources import AlertError

    if args.dead_letter == bool(args.file):
        print("replay takes a payload file or --dead-letter (one of them)", file=sys.stderr)
        return 2
    if args.dead_letter:
        return await _replay_dead_letters(args, services)
    from shared.playbook.catalogue import check_policy
    from shared.tenancy import TenantHub
    from shared.tenant.credentials import credential_factory

    # a replayed payload is routed like a live one: each signal to the tenant it names
    hub = TenantHub(services, credential_factory(services.settings), check_policy=check_policy)
    try:
        payload = load_payload_file(args.file)
        outcome = await intake_payload(services, payload, route="replay", dry_run=args.dry_run,
                                       hub=hub)
    except (OSError, ValueError) as exc:  # unreadable file, bad JSON, AlertError
        kind = type(exc).__name__ if isinstance(exc, AlertError) else "cannot read payload"
        print(f"{kind}: {exc}", file=sys.stderr)
        return 2
    finally:
        await hub.close()
    print(outcome_json(outcome) if args.json else outcome_text(outcome))
    return 1 if outcome.errors else 0


async def _replay_dead_letters(args: argparse.Namespace, services: Services) -> int:
    """Exit 0 when every kept event went through (or would), 1 when some are still kept."""
    from shared.intake import deadletter

    items = await deadletter.replay(services, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"items": [i.public() for i in items]}, indent=2, default=str))
    else:
        for item in items:
            summary = ", ".join(f"{k} {v}" for k, v in
                                (item.outcome.summary() if item.outcome else {}).items() if v)
            print(f"{item.result:<14} {item.name} {summary or ''} {item.reason}".rstrip())
        print(f"({len(items)} dead-letter item(s))")
    ok = {"replayed", "would-replay"}
    return 0 if all(i.result in ok for i in items) else 1


async def _preflight(args: argparse.Namespace, services: Services) -> int:
    """Exit 0 when every enabled feature can run (warnings allowed), 1 otherwise."""
    from shared.playbook.catalogue import check_policy
    from shared.preflight import run_preflight
    from shared.tenancy import TenantHub
    from shared.tenant.credentials import credential_factory

    if args.tenant is None or services.settings.is_default_tenant(args.tenant):
        report = await run_preflight(services)
    else:
        hub = TenantHub(services, credential_factory(services.settings),
                        check_policy=check_policy)
        try:
            report = await run_preflight(await hub.services_for(args.tenant))
        finally:
            await hub.close()
    print(report.json_text() if args.json else report.text())
    return report.exit_code


COMMANDS = {"remediate": _remediate, "report": _report, "sweep": _sweep, "posture": _posture,
            "replay": _replay, "release": _release, "preflight": _preflight,
            "tenant": _tenant}


async def main_async(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    services = Services.create(settings)
    try:
        return await COMMANDS[args.command](args, services)
    except ResponderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if exc.retryable else 2
    finally:
        await services.close()


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return asyncio.run(main_async(argv))


if __name__ == "__main__":
    raise SystemExit(main())
