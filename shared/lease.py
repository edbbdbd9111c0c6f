"""One lease mechanism for everything that must not run twice at once (the poller, each
sweep): a Table row with an owner and an expiry, taken, renewed and released with
ETag-conditional writes so that of two racing instances exactly one wins. A holder that
dies simply lets the expiry pass."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

if TYPE_CHECKING:
    from shared.services import Services


class Lease:
    """The lease row `partition/row`, held by `owner` for `seconds` at a time."""

    def __init__(self, services: Services, partition: str, row: str, seconds: float,
                 owner: str | None = None) -> None:
        self.services = services
        self.partition = partition
        self.row = row
        self.seconds = seconds
        self.owner = owner or uuid.uuid4().hex
        self.etag: str | None = None

    def _entity(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {"PartitionKey": self.partition, "RowKey": self.row, "owner": self.owner,
                "takenAt": now, "expiresAt": now + timedelta(seconds=self.seconds)}

    async def acquire(self) -> bool:
        """True when this owner now holds the lease (free, expired, or taken over)."""
        await self.services.journal.ensure()
        table = self.services.journal.table
        try:
            meta = await table.create_entity(self._entity())
        except ResourceExistsError:
            try:
                row = await table.get_entity(self.partition, self.row)
            except ResourceNotFoundError:
                return False  # released meanwhile: the next attempt takes it
            expires = row.get("expiresAt")
            if isinstance(expires, datetime) and expires > datetime.now(UTC):
                return False
            try:
                meta = await table.update_entity(
                    self._entity(), mode=UpdateMode.REPLACE, etag=row.metadata.get("etag"),
                    match_condition=MatchConditions.IfNotModified)
            except (HttpResponseError, ResourceNotFoundError):
                return False  # another instance took it first
        self.etag = meta.get("etag")
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (another owner took over)."""
        try:
            meta = await self.services.journal.table.update_entity(
                self._entity(), mode=UpdateMode.REPLACE, etag=self.etag,
                match_condition=MatchConditions.IfNotModified)
        except (HttpResponseError, ResourceNotFoundError):
            return False
        self.etag = meta.get("etag")
        return True

    async def release(self) -> None:
        """Give the lease back if this owner still holds it."""
        table = self.services.journal.table
        try:
            row = await table.get_entity(self.partition, self.row)
        except ResourceNotFoundError:
            return
        if row.get("owner") != self.owner:
            return
        try:
            await table.delete_entity(self.partition, self.row, etag=row.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (HttpResponseError, ResourceNotFoundError):
            pass
