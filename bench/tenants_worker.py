"""One Functions instance of a multi-tenant deployment, for bench.tenants: its own process,
a tenant hub whose every tenant (the default one too) gets its tokens from a real
ClientAssertionCredential against the emulator's token endpoint (devtools/tokens.py), and a
local host that receives a batch per call, as the Functions host does.

    python -m bench.tenants_worker STATUS_FILE STOP_FILE   (app settings in the environment;
    BENCH_EMULATOR_URL, BENCH_MI_TENANT, BENCH_MI_PRINCIPAL name the emulator and the
    managed identity the multi-tenant app trusts)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


async def serve(status: Path, stop: Path) -> None:
    from bench.phase import peak_rss_mb, quiet_logging

    quiet_logging()
    import function_app
    from bench.scenario import storm_policy
    from bench.worker import _cpu_seconds
    from devtools.localhost import LocalHost
    from devtools.tokens import emulator_assertion, emulator_credential_factory
    from functions import runtime
    from shared.playbook.catalogue import check_policy
    from shared.policy import parse_policy
    from shared.services import Services
    from shared.settings import Settings
    from shared.tenancy import TenantHub

    settings = Settings.from_env()
    mi_tenant, mi_principal = os.environ["BENCH_MI_TENANT"], os.environ["BENCH_MI_PRINCIPAL"]
    factory = emulator_credential_factory(
        os.environ["BENCH_EMULATOR_URL"], settings.app_client_id,
        lambda: emulator_assertion(tenant_id=mi_tenant, principal_id=mi_principal))
    ops = {"queue": 0, "table": 0, "blob": 0}

    def counter(service: str) -> Any:
        def hook(_request: Any) -> None:
            ops[service] += 1
        return hook

    default = Services.create(settings, credential=factory(settings.tenant_id),
                              policy=parse_policy(storm_policy()),
                              storage_hooks={k: counter(k) for k in ops})
    hub = TenantHub(default, factory, check_policy=check_policy)
    runtime.use_hub(hub)
    await default.journal.ensure()
    host = LocalHost(function_app.app, default.storage, dict(os.environ))
    cpu_at_start = _cpu_seconds()
    last_write = 0.0

    def write(final: bool = False) -> None:
        doc = {**vars(host.stats), "in_flight": len(host._in_flight), "final": final,
               "moved": hub.shares.moved, "peak_rss_mb": round(peak_rss_mb(), 1),
               "storage_ops": dict(ops), "pid": os.getpid(),
               "cpu_seconds": round(_cpu_seconds() - cpu_at_start, 3)}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
        tmp.replace(status)

    try:
        while not stop.exists():  # noqa: ASYNC240 - a cheap stat, twice a second at most
            started = await host.poll_once()
            now = time.monotonic()
            if now - last_write > 0.5:
                write()
                last_write = now
            await asyncio.sleep(0.01 if started else 0.05)
        await host.kill()
        write(final=True)
    finally:
        runtime.use_hub(None)
        await hub.close()
        await default.close()


def main(argv: list[str]) -> int:
    asyncio.run(serve(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
