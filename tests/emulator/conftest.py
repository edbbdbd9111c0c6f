"""Fixtures: a fresh emulator per test (cheap: one thread, one socket) and an httpx client
with the bearer token and a short timeout so nothing hangs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.emulator import EmulatorServer, load_tenant
from devtools.emulator.authz import app_grant_from_file

DEMO = Path(__file__).resolve().parents[2] / "devtools" / "tenants" / "demo.json"
TENANT_ID = "3c9e5a71-8d2b-4f06-a4e1-7b5c2d9f0e68"
MEGAN = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"
OBRIEN = "e5a2d8b3-7c4f-4f9e-8b62-3a8d1c9f5e24"
LEE_FEDERATED = "b8d5a1e6-0f7c-4c2b-9e95-6d1a4f2c8b57"
GUEST = "f6b3e9c4-8d5a-4a0f-9c73-4b9e2d0a6f35"
BREAKGLASS = "c9e6b2f7-1a8d-4d3c-8fa6-7e2b5a3d9c68"
CA_GROUP = "5f0c8a3e-2b7d-4c41-9e55-0a1b2c3d4e5f"
ATTACKER_APP = "9f2b8e41-c7d3-4a65-b0e9-7d4c3a2b1e06"
AUTH = {"Authorization": "Bearer test-token"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every emulator test is bounded: 60 s at most, most take well under a second."""
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))


def emulator_test_grant() -> tuple[frozenset[str], frozenset[str]]:
    """The app's full grant plus User.ReadWrite.All: these tests exercise emulator features
    (patching any user property) that the responder itself never uses."""
    roles, directory_roles = app_grant_from_file()
    return roles | {"User.ReadWrite.All"}, directory_roles


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(load_tenant(DEMO), seed=7, grant=emulator_test_grant()) as srv:
        yield srv


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=10.0) as c:
        yield c


def invoke(client: httpx.Client, cmdlet: str, params: dict | None = None,
           headers: dict | None = None, url: str | None = None) -> httpx.Response:
    """POST an Exchange InvokeCommand the way the responder's client does."""
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}}
    return client.post(url or f"/adminapi/beta/{TENANT_ID}/InvokeCommand", json=body,
                       headers=headers or {})
