"""Storage clients (queues, tables, blobs) from settings: a connection string locally and on
Azurite, the managed identity in Azure (no keys).

Queue messages are base64-encoded, because that is what the Functions host decodes by
default: a plain-text message put on the queue by hand would otherwise fail to bind.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.settings import Settings

TRANSPORT: dict[str, Any] = {"use_env_settings": False}
"""The storage clients' aiohttp transport does not read proxy settings and ~/.netrc from the
environment (azure-core's `use_env_settings`): that lookup costs a thread-pool hop on every
request, and the app's storage is reached directly (a Functions app with outbound traffic
through a proxy would set it back to True here)."""


def poison_queue_name(queue: str) -> str:
    """The Functions host's convention: `<queue>-poison`."""
    return f"{queue}-poison"


def encode_message(text: str) -> str:
    """Base64 as the Functions host expects (for tools that bypass the SDK policy)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class Storage:
    """The three storage services, created once per process and closed on exit."""

    queues: QueueServiceClient
    tables: TableServiceClient
    blobs: BlobServiceClient
    _queues_made: set[str] = field(default_factory=set)
    """Queues this process created (or found): an enqueue does not ask again."""

    def queue(self, name: str) -> QueueClient:
        """A queue client that base64-encodes what it sends and decodes what it reads."""
        return self.queues.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    async def ensure_queue(self, name: str) -> QueueClient:
        client = self.queue(name)
        try:
            await client.create_queue()
        except ResourceExistsError:
            pass
        self._queues_made.add(name)
        return client

    async def known_queue(self, name: str) -> QueueClient:
        """The queue's client, the queue created only the first time this process uses it
        (a poller that asked on every poll spent a storage operation per queue each time);
        after a 404, `forget_queue` makes the next use create it again."""
        if name not in self._queues_made:
            return await self.ensure_queue(name)
        return self.queue(name)

    def forget_queue(self, name: str) -> None:
        self._queues_made.discard(name)

    async def enqueue(self, queue: str, text: str, *, visibility_timeout: int | None = None)\
            -> None:
        """Put one message (a JSON text) on a queue, creating the queue the first time (and
        again if someone deleted it): one storage operation per message, not two."""
        if queue not in self._queues_made:
            await self.ensure_queue(queue)
        try:
            await self.queue(queue).send_message(text, visibility_timeout=visibility_timeout)
        except ResourceNotFoundError:
            self.forget_queue(queue)
            client = await self.ensure_queue(queue)
            await client.send_message(text, visibility_timeout=visibility_timeout)

    async def close(self) -> None:
        await self.queues.close()
        await self.tables.close()
        await self.blobs.close()


def create_storage(settings: Settings, credential: Any = None, *,
                   request_hooks: Mapping[str, Callable[..., None]] | None = None) -> Storage:
    """From the connection string when set; otherwise identity-based account URLs.

    `request_hooks` ("queue", "table", "blob") see every request a service's client sends
    (azure-core's `raw_request_hook`): the benchmark counts storage operations with them."""
    hooks = request_hooks or {}

    def kw(service: str) -> dict[str, Any]:
        hook = hooks.get(service)
        return {**TRANSPORT, **({"raw_request_hook": hook} if hook else {})}

    if settings.storage_connection:
        conn = settings.storage_connection
        return Storage(
            queues=QueueServiceClient.from_connection_string(conn, **kw("queue")),
            tables=TableServiceClient.from_connection_string(conn, **kw("table")),
            blobs=BlobServiceClient.from_connection_string(conn, **kw("blob")),
        )
    account = settings.storage_account
    if credential is None:
        raise ValueError("identity-based storage needs a credential")
    return Storage(
        queues=QueueServiceClient(f"https://{account}.queue.core.windows.net", credential,
                                  **kw("queue")),
        tables=TableServiceClient(f"https://{account}.table.core.windows.net",
                                  credential=credential, **kw("table")),
        blobs=BlobServiceClient(f"https://{account}.blob.core.windows.net", credential,
                                **kw("blob")),
    )
