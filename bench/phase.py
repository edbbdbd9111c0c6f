"""One storm phase, in its own process (clean peak memory, clean event loop):
N detections -> the HTTP intake -> the queue (Azurite) -> K local hosts -> the emulator.

The alerts are POSTed at once (as N webhooks would arrive) through `risk_alert_http` with real
`func.HttpRequest` objects; the hosts are already polling, as a warm Functions app would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func

from bench import measure
from bench.emulator_proc import EmulatorProcess
from bench.scenario import (
    GRAPH_LATENCY_MS,
    OUT,
    ROOT,
    TOKEN,
    detections,
    emulator_config,
    storm_env,
    storm_limit_seconds,
    storm_policy,
    storm_tenant,
    storm_users,
)
from bench.worker import BUDGET_COUNTERS

ALERTS_PER_POST = 50
TERMINAL = {"finished", "failed", "refused", "released", "poisoned", "waiting_approval"}


def quiet_logging() -> None:
    """WARNING and up to a file: a storm logs every step, and stderr is for the table."""
    OUT.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=str(OUT / "bench.log"), level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def run_storm(n: int, *, instances: int, storage: str, tag: str,
                    limit_seconds: float | None = None) -> dict[str, Any]:
    """The storm for N users with `instances` worker processes; returns the measurements."""
    quiet_logging()
    import function_app
    from devtools.localhost import app_functions
    from functions import runtime
    from shared.policy import parse_policy
    from shared.services import Services
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential

    detected_at = datetime.now(UTC) - timedelta(minutes=2)
    tenant = storm_tenant(n, detected_at=detected_at)
    users = storm_users(tenant)
    alerts = detections(users, detected_at)
    emu = EmulatorProcess(tenant, emulator_config(), token=TOKEN, workdir=OUT,
                          name=f"storm-{tag}")
    emu.start()
    svc: Services | None = None
    workers: list[subprocess.Popen[bytes]] = []
    stop_file = OUT / f"stop-{tag}"
    status_files = [OUT / f"worker-{tag}-{i}.json" for i in range(instances)]
    for f in [stop_file, *status_files]:
        f.unlink(missing_ok=True)
    try:
        env = storm_env(storage, emu.base_url, tag)
        settings = Settings.from_env(env)
        svc = Services.create(settings, credential=StaticTokenCredential(TOKEN),
                              policy=parse_policy(storm_policy()))
        runtime.use_services(svc)
        await svc.journal.ensure()
        await svc.storage.ensure_queue(settings.remediation_queue)
        http_fn = next(f.get_user_function() for f in app_functions(function_app.app)
                       if f.get_function_name() == "risk_alert_http")
        child_env = {**os.environ, **env}
        workers = [_spawn_worker(f, stop_file, child_env) for f in status_files]
        await _wait_for(lambda: all(f.exists() for f in status_files), 120)
        emu.clear_log()

        t0 = time.monotonic()
        wall0 = datetime.now(UTC)
        posts = [func.HttpRequest("POST", "https://responder.example/api/alerts",
                                  headers={"content-type": "application/json"},
                                  body=json.dumps({"value": alerts[i:i + ALERTS_PER_POST]})
                                  .encode())
                 for i in range(0, len(alerts), ALERTS_PER_POST)]
        injected = {u["id"]: t0 for u in users}
        answers = await asyncio.gather(*(_post(http_fn, p) for p in posts))
        t_intake = time.monotonic() - t0
        statuses = [code for a in answers for code in a[1]]
        accepted = sum(a[0] for a in answers)
        stored = sum(a[2] for a in answers)
        accepted_signals = sum(a[3] for a in answers)

        def progress() -> tuple[int, int]:
            done = busy = 0
            for f in status_files:
                try:
                    doc = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                done += doc["succeeded"] + doc["poisoned"]
                busy += doc["in_flight"]
            return done, busy

        deadline = t0 + (limit_seconds or storm_limit_seconds(n))
        queues = (settings.remediation_queue, settings.cleanup_queue, settings.intake_queue)
        next_check = 0.0
        while time.monotonic() < deadline:
            done, busy = progress()
            # A run takes two deliveries (contain, clean-up), and a message waiting for its
            # redelivery is invisible, not gone: the storm is over only when nothing runs
            # and every queue is empty (the count includes invisible messages).
            if done >= n and not busy and time.monotonic() >= next_check:
                next_check = time.monotonic() + 2.0
                if sum([await _count_queue(svc, q) for q in queues]) == 0:
                    break
            await asyncio.sleep(0.25)
        t_hosts_idle = time.monotonic() - t0
        stop_file.touch()
        for w in workers:
            w.wait(timeout=60)
        finals = [json.loads(f.read_text(encoding="utf-8")) for f in status_files]

        runs = await svc.journal.list_runs(limit=100_000)
        states: dict[str, int] = {}
        last_finish = 0.0
        for r in runs:
            states[r.state] = states.get(r.state, 0) + 1
            if r.finished_at:
                last_finish = max(last_finish, (r.finished_at - wall0).total_seconds())
        retry_reasons: dict[str, int] = {}
        for r in runs:
            if r.attempts > 1:
                for ev in await svc.journal.events(r.run_id):
                    if ev.get("kind") in ("retry", "poisoned"):
                        why = str(ev.get("message", ""))[:160]
                        retry_reasons[why] = retry_reasons.get(why, 0) + 1
        poison = (await _count_queue(svc, settings.remediation_queue + "-poison")
                  + await _count_queue(svc, settings.cleanup_queue + "-poison"))
        left = (await _count_queue(svc, settings.remediation_queue)
                + await _count_queue(svc, settings.cleanup_queue))
        log = emu.requests()
        if os.environ.get("BENCH_DUMP_LOG"):
            (OUT / f"log-{tag}.json").write_text(json.dumps(
                {"t0": t0, "log": log}, default=str), encoding="utf-8")
        s = measure.summarise(log, write_latency=GRAPH_LATENCY_MS / 1000)
        contained = measure.containment_times(s, injected)
        times = list(contained.values())
        failed_runs = sum(v for k, v in states.items() if k != "finished")
        host_stats = {k: sum(int(d[k]) for d in finals)
                      for k in ("delivered", "succeeded", "failed", "poisoned")}
        return {
            "n": n, "instances": instances, "alerts": len(alerts),
            "alerts_per_post": ALERTS_PER_POST,
            "intake_seconds": round(t_intake, 3), "intake_statuses": sorted(set(statuses)),
            "enqueued": accepted,
            "all_contained_seconds": round(max(times), 3) if len(times) == n else None,
            "contained_users": len(times),
            "first_contained_seconds": round(min(times), 3) if times else None,
            "median_contained_seconds": round(measure.median(times) or 0, 3),
            "p95_contained_seconds": round(measure.pct(times, 0.95) or 0, 3),
            "all_finished_seconds": round(last_finish, 3),
            "hosts_idle_seconds": round(t_hosts_idle, 3),
            "run_states": states, "failed_runs": failed_runs,
            "redelivery_reasons": retry_reasons,
            "runs_recorded": len(runs),
            "lost_runs": max(0, n - len(runs)) + left,
            "not_finished_runs": sum(v for k, v in states.items() if k not in TERMINAL),
            "poison_messages": poison,
            "graph_calls": s.graph_calls, "exchange_calls": s.exchange_calls,
            "calls": s.graph_calls + s.exchange_calls,
            "throttled_429": s.throttled, "throttled_by_class": s.throttled_by_class,
            "calls_by_class": s.by_class, "faults": s.faults, "host_stats": host_stats,
            "confirm_calls": sum(int(d["confirm_calls"]) for d in finals),
            "double_writes": {
                "password": sum(1 for c in s.password_writes.values() if c > 1),
                "revoke": sum(1 for c in s.revoke_writes.values() if c > 1)},
            "peak_rss_mb": {"worker_max": max(float(d["peak_rss_mb"]) for d in finals),
                            "intake_process": round(peak_rss_mb(), 1)},
            "call_kinds": measure.by_user_kind(log),
            "stored_payloads": stored,
            "accepted_signals": accepted_signals,
            "storage_ops": {k: sum(int(d.get("storage_ops", {}).get(k, 0)) for d in finals)
                            for k in ("table", "queue", "blob")},
            "table_ops_per_run": round(sum(int(d.get("storage_ops", {}).get("table", 0))
                                           for d in finals) / max(1, len(runs)), 1),
            "worker_cpu_ms_per_run": round(1000 * sum(float(d.get("cpu_seconds", 0))
                                                      for d in finals) / max(1, len(runs)), 1),
            "identity_budget": {k: sum(int(d.get("identity_budget", {}).get(k, 0))
                                       for d in finals)
                                for k in BUDGET_COUNTERS},
        }
    finally:
        stop_file.touch()
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(timeout=10)
        runtime.use_services(None)
        if svc is not None:
            await svc.close()
        emu.stop()


def _spawn_worker(status: Path, stop: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One Functions instance (bench.worker) as a child process."""
    return subprocess.Popen([sys.executable, "-m", "bench.worker", str(status), str(stop)],
                            cwd=ROOT, env=env)


async def _post(http_fn: Any, req: func.HttpRequest) -> tuple[int, list[int], int, int]:
    """POST one alert payload as a sender would: a 503 is resent after its Retry-After
    (capped at 2 s here); returns (requests enqueued in the request, the statuses seen,
    1 if the body was stored for the intake worker, the signals accepted)."""
    statuses: list[int] = []
    enqueued = stored = signals = 0
    for _ in range(10):
        resp = await http_fn(req)
        statuses.append(resp.status_code)
        body = json.loads(resp.get_body() or b"{}")
        enqueued += int(body.get("enqueued", 0))
        if resp.status_code != 503:
            stored = int(bool(body.get("queued")))
            signals = int(body.get("signals", enqueued) or 0)
            break
        await asyncio.sleep(min(2.0, float(resp.headers.get("Retry-After", "1"))))
    return enqueued, statuses, stored, signals


async def _wait_for(check: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker processes did not start in time")
        await asyncio.sleep(0.1)


async def _count_queue(svc: Any, name: str) -> int:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        props = await svc.storage.queue(name).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.phase N INSTANCES TAG OUT_JSON` (AzureWebJobsStorage in the env)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.phase")
    p.add_argument("n", type=int)
    p.add_argument("instances", type=int)
    p.add_argument("tag")
    p.add_argument("out")
    args = p.parse_args(argv)
    result = asyncio.run(run_storm(args.n, instances=args.instances,
                                   storage=os.environ["AzureWebJobsStorage"], tag=args.tag))
    Path(args.out).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
