"""Where trigger adapters get their Services: built once per worker process from the app
settings, or injected by tests and the local host through `use_services`."""

from __future__ import annotations

import asyncio

from shared.playbook.catalogue import check_policy
from shared.services import Services
from shared.settings import Settings

_injected: Services | None = None
_built: Services | None = None
_lock = asyncio.Lock()


def use_services(services: Services | None) -> None:
    """Inject the services every function uses (tests, the local host); None to clear."""
    global _injected
    _injected = services


async def services() -> Services:
    """The injected services, else the process-wide ones built from the environment."""
    global _built
    if _injected is not None:
        return _injected
    async with _lock:
        if _built is None:
            built = Services.create(Settings.from_env())
            check_policy(built.policy)  # a playbook naming an unknown step stops the start
            _built = built
    return _built
