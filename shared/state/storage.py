"""Storage clients (queues, tables, blobs) from settings: a connection string locally and on
Azurite, the managed identity in Azure (no keys).

Queue messages are base64-encoded, because that is what the Functions host decodes by
default: a plain-text message put on the queue by hand would otherwise fail to bind.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.settings import Settings


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
        return client

    async def enqueue(self, queue: str, text: str, *, visibility_timeout: int | None = None)\
            -> None:
        """Put one message (a JSON text) on a queue, creating the queue if needed."""
        client = await self.ensure_queue(queue)
        await client.send_message(text, visibility_timeout=visibility_timeout)

    async def close(self) -> None:
        await self.queues.close()
        await self.tables.close()
        await self.blobs.close()


def create_storage(settings: Settings, credential: Any = None) -> Storage:
    """From the connection string when set; otherwise identity-based account URLs."""
    if settings.storage_connection:
        conn = settings.storage_connection
        return Storage(
            queues=QueueServiceClient.from_connection_string(conn),
            tables=TableServiceClient.from_connection_string(conn),
            blobs=BlobServiceClient.from_connection_string(conn),
        )
    account = settings.storage_account
    if credential is None:
        raise ValueError("identity-based storage needs a credential")
    return Storage(
        queues=QueueServiceClient(f"https://{account}.queue.core.windows.net", credential),
        tables=TableServiceClient(f"https://{account}.table.core.windows.net",
                                  credential=credential),
        blobs=BlobServiceClient(f"https://{account}.blob.core.windows.net", credential),
    )
