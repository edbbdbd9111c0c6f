"""Fixtures for playbook tests: services wired to Azurite and the emulator, and a way to
run a request through the real queue and the local host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devtools.localhost import HostStats, LocalHost
from functions import runtime
from shared.policy import parse_policy
from shared.services import Services
from shared.tenant.credentials import StaticTokenCredential
from tests.conftest import TOKEN

DEMO_POLICY = json.loads(open("devtools/demo-policy.json").read())
MEGAN = "megan@contoso.com"
MEGAN_ID = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"


def build_services(settings, **policy_overrides: Any) -> Services:
    policy = parse_policy({**DEMO_POLICY, **policy_overrides})
    return Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=policy,
                           confirm_window=0.05)


@pytest.fixture
async def services(settings) -> AsyncIterator[Services]:
    svc = build_services(settings)
    runtime.use_services(svc)
    yield svc
    runtime.use_services(None)
    await svc.close()


async def run_via_queue(services: Services, *bodies: str | dict, limit: float = 60.0,
                        **host_kw: Any) -> HostStats:
    """Enqueue messages (as the project does: base64) and let the local host run them."""
    import function_app

    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        await services.storage.enqueue(services.settings.remediation_queue, text)
    host = LocalHost(function_app.app, services.storage,
                     {"REMEDIATION_QUEUE": services.settings.remediation_queue},
                     visibility_timeout=host_kw.pop("visibility_timeout", 0.2), **host_kw)
    return await host.run_until_idle(limit)


def writes(emulator) -> list[dict]:
    return [e for e in emulator.requests() if e.get("write")]
