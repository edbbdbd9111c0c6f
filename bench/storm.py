"""The storm benchmark: N users flagged high at once, through intake, the queue and the
worker, against the emulator with Graph-like limits; compared with the per-user-script
baseline and the lower bound the limits impose.

    python -m bench.storm              # N = 100, 500, 1000 (or: make bench)
    python -m bench.storm --quick      # N = 100 only
    python -m bench.storm --sizes 500 --instances 2 --baseline-sample 10

Prints a table and writes bench/out/storm-N.json (and bench/out/baseline.json). Each storm
runs in its own process (clean peak memory) with its own emulator process; Azurite is shared
with fresh queue/table names per phase. See bench/RESULTS.md for the settings and figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import scenario
from bench.baseline import extrapolate, run_baseline
from bench.lower_bound import lower_bound
from bench.scenario import OUT, ROOT


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def settings_doc(instances: int) -> dict[str, Any]:
    return {
        "graph_latency_ms": scenario.GRAPH_LATENCY_MS,
        "exchange_latency_ms": scenario.EXCHANGE_LATENCY_MS,
        "identity_protection_rps": scenario.IDENTITY_PROTECTION_RPS,
        "directory_write_bucket": {"capacity": scenario.DIRECTORY_WRITE_CAPACITY,
                                   "refill_per_sec": scenario.DIRECTORY_WRITE_REFILL},
        "mailbox_concurrency": scenario.MAILBOX_CONCURRENCY,
        "exchange_bucket_ASSUMED": {"rps": scenario.EXCHANGE_RPS,
                                    "burst": scenario.EXCHANGE_BURST},
        "instances": instances,
        "per_instance_concurrency": "host.json batchSize + newBatchThreshold",
        "emulator_config": scenario.emulator_config(),
    }


def run_phase(n: int, instances: int, storage: str, tag: str) -> dict[str, Any]:
    out = OUT / f"phase-{tag}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "AzureWebJobsStorage": storage}
    subprocess.run([sys.executable, "-m", "bench.phase", str(n), str(instances), tag, str(out)],
                   cwd=ROOT, env=env, check=True, timeout=900)
    return json.loads(out.read_text(encoding="utf-8"))


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def row(result: dict[str, Any]) -> list[str]:
    def f(v: Any, d: int = 1) -> str:
        return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))

    return [str(result["n"]), f(result["all_contained_seconds"]),
            f(result["all_finished_seconds"]), f(result["first_contained_seconds"], 2),
            str(result["graph_calls"]), str(result["exchange_calls"]),
            str(result["throttled_429"]), str(result["failed_runs"]), str(result["lost_runs"]),
            f(result["peak_rss_mb"]["worker_max"], 0),
            f(result["baseline_all_finished_seconds"], 0),
            f(result["speedup_vs_baseline"]), f(result["lower_bound"]["seconds"]),
            f(result["ratio_to_lower_bound"], 2)]


HEADER = ["N", "contained s", "finished s", "first s", "Graph", "Exchange", "429s", "failed",
          "lost", "RSS MB", "baseline s", "x faster", "LB s", "/LB"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 100 only, a 5-user baseline")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    p.add_argument("--instances", type=int, default=1,
                   help="worker processes (Functions instances); default 1")
    p.add_argument("--baseline-sample", type=int, default=20)
    args = p.parse_args(argv)
    sizes = [100] if args.quick else args.sizes
    sample = 5 if args.quick else args.baseline_sample
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    from devtools.azurite import start_azurite

    results = []
    with start_azurite() as azurite:
        storage = azurite.connection_string
        print(f"baseline: {sample} users, one after another ...", file=sys.stderr)
        base = asyncio.run(run_baseline(max(sizes), sample, storage=storage))
        (OUT / "baseline.json").write_text(json.dumps(base, indent=2), encoding="utf-8")
        for n in sizes:
            print(f"storm: N = {n}, {args.instances} instance(s) ...", file=sys.stderr)
            result = run_phase(n, args.instances, storage, f"n{n}i{args.instances}")
            lb = lower_bound(n)
            est = extrapolate(base, n)
            result.update({
                "lower_bound": lb.as_dict(),
                "baseline": {**{k: v for k, v in base.items() if k != "call_kinds"},
                             "extrapolated": est},
                "baseline_all_finished_seconds": est["all_finished_seconds"],
                "baseline_all_contained_seconds": est["all_contained_seconds"],
                "speedup_vs_baseline": ratio(est["all_finished_seconds"],
                                             result["all_finished_seconds"]),
                "containment_speedup_vs_baseline": ratio(est["all_contained_seconds"],
                                                         result["all_contained_seconds"]),
                "ratio_to_lower_bound": ratio(result["all_finished_seconds"], lb.seconds),
                "settings": settings_doc(args.instances), "machine": machine(),
            })
            (OUT / f"storm-{n}.json").write_text(json.dumps(result, indent=2, default=str),
                                                 encoding="utf-8")
            results.append(result)
    firsts = [r["first_contained_seconds"] for r in results if r["first_contained_seconds"]]
    print()
    print(table([row(r) for r in results]))
    print(f"\nfirst account contained after its alert, median over {len(firsts)} storm(s): "
          f"{statistics.median(firsts):.2f} s" if firsts else "")
    print(f"baseline: {base['per_user_seconds']:.2f} s per user on a {base['sample_users']}-user "
          f"sample, extrapolated linearly; instances: {args.instances}; "
          f"total {time.monotonic() - started:.0f} s; details in {OUT}/storm-N.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
