"""One Functions instance of the storm: its own process, Services and local host.

Functions scales out by adding instances (processes on other machines), each with its own
aggregators and connection pools; a process per instance models that and lets the
benchmark use both cores. The instance polls the queue until the stop file appears and
writes its counters (and peak memory) to its status file every half second.

    python -m bench.worker STATUS_FILE STOP_FILE   (app settings in the environment)
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUDGET_COUNTERS = ("reservations", "races", "fallbacks", "late", "stale", "resets", "further")
"""The shared Identity Protection budget's counters each instance reports."""


async def serve(status: Path, stop: Path) -> None:
    from bench.phase import peak_rss_mb, quiet_logging

    quiet_logging()
    import function_app
    from bench.scenario import TOKEN, storm_policy
    from devtools.localhost import LocalHost
    from functions import runtime
    from shared.policy import parse_policy
    from shared.services import Services
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential

    settings = Settings.from_env()
    ops, hooks = storage_counters()
    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN),
                          policy=parse_policy(storm_policy()), storage_hooks=hooks)
    runtime.use_services(svc)
    await svc.journal.ensure()
    host = LocalHost(function_app.app, svc.storage, dict(os.environ))
    ops_at_start = dict(ops)
    cpu_at_start = _cpu_seconds()

    def write(final: bool = False) -> None:
        doc = {**vars(host.stats), "in_flight": len(host._in_flight), "final": final,
               "peak_rss_mb": round(peak_rss_mb(), 1), "confirm_calls": svc.confirm.calls,
               "graph_retry": vars(svc.graph.stats), "pid": os.getpid(),
               "storage_ops": {k: ops[k] - ops_at_start[k] for k in ops},
               "cpu_seconds": round(_cpu_seconds() - cpu_at_start, 3),
               "identity_budget": {k: getattr(svc.identity_budget, k, 0) for k in
                                   BUDGET_COUNTERS}}
        write_status(status, doc)

    try:
        await poll_until_stopped(host, stop, write)
    finally:
        runtime.use_services(None)
        await svc.close()


def storage_counters() -> tuple[dict[str, int], dict[str, Callable[[Any], None]]]:
    """Storage requests by service, and the Services hooks that count them."""
    ops = {"queue": 0, "table": 0, "blob": 0}

    def counter(service: str) -> Callable[[Any], None]:
        def hook(_request: Any) -> None:
            ops[service] += 1
        return hook

    return ops, {k: counter(k) for k in ops}


def write_status(status: Path, doc: dict[str, Any]) -> None:
    """Replace the status file at once (the benchmark reads it while this runs)."""
    tmp = status.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
    tmp.replace(status)


async def poll_until_stopped(host: Any, stop: Path, write: Callable[..., None]) -> None:
    """Deliver messages until the stop file appears, writing the status every half second
    and once more (final) after the host stopped."""
    last_write = 0.0
    while not stop.exists():  # noqa: ASYNC240 - a cheap stat, twice a second at most
        started = await host.poll_once()
        now = time.monotonic()
        if now - last_write > 0.5:
            write()
            last_write = now
        await asyncio.sleep(0.01 if started else 0.05)
    await host.kill()
    write(final=True)


def _cpu_seconds() -> float:
    """User + system CPU of this process (the work the instance did)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    asyncio.run(serve(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
