"""Fixtures for sweep tests: services on Azurite and an emulator (the demo tenant, or a
synthetic tenant from `make_tenant`), and helpers to read the remediation queue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from devtools.emulator import EmulatorServer, make_tenant
from functions import runtime
from shared.services import Services
from shared.state.clock import now
from shared.state.journal import RunRecord
from tests.conftest import TOKEN, make_settings
from tests.playbook.conftest import build_services


@pytest.fixture
def big_tenant() -> dict[str, Any]:
    """2,000 mailboxes, a handful of audit offenders, nothing else."""
    return make_tenant(2000, offenders={"audit_disabled": 5, "audit_bypass": 3,
                                        "forwarding": 0, "forwarding_rules": 0,
                                        "hidden_rules": 0, "risky_high": 0,
                                        "blocked_senders": 0}, seed=5)


def start_emulator(seed: dict[str, Any]) -> EmulatorServer:
    server = EmulatorServer(seed, token=TOKEN, seed=1)
    server.start()
    return server


@pytest.fixture
def tenant_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """An emulator seeded with the dict the test passes through indirect parametrisation,
    or with `big_tenant` by default."""
    seed = getattr(request, "param", None) or request.getfixturevalue("big_tenant")
    server = start_emulator(seed)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_services(azurite: Any) -> AsyncIterator[Any]:
    """Build services for an emulator and a policy; closed at the end of the test."""
    built: list[Services] = []

    def build(emulator: EmulatorServer, env: dict[str, str] | None = None,
              **policy: Any) -> Services:
        svc = build_services(make_settings(azurite, emulator, **(env or {})), **policy)
        built.append(svc)
        return svc

    yield build
    for svc in built:
        await svc.close()


@pytest.fixture
async def demo_services(settings: Any) -> AsyncIterator[Services]:
    svc = build_services(settings)
    runtime.use_services(svc)
    yield svc
    runtime.use_services(None)
    await svc.close()


async def queued(services: Services) -> list[dict[str, Any]]:
    """Every message on the remediation queue (peeked, left in place; up to 32)."""
    client = await services.storage.ensure_queue(services.settings.remediation_queue)
    return [json.loads(m.content) for m in await client.peek_messages(max_messages=32)]


def exchange_calls(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [e for e in emulator.requests() if e.get("api") == "exchange"]


def exchange_writes(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [e for e in exchange_calls(emulator) if e.get("write")]


async def add_run(services: Services, run_id: str, *, user_id: str, upn: str, state: str,
                  steps: list[str] | None = None, age: timedelta = timedelta(0),
                  dry_run: bool = False, request: dict[str, Any] | None = None) -> RunRecord:
    """A run record as the runner would leave it, `age` old."""
    stamp = now() - age
    run = RunRecord(run_id=run_id, user=upn, user_id=user_id, upn=upn, state=state,
                    steps=steps or ["collect_evidence", "reset_password", "revoke_sessions"],
                    request=request or {"user": upn, "requestId": run_id},
                    created_at=stamp, updated_at=stamp,
                    finished_at=stamp if state not in ("running", "waiting_approval") else None,
                    dry_run=dry_run)
    await services.journal.create_run(run)
    await services.journal.table.upsert_entity(run.to_entity())  # keep the old updatedAt
    return run
