"""A journal on Azurite whose Table requests are counted (method and URL, in order)."""

from __future__ import annotations

import pytest

from shared.state.journal import Journal
from shared.state.storage import create_storage


@pytest.fixture
async def counted(settings):
    calls: list[str] = []

    def hook(request) -> None:
        calls.append(request.http_request.method + " " + request.http_request.url)

    storage = create_storage(settings, request_hooks={"table": hook})
    journal = Journal(storage, settings.journal_table, settings.evidence_container)
    await journal.ensure()
    calls.clear()
    try:
        yield journal, calls
    finally:
        await storage.close()
