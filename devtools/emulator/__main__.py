"""CLI: python -m devtools.emulator --host 127.0.0.1 --port 0 [--tenant FILE] ...

Prints "emulator listening on http://127.0.0.1:PORT" once bound, serves until SIGINT or
SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from .pipeline import DEFAULT_TOKEN, Emulator
from .server import ensure_loopback, start_site
from .tenant import load_tenant

DEMO_TENANT = Path(__file__).resolve().parent.parent / "tenants" / "demo.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devtools.emulator",
                                description="Microsoft Graph + Exchange admin REST emulator")
    p.add_argument("--host", default="127.0.0.1", help="loopback address only")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--tenant", default=str(DEMO_TENANT),
                   help="seed JSON (default: devtools/tenants/demo.json); 'empty' for none")
    p.add_argument("--token", default=os.environ.get("EMULATOR_TOKEN", DEFAULT_TOKEN),
                   help="bearer token clients must send")
    p.add_argument("--seed", type=int, default=0, help="seed for faults and batch shuffling")
    p.add_argument("--config", help="JSON file with throttle/latency/fault settings")
    p.add_argument("--add-tenant", action="append", default=[], metavar="FILE",
                   help="seed JSON of another tenant to host (repeatable); its tokens come "
                        "from POST /{tenant}/oauth2/v2.0/token")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Emulator:
    tenant = load_tenant(None if args.tenant == "empty" else args.tenant)
    config = None
    if args.config:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    emulator = Emulator(tenant, token=args.token, seed=args.seed, config=config)
    for extra in args.add_tenant:
        emulator.add_tenant(extra)
    return emulator


async def serve(emulator: Emulator, host: str, port: int) -> None:
    runner, port = await start_site(emulator, host, port)
    host = f"[{host}]" if ":" in host else host
    print(f"emulator listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ensure_loopback(args.host)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(build(args), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
