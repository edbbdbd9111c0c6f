"""Services on Azurite + the emulator (demo tenant) for the hostile-input tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from functions import runtime
from shared.services import Services
from tests.intake.conftest import CLIENT_STATE, SHARED_SECRET, build


@pytest.fixture
async def svc(azurite: Any, emulator: Any) -> AsyncIterator[Services]:
    """Default policy, a webhook shared secret and a Graph clientState configured."""
    services = build(azurite, emulator, RESPONDER_GRAPH_CLIENT_STATE=CLIENT_STATE,
                     RESPONDER_WEBHOOK_SHARED_SECRET=SHARED_SECRET)
    runtime.use_services(services)
    yield services
    runtime.use_services(None)
    await services.close()
