"""Cold start of `function_app`: import time and memory in a fresh interpreter, the heaviest
imports (`python -X importtime`), and the first webhook answer on a cold instance.

    python -m bench.coldstart [--repeat 5] [--json]

Each measurement is a new `python` process, so nothing is cached in memory (the OS file
cache is warm after the first, as on a Functions instance that has the app on local disk).
The first answer is a Graph subscription-validation POST to `risk_alert_http`: what a cold
instance must do before it can answer anything (build Services, read the policy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from typing import Any

from bench.scenario import ROOT

PROBE = r"""
import json, os, resource, sys, time, tracemalloc
if os.environ.get("PROBE_TRACE"):
    tracemalloc.start()  # slows imports ~4x: only in the memory run, never the timed ones
t0 = time.perf_counter()
import function_app
t_import = time.perf_counter() - t0
heavy = sorted(m for m in ("msgraph", "kiota_http", "msgraph_core", "azure.identity",
                           "azure.data.tables", "azure.storage.queue", "pydantic")
               if m in sys.modules)
import asyncio
import azure.functions as func
from devtools.localhost import app_functions
fn = next(f.get_user_function() for f in app_functions(function_app.app)
          if f.get_function_name() == "risk_alert_http")
req = func.HttpRequest("POST", "https://x/api/alerts", params={"validationToken": "t"}, body=b"")
t1 = time.perf_counter()
resp = asyncio.run(fn(req))
t_first = time.perf_counter() - t1
after_first = sorted(m for m in ("msgraph", "kiota_http", "msgraph_core") if m in sys.modules)
current, peak = tracemalloc.get_traced_memory()
print(json.dumps({"import_s": t_import, "first_answer_s": t_first,
                  "status": resp.status_code, "modules": len(sys.modules),
                  "heavy_loaded_by_import": heavy, "graph_loaded_by_first_answer": after_first,
                  "traced_peak_mb": peak / 2**20,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
    "GRAPH_BASE_URL": "http://127.0.0.1:9", "EXCHANGE_BASE_URL": "http://127.0.0.1:9",
    "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": "cold-start-probe",
    "RESPONDER_POLICY": str(ROOT / "devtools" / "demo-policy.json"),
}
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def probe(trace: bool = False) -> dict[str, Any]:
    env = {**os.environ, **ENV, **({"PROBE_TRACE": "1"} if trace else {})}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def importtime() -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """Total, the heaviest top-level packages and the heaviest single modules (cumulative)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import function_app"],
                         cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True,
                         check=True, timeout=120)
    by_package: dict[str, float] = defaultdict(float)
    modules: list[tuple[str, float]] = []
    total = 0.0
    for line in out.stderr.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        self_us, cumulative_us, _indent, name = m.groups()
        by_package[name.split(".")[0]] += int(self_us) / 1e6
        modules.append((name, int(cumulative_us) / 1e6))
        if name == "function_app":
            total = int(cumulative_us) / 1e6
    top_packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:12]
    top_modules = sorted(modules, key=lambda kv: -kv[1])[:15]
    return total, top_packages, top_modules


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.coldstart")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    probe()  # warm the OS file cache once, as a deployed instance's disk is
    runs = [probe() for _ in range(args.repeat)]
    traced = probe(trace=True)
    total, packages, modules = importtime()
    result = {
        "repeat": args.repeat,
        "import_s_median": round(statistics.median(r["import_s"] for r in runs), 3),
        "first_answer_s_median": round(statistics.median(r["first_answer_s"] for r in runs), 3),
        "cold_answer_s_median": round(statistics.median(r["import_s"] + r["first_answer_s"]
                                                        for r in runs), 3),
        "maxrss_mb_median": round(statistics.median(r["maxrss_mb"] for r in runs), 1),
        "traced_peak_mb": round(traced["traced_peak_mb"], 1),
        "modules": runs[0]["modules"], "status": runs[0]["status"],
        "heavy_loaded_by_import": runs[0]["heavy_loaded_by_import"],
        "graph_loaded_by_first_answer": runs[0]["graph_loaded_by_first_answer"],
        "importtime_function_app_s": round(total, 3),
        "heaviest_packages_self_s": [(n, round(s, 3)) for n, s in packages],
        "heaviest_modules_cumulative_s": [(n, round(s, 3)) for n, s in modules],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"import function_app: {result['import_s_median']:.3f} s (median of {args.repeat}, "
          f"-X importtime {result['importtime_function_app_s']:.3f} s), "
          f"{result['modules']} modules, max RSS {result['maxrss_mb_median']:.0f} MB "
          f"(tracemalloc peak {result['traced_peak_mb']:.0f} MB, separate run)")
    print(f"first webhook answer after import: {result['first_answer_s_median']:.3f} s; "
          f"cold instance to first answer: {result['cold_answer_s_median']:.3f} s "
          f"(status {result['status']})")
    print(f"loaded by the import: {', '.join(result['heavy_loaded_by_import'])}")
    print(f"Graph SDK loaded by the first webhook answer: "
          f"{', '.join(result['graph_loaded_by_first_answer']) or 'no'}")
    print("heaviest packages (own import time):")
    for name, secs in result["heaviest_packages_self_s"]:
        print(f"  {secs:7.3f} s  {name}")
    print("heaviest modules (cumulative):")
    for name, secs in result["heaviest_modules_cumulative_s"]:
        print(f"  {secs:7.3f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
