"""Command line: `python -m shared.cli <command>` against the configured tenant.

The same app settings as the Functions app (environment variables) choose the tenant,
the storage and the credential: point them at the emulator to try things locally.
Exit codes: 0 success, 1 a step failed or the run did not finish, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from shared.errors import ResponderError
from shared.journal import safe_key
from shared.logs import configure_logging
from shared.models import RemediationRequest
from shared.report import json_text, text_table
from shared.services import Services
from shared.settings import Settings, SettingsError


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
    return p


async def _remediate(args: argparse.Namespace, services: Services) -> int:
    from shared.playbook.runner import run_request

    request = RemediationRequest.model_validate({
        "user": args.user, "playbook": args.playbook,
        "actions": args.actions.split(",") if args.actions else None,
        "riskLevel": args.risk_level, "dryRun": args.dry_run, "requestId": args.request_id,
        "reason": args.reason, "requestedBy": "cli", "source": "cli",
    })
    outcome = await run_request(services, request)
    print(json_text(outcome.run, outcome.results) if args.json
          else text_table(outcome.run, outcome.results))
    return 0 if outcome.run.state == "finished" and not outcome.failed_steps else 1


async def _report(args: argparse.Namespace, services: Services) -> int:
    run = await services.journal.get_run(safe_key(args.run_id))
    if run is None:
        print(f"no run {args.run_id!r}", file=sys.stderr)
        return 1
    results = await services.journal.step_results(run.run_id)
    print(json_text(run, results) if args.json else text_table(run, results))
    return 0


COMMANDS = {"remediate": _remediate, "report": _report}


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
