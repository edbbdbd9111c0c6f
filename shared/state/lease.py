"""One lease mechanism for everything that must not run twice at once (a run's delivery,
the poller, each sweep): a Table row with an owner and an expiry, taken, renewed and
released with ETag-conditional writes (`Journal.*_row*`), so that of two racing instances
exactly one wins. A holder that dies simply lets the expiry pass."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from shared.state.clock import now
from shared.state.journal import Journal


class Lease:
    """The lease row `partition/row`, held by `owner` for `seconds` at a time."""

    def __init__(self, journal: Journal, partition: str, row: str, seconds: float,
                 owner: str | None = None) -> None:
        self.journal = journal
        self.partition = partition
        self.row = row
        self.seconds = seconds
        self.owner = owner or uuid.uuid4().hex
        self.etag: str | None = None

    def _values(self) -> dict[str, Any]:
        taken = now()
        return {"owner": self.owner, "takenAt": taken,
                "expiresAt": taken + timedelta(seconds=self.seconds)}

    async def try_acquire(self) -> float:
        """0 when this owner now holds the lease (free, expired, already its own, or taken
        over); otherwise the seconds the other holder's lease still runs."""
        for _ in range(5):
            etag = await self.journal.create_row(self.partition, self.row, self._values())
            if etag is not None:
                self.etag = etag
                return 0.0
            current = await self.journal.read_row(self.partition, self.row)
            if current is None:
                continue  # released meanwhile: try to create it again
            expires = current.values.get("expiresAt")
            holder = current.values.get("owner")
            left = (expires - now()).total_seconds() if isinstance(expires, datetime) else 0.0
            if left > 0 and holder != self.owner:
                return left
            etag = await self.journal.write_row_if(self.partition, self.row, self._values(),
                                                   current.etag)
            if etag is not None:
                self.etag = etag
                return 0.0
        return max(self.seconds, 1.0)  # lost every race: treat it as held

    async def acquire(self) -> bool:
        """True when this owner now holds the lease."""
        return await self.try_acquire() == 0.0

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (another owner took over)."""
        etag = await self.journal.write_row_if(self.partition, self.row, self._values(),
                                               self.etag)
        if etag is None:
            return False
        self.etag = etag
        return True

    async def release(self) -> None:
        """Give the lease back if this owner still holds it."""
        current = await self.journal.read_row(self.partition, self.row)
        if current is None or current.values.get("owner") != self.owner:
            return
        await self.journal.delete_row_if(self.partition, self.row, current.etag)
