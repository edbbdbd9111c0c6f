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
import os
import sys
from pathlib import Path


async def serve(status: Path, stop: Path) -> None:
    from bench.phase import peak_rss_mb, quiet_logging

    quiet_logging()
    import function_app
    from bench.scenario import storm_policy
    from bench.worker import _cpu_seconds, poll_until_stopped, storage_counters, write_status
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
    ops, hooks = storage_counters()
    default = Services.create(settings, credential=factory(settings.tenant_id),
                              policy=parse_policy(storm_policy()), storage_hooks=hooks)
    hub = TenantHub(default, factory, check_policy=check_policy)
    runtime.use_hub(hub)
    await default.journal.ensure()
    host = LocalHost(function_app.app, default.storage, dict(os.environ))
    cpu_at_start = _cpu_seconds()

    def write(final: bool = False) -> None:
        doc = {**vars(host.stats), "in_flight": len(host._in_flight), "final": final,
               "moved": hub.shares.moved, "urgent_runs": default.lanes.urgent_runs,
               "deferred_starts": default.lanes.deferred,
               "peak_rss_mb": round(peak_rss_mb(), 1),
               "storage_ops": dict(ops), "pid": os.getpid(),
               "cpu_seconds": round(_cpu_seconds() - cpu_at_start, 3)}
        write_status(status, doc)

    try:
        await poll_until_stopped(host, stop, write)
    finally:
        runtime.use_hub(None)
        await hub.close()
        await default.close()


def main(argv: list[str]) -> int:
    asyncio.run(serve(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
