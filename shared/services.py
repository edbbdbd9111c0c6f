"""Everything a run needs, built once per process from Settings and passed explicitly.

Functions get it from `functions.runtime`; tests and the local host build their own with
injected credentials and transports. No module-level singletons hold service clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.credentials import AsyncTokenCredential, build_credential
from shared.exchange import ExchangeClient
from shared.graph.client import GraphClient, create_graph_client
from shared.graph.identity_protection import confirm_compromised
from shared.journal import Journal
from shared.playbook.confirm import ConfirmAggregator
from shared.policy_model import Policy, load_policy
from shared.settings import Settings
from shared.storage import Storage, create_storage


@dataclass
class Services:
    settings: Settings
    policy: Policy
    credential: AsyncTokenCredential
    graph: GraphClient
    exchange: ExchangeClient
    storage: Storage
    journal: Journal
    confirm: ConfirmAggregator
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        credential: AsyncTokenCredential | None = None,
        policy: Policy | None = None,
        graph_transport: httpx.AsyncBaseTransport | None = None,
        exchange_transport: httpx.AsyncBaseTransport | None = None,
        confirm_window: float = 0.3,
    ) -> Services:
        credential = credential or build_credential(settings)
        policy = policy or load_policy(settings.policy_path)
        graph = create_graph_client(settings, credential, transport=graph_transport)
        exchange = ExchangeClient(settings, credential, transport=exchange_transport)
        storage_credential = None if settings.storage_connection else credential
        storage = create_storage(settings, storage_credential)
        journal = Journal(storage, settings.journal_table, settings.evidence_container)

        async def send(ids: Any) -> None:
            await confirm_compromised(graph, ids)

        return cls(settings, policy, credential, graph, exchange, storage, journal,
                   ConfirmAggregator(send, window=confirm_window))

    async def close(self) -> None:
        await self.graph.close()
        await self.exchange.close()
        await self.storage.close()
        await self.credential.close()
