"""Shared fixtures: real Azurite, the real tenant emulator over HTTP, and settings that point
every service endpoint at them. No test reaches a real credential or a non-loopback host."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devtools.azurite import Azurite, start_azurite
from shared.settings import Settings

TOKEN = "emulator-test-token"

# Belt and braces: a stray DefaultAzureCredential must not find anything to probe.
os.environ.setdefault("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
os.environ.setdefault("IDENTITY_ENDPOINT", "http://127.0.0.1:9/token")
os.environ.setdefault("IMDS_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with start_azurite() as running:
        yield running


@pytest.fixture(scope="session")
def _emulator_session() -> Iterator[Any]:
    from devtools.emulator import EmulatorServer

    server = EmulatorServer(None, token=TOKEN, seed=1)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[Any]:
    """A fresh emulator per test, seeded with the demo tenant (cheap: it runs in-thread)."""
    from devtools.emulator import EmulatorServer, load_tenant

    server = EmulatorServer(load_tenant("devtools/tenants/demo.json"), token=TOKEN, seed=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_settings(azurite: Azurite | None, emulator: Any, **overrides: str) -> Settings:
    env = {
        "AzureWebJobsStorage": (azurite.connection_string if azurite
                                else "UseDevelopmentStorage=true"),
        "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
        "GRAPH_BASE_URL": emulator.base_url,
        "EXCHANGE_BASE_URL": emulator.base_url,
        "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": TOKEN,
        "REMEDIATION_QUEUE": "rq-" + uuid.uuid4().hex[:12],
        "RESPONDER_JOURNAL_TABLE": "runs" + uuid.uuid4().hex[:12],
        "RESPONDER_EVIDENCE_CONTAINER": "ev-" + uuid.uuid4().hex[:12],
        "RESPONDER_MAX_RETRY_WAIT_SECONDS": "20",
    }
    env.update(overrides)
    return Settings.from_env(env)


@pytest.fixture
def settings(azurite: Azurite, emulator: Any) -> Settings:
    return make_settings(azurite, emulator)


@pytest.fixture
async def graph(settings: Settings) -> AsyncIterator[Any]:
    from shared.tenant.credentials import StaticTokenCredential
    from shared.tenant.graph.client import create_graph_client

    client = create_graph_client(settings, StaticTokenCredential(TOKEN))
    yield client
    await client.close()
