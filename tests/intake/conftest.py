"""Fixtures for intake tests: services on Azurite + the emulator, the registered functions,
and helpers to read what reached the remediation queue and the intake journal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from functions import runtime
from shared.intake.pipeline import INTAKE_PARTITION
from shared.policy import parse_policy
from shared.services import Services
from shared.tenant.credentials import StaticTokenCredential
from tests.conftest import TOKEN, make_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
CLIENT_STATE = "graph-client-state-for-tests"
SHARED_SECRET = "shared-secret-for-tests"


def fixture_payload(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["payload"]


def build(azurite: Any, emulator: Any, policy: dict[str, Any] | None = None,
          **env: str) -> Services:
    settings = make_settings(azurite, emulator, **env)
    return Services.create(settings, credential=StaticTokenCredential(TOKEN),
                           policy=parse_policy(policy or {}), confirm_window=0.05)


@pytest.fixture
async def make_services(azurite: Any, emulator: Any) -> AsyncIterator[Any]:
    """Build services with a policy and extra app settings; closed after the test."""
    made: list[Services] = []

    def factory(policy: dict[str, Any] | None = None, **env: str) -> Services:
        services = build(azurite, emulator, policy, **env)
        made.append(services)
        return services

    yield factory
    for services in made:
        await services.close()


@pytest.fixture
async def svc(azurite: Any, emulator: Any) -> AsyncIterator[Services]:
    """Default policy, a Graph clientState configured, injected into the functions."""
    services = build(azurite, emulator, RESPONDER_GRAPH_CLIENT_STATE=CLIENT_STATE)
    runtime.use_services(services)
    yield services
    runtime.use_services(None)
    await services.close()


def user_function(name: str) -> Callable[..., Any]:
    """A registered function by name, as the host would call it."""
    import function_app
    from devtools.localhost import app_functions

    for fn in app_functions(function_app.app):
        if fn.get_function_name() == name:
            return fn.get_user_function()
    raise KeyError(name)


async def queued(services: Services) -> list[dict[str, Any]]:
    """Every message on the remediation queue (received, so each is counted once)."""
    client = services.storage.queue(services.settings.remediation_queue)
    out: list[dict[str, Any]] = []
    try:
        async for msg in client.receive_messages(messages_per_page=32, visibility_timeout=600):
            out.append(json.loads(msg.content))
    except ResourceNotFoundError:
        return []
    return out


async def intake_events(services: Services, kind: str | None = None) -> list[dict[str, Any]]:
    rows = await services.journal.events(INTAKE_PARTITION)
    return [r for r in rows if kind is None or r["kind"] == kind]
