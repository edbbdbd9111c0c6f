"""One lease mechanism for everything that must not run twice at once (a run's delivery,
the poller, each sweep): a Table row with an owner and an expiry, taken, renewed and
released with ETag-conditional writes (`Journal.*_row*`), so that of two racing instances
exactly one wins. A holder that dies simply lets the expiry pass."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions

from shared.errors import ResponderError
from shared.state.clock import now
from shared.state.journal import Journal

log = logging.getLogger("responder.lease")
T = TypeVar("T")


class LeaseLost(ResponderError):
    """A renewal found the lease taken over (or could not renew it before it ran out): the
    work done under it was stopped, since another holder may now be acting."""


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
        self.held_until: datetime | None = None
        """When this owner's last successful write lets the lease run out."""
        self.closing = False
        """The holder is saving its last word (with the release in the same transaction,
        `release_op`): no renewal may change the ETag that release names."""
        self.released = False
        self._offered: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        taken = now()
        return {"owner": self.owner, "takenAt": taken,
                "expiresAt": taken + timedelta(seconds=self.seconds)}

    def _held(self, values: dict[str, Any], etag: str) -> None:
        self.etag = etag
        self.held_until = values["expiresAt"]

    def create_op(self) -> tuple[Any, ...]:
        """The lease row's creation, to ride in the transaction that creates what it
        guards (Journal.write_batch `also`): a new run is taken in the write that makes it.
        `took` then learns the ETag; if the service refused it, `try_acquire` as usual."""
        self._offered = self._values()
        return ("create", {**self._offered, "PartitionKey": self.partition,
                           "RowKey": self.row})

    def took(self, answers: list[Any] | None) -> bool:
        """Whether the transaction carrying `create_op` made this owner the holder."""
        etag = (answers[0] or {}).get("etag") if answers else None
        if not etag or self._offered is None:
            return False
        self._held(self._offered, etag)
        return True

    def release_op(self) -> tuple[Any, ...] | None:
        """The lease row's conditional delete, to ride in the holder's final save (one
        operation fewer than saving and then releasing). Renewals stop from here on
        (`closing`), so the ETag stays the one named; `gave_back` records the outcome."""
        if self.etag is None or self.released:
            return None
        self.closing = True
        return ("delete", {"PartitionKey": self.partition, "RowKey": self.row},
                {"etag": self.etag, "match_condition": MatchConditions.IfNotModified})

    def gave_back(self, answers: list[Any] | None) -> None:
        """The final save's outcome for `release_op`: with answers the row is gone, and
        `release` has nothing left to do; without, `release` deletes it as usual."""
        if answers:
            self.released = True
            self.etag = None

    async def try_acquire(self) -> float:
        """0 when this owner now holds the lease (free, expired, already its own, or taken
        over); otherwise the seconds the other holder's lease still runs."""
        for _ in range(5):
            values = self._values()
            etag = await self.journal.create_row(self.partition, self.row, values)
            if etag is not None:
                self._held(values, etag)
                return 0.0
            current = await self.journal.read_row(self.partition, self.row)
            if current is None:
                continue  # released meanwhile: try to create it again
            expires = current.values.get("expiresAt")
            holder = current.values.get("owner")
            left = (expires - now()).total_seconds() if isinstance(expires, datetime) else 0.0
            if left > 0 and holder != self.owner:
                return left
            values = self._values()
            etag = await self.journal.write_row_if(self.partition, self.row, values,
                                                   current.etag)
            if etag is not None:
                self._held(values, etag)
                return 0.0
        return max(self.seconds, 1.0)  # lost every race: treat it as held

    async def acquire(self) -> bool:
        """True when this owner now holds the lease."""
        return await self.try_acquire() == 0.0

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (another owner took over)."""
        values = self._values()
        etag = await self.journal.write_row_if(self.partition, self.row, values, self.etag)
        if etag is None:
            # A renewal whose answer was lost is resent by the storage SDK with the old
            # ETag and refused (412), though it was written: the row still names this
            # owner, so nobody took over. Renew again on the row's current ETag.
            current = await self.journal.read_row(self.partition, self.row)
            if current is None or current.values.get("owner") != self.owner:
                return False
            values = self._values()
            etag = await self.journal.write_row_if(self.partition, self.row, values,
                                                   current.etag)
            if etag is None:
                return False
        self._held(values, etag)
        return True

    async def run_while_held(self, work: Awaitable[T]) -> T:
        """Await `work` (under a lease this owner holds), renewing the lease every third of
        its length. A short lease then suffices for long work, and a crashed holder's lease
        runs out soon. When a renewal finds the lease lost, or cannot renew it before it
        runs out (storage down), `work` is cancelled and LeaseLost raised: another holder
        may be acting, so this one stops."""
        task = asyncio.ensure_future(work)
        lost: list[str] = []

        async def keep() -> None:
            while True:
                await asyncio.sleep(max(self.seconds / 3, 0.05))
                if self.closing or self.released:
                    return  # the holder's last save gives the lease back
                try:
                    if await self.renew():
                        continue
                    if self.closing or self.released:
                        return  # the final save removed the row meanwhile
                    lost.append("another owner took the lease over")
                except Exception as exc:  # storage hiccup: fine while the lease still runs
                    left = ((self.held_until - now()).total_seconds()
                            if self.held_until else 0.0)
                    log.warning("could not renew the lease %s/%s: %s", self.partition,
                                self.row, type(exc).__name__)
                    if left > self.seconds / 3:
                        continue
                    lost.append(f"could not renew it before it ran out ({type(exc).__name__})")
                task.cancel()
                return

        keeper = asyncio.ensure_future(keep())
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lost and not (current is not None and current.cancelling()):
                raise LeaseLost(f"lease {self.partition}/{self.row} lost: {lost[0]}") from None
            raise
        finally:
            keeper.cancel()
            task.cancel()
            await asyncio.gather(keeper, task, return_exceptions=True)

    async def release(self) -> None:
        """Give the lease back if this owner still holds it: one conditional delete on the
        ETag of this owner's last write; only when that fails (a renewal whose answer was
        lost changed the ETag) is the row read to see whose it is. Nothing, once a final
        save gave it back (`release_op`)."""
        if self.released:
            return
        if self.etag is not None and await self.journal.delete_row_if(
                self.partition, self.row, self.etag):
            return
        current = await self.journal.read_row(self.partition, self.row)
        if current is None or current.values.get("owner") != self.owner:
            return
        await self.journal.delete_row_if(self.partition, self.row, current.etag)
