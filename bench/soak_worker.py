"""One Functions instance for the fault soak, as its own process, so the soak can kill it
with SIGKILL (a real crash: no `finally`, no lease released, no message given back).

It runs the LocalHost queue loop against the storage in `AzureWebJobsStorage` (the soak
points it at the fault proxy) and the emulator, and writes its counters to STATUS_FILE
every half second. Stops cleanly when STOP_FILE appears.

    python -m bench.soak_worker STATUS_FILE STOP_FILE MESSAGE_LEASE VISIBILITY_TIMEOUT
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path


async def serve(status: Path, stop: Path, message_lease: float, visibility: float) -> None:
    logging.basicConfig(filename=str(status.with_suffix(".log")), level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import function_app
    from bench.scenario import storm_policy
    from devtools.localhost import LocalHost
    from functions import runtime
    from shared.policy import parse_policy
    from shared.services import Services
    from shared.settings import Settings
    from shared.tenant.credentials import StaticTokenCredential

    settings = Settings.from_env()
    svc = Services.create(settings, credential=StaticTokenCredential(os.environ[
        "RESPONDER_STATIC_TOKEN"]), policy=parse_policy(storm_policy()), confirm_window=0.1)
    runtime.use_services(svc)
    host = LocalHost(function_app.app, svc.storage, dict(os.environ),
                     visibility_timeout=visibility, lease_seconds=message_lease)
    last_write = 0.0

    def write(final: bool = False) -> None:
        doc = {**vars(host.stats), "in_flight": len(host._in_flight), "final": final,
               "pid": os.getpid()}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
        tmp.replace(status)

    try:
        while not stop.exists():  # noqa: ASYNC240 - a cheap stat, a few times a second
            try:
                started = await host.poll_once()
            except Exception as exc:  # a storage fault while polling: poll again
                logging.getLogger("bench.soak_worker").warning("poll failed: %s",
                                                               type(exc).__name__)
                started = 0
            now = time.monotonic()
            if now - last_write > 0.5:
                write()
                last_write = now
            await asyncio.sleep(0.01 if started else 0.05)
        while host._in_flight:
            await asyncio.wait(host._in_flight, timeout=30)
        write(final=True)
    finally:
        runtime.use_services(None)
        await svc.close()


def main(argv: list[str]) -> int:
    asyncio.run(serve(Path(argv[0]), Path(argv[1]), float(argv[2]), float(argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
