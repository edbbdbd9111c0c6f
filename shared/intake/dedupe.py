"""Deduplication of remediation requests, in Table storage, safe under racing instances.

Why storage and ETags: the same storm reaches the app through several routes at once
(Event Hub, the poller, a Sentinel webhook), handled by many function instances. Each user
has one row; every change to it is a create (fails if it exists) or a replace conditioned
on the ETag read (fails if someone else changed it first), so exactly one racer wins and
the losers re-read and see the winner's request.

Rules (window = `policy.dedupe_minutes`):
- the first actionable signal for a user opens a window and is enqueued;
- more signals for the user inside the window are duplicates, unless their level is
  higher: that upgrades the window and enqueues a request with the higher level;
- a row left `reserved` by an instance that died between reserving and enqueuing is taken
  over after `STALE_RESERVATION` by the next signal (same request id: the runner's request
  id idempotency makes a second copy harmless);
- each (user, detection id) pair is remembered after handling, so a detection seen again
  later (another route, a poll overlap, a retried trigger) is not handled twice.

Users are keyed on their object id whatever form a route named them in (UPN, a guest's
`#EXT#` UPN or home mail, any case): `shared.intake.user_keys` resolves the form, and keeps
each answer as a link row (`state` = `link`) in the users partition, under a row key no
user key can take.

Rows live in the journal table under their own partitions and are written through the
journal's conditional-row API; they are small and not secret.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import ResponderError
from shared.intake.decision import LEVEL_RANK
from shared.models import RemediationRequest
from shared.state import partitions

if TYPE_CHECKING:
    from shared.state.journal import Journal, VersionedRow

USERS_PARTITION = partitions.INTAKE_USERS
DETECTIONS_PARTITION = partitions.INTAKE_DETECTIONS
STALE_RESERVATION = timedelta(minutes=2)
"""A reservation older than this without an enqueue is presumed dead and taken over."""
MAX_ATTEMPTS = 25
"""ETag conflicts retried this many times before giving up (never loops forever)."""
ANY_ETAG = "*"
"""Matches whatever version the row has: a replace that only needs the row to exist."""

AdmissionKind = Literal["new", "upgrade", "takeover", "duplicate"]


class DedupeConflict(ResponderError):
    """Too many concurrent writers for one user row; transient, the trigger retries."""

    retryable = True


def row_key(*parts: str) -> str:
    """A Table row key from any text (UPNs may hold characters keys cannot). Parts are
    joined with '|' after escaping it, so ("a|b", "c") and ("a", "b|c") differ: a hostile
    name cannot make one user's detection key another's. Text without '|' or '\\' keys as
    it always did."""
    joined = "|".join(p.lower().replace("\\", "\\\\").replace("|", "\\|") for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:48]


def link_key(form: str) -> str:
    """Row key of a form -> object id link (apart from every `row_key(user_key)`)."""
    return row_key("user-link", form)


async def read_user_link(journal: Journal, form: str) -> str | None:
    """The object id a form of a user was resolved to, if some instance stored it."""
    await journal.ensure()
    found = await journal.read_row(USERS_PARTITION, link_key(form))
    value = found.values.get("userId") if found is not None else None
    return str(value) if value else None


async def write_user_link(journal: Journal, form: str, user_id: str, now: datetime) -> None:
    """Remember a resolved form, so other instances and later payloads need no lookup."""
    await journal.put_item(USERS_PARTITION, link_key(form), state="link", form=form[:1000],
                           userId=user_id[:200], at=now)


def _rank(level: Any) -> int:
    return LEVEL_RANK.get(str(level or ""), 0)


@dataclass
class Admission:
    """What the deduper decided for one request, and what it needs to confirm or undo it."""

    kind: AdmissionKind
    request: RemediationRequest
    reason: str = ""
    etag: str | None = None
    key: str = ""
    previous: dict[str, Any] | None = None
    """The row before this admission changed it (restored if the enqueue fails)."""
    alias_rows: list[tuple[str, str | None]] = field(default_factory=list)
    """Alias rows this admission created with its reservation (key, ETag): `admit_new`
    writes them at once, so `confirm` has none left to write and `release` deletes them."""

    @property
    def admitted(self) -> bool:
        return self.kind != "duplicate"


class Deduper:
    """Per-user windows and per-detection memory, in the journal's table."""

    def __init__(self, journal: Journal, *, window_minutes: float) -> None:
        self.journal = journal
        self.window = timedelta(minutes=window_minutes)
        self.token = uuid.uuid4().hex
        """Written into this deduper's reservations: a write whose answer was lost (the
        transaction committed, the client saw an error) leaves a reservation this intake
        recognises as its own and goes on to enqueue, instead of taking it for another
        instance's and dropping the signal."""

    # detections ---------------------------------------------------------------------------
    async def detection_handled(self, user_key: str, detection_id: str, level: str) -> bool:
        """True when this user's detection was already handled at this level or higher."""
        row = await self.journal.read_row(DETECTIONS_PARTITION, row_key(user_key, detection_id))
        return row is not None and _rank(row.values.get("level")) >= _rank(level)

    async def mark_detection(self, user_key: str, detection_id: str, level: str, outcome: str,
                             now: datetime, source: str = "") -> None:
        """Remember that this detection was handled (after the fact, so a crash re-handles)."""
        # Every write sets the same properties, so the journal's (merging) upsert leaves
        # exactly what a replace would.
        await self.journal.put_item(DETECTIONS_PARTITION, row_key(user_key, detection_id),
                                    **self._detection_entity(detection_id, level, outcome,
                                                             source, now))

    @staticmethod
    def _detection_entity(detection_id: str, level: str, outcome: str, source: str,
                          now: datetime) -> dict[str, Any]:
        return {"detectionId": detection_id[:1000], "level": level, "outcome": outcome,
                "source": source[:200], "at": now}

    # users --------------------------------------------------------------------------------
    async def admit(self, request: RemediationRequest, user_key: str,
                    aliases: Sequence[str] = (), *, now: datetime) -> Admission:
        """Decide whether `request` (for `user_key`) goes on the queue; reserve it if so.

        The returned request carries the window's deterministic request id. Call `confirm`
        after enqueuing, or `release` when the enqueue failed.
        """
        level = request.risk_level or "high"
        key = row_key(user_key)
        for _ in range(MAX_ATTEMPTS):
            found = await self._get(key)
            if found is None:
                alias = await self._live_alias(aliases, level, now)
                if alias is not None:
                    return self._duplicate(request, alias, key)
                admission = self._new_window(request, user_key, key, level, now, None)
                created = await self.journal.create_row(
                    USERS_PARTITION, key, self._entity(admission, user_key, now))
                if created is None:
                    continue  # another instance created the row first: re-read it
                admission.etag = created
                return admission
            row, etag = found.values, found.etag
            if not self._live(row, now):
                admission = self._new_window(request, user_key, key, level, now, dict(row))
            elif _rank(level) > _rank(row.get("level")):
                window_start = row["windowStart"]
                admission = Admission(
                    "upgrade",
                    self._with_id(request, key, window_start, level),
                    f"upgrades the pending {row.get('level')} request "
                    f"{row.get('requestId')} to {level}",
                    key=key, previous=dict(row),
                )
            elif row.get("state") == "reserved" and (self._stale(row, now)
                                                     or row.get("reservedBy") == self.token):
                stored = _stored_request(row)
                if stored is None:
                    admission = self._new_window(request, user_key, key, level, now, dict(row))
                else:
                    own = row.get("reservedBy") == self.token
                    admission = Admission("takeover", stored,
                                          "resumes its own reservation (a write's answer was "
                                          "lost)" if own else
                                          "takes over a reservation left by a stopped instance",
                                          key=key, previous=dict(row))
            else:
                return self._duplicate(request, row, key)
            written = await self.journal.write_row_if(
                USERS_PARTITION, key, self._entity(admission, user_key, now, row), etag)
            if written is None:
                continue  # another instance changed the row since it was read: re-read it
            admission.etag = written
            return admission
        raise DedupeConflict(f"gave up after {MAX_ATTEMPTS} concurrent updates of one user row")

    async def confirm(self, admission: Admission, aliases: Sequence[str], now: datetime) -> None:
        """Mark the reservation enqueued, and point alias keys (the UPN) at the same window."""
        # None (not written) means a newer upgrade replaced the row; its writer confirms it.
        await self.journal.write_row_if(USERS_PARTITION, admission.key,
                                        {"state": "enqueued", "updatedAt": now},
                                        admission.etag, merge=True)
        for alias in aliases:
            akey = row_key(alias)
            if akey == admission.key:
                continue
            found = await self._get(akey)
            if found is not None and self._live(found.values, now) and _rank(
                    found.values.get("level")) >= _rank(admission.request.risk_level):
                continue
            await self._replace(akey, self._alias_entity(alias, admission, now),
                                exists=found is not None)

    async def release(self, admission: Admission) -> None:
        """Undo a reservation whose enqueue failed, so a retry of the trigger can enqueue."""
        for akey, aetag in admission.alias_rows:
            await self.journal.delete_row_if(USERS_PARTITION, akey, aetag)
        # Conditional on this admission's ETag: a row someone changed since is left alone.
        if admission.previous is None:
            await self.journal.delete_row_if(USERS_PARTITION, admission.key, admission.etag)
        else:
            await self.journal.write_row_if(USERS_PARTITION, admission.key, admission.previous,
                                            admission.etag)

    # many users at once (a storm) -------------------------------------------------------
    async def handled_detections(self, wanted: Sequence[tuple[str, str, str]]) -> set[int]:
        """`detection_handled` for many (user key, detection id, level) at once: the indices
        already handled at their level or higher (a query per few keys, not a read each)."""
        keys = [row_key(user_key, detection) for user_key, detection, _ in wanted]
        rows = await self.journal.read_rows(DETECTIONS_PARTITION, keys)
        return {i for i, (key, (_, _, level)) in enumerate(zip(keys, wanted, strict=True))
                if key in rows and _rank(rows[key].values.get("level")) >= _rank(level)}

    async def admit_new(self, wanted: Sequence[tuple[RemediationRequest, str, Sequence[str]]],
                        *, now: datetime) -> list[Admission | None]:
        """Open a window for each of several users (request, user key, aliases) that none
        has yet: an entity-group transaction creates up to a hundred rows (each user's
        reserved row and its alias rows) at once, so a storm's first alerts cost a write
        per transaction, not one per row.

        Any row that exists already (a window, live or not, an alias, a racer's
        reservation) fails its whole transaction, and nothing of it is written: that user
        is left out (None in the answer: `admit` then reads and decides row by row) and
        the rest of the transaction is tried again, a bounded number of times. A user
        sharing a row key with another of the same call is left out too."""
        answer: list[Admission | None] = [None] * len(wanted)
        planned: list[tuple[int, Admission, list[tuple[str, dict[str, Any]]]]] = []
        taken: set[str] = set()
        for i, (request, user_key, aliases) in enumerate(wanted):
            key = row_key(user_key)
            admission = self._new_window(request, user_key, key, request.risk_level or "high",
                                         now, None)
            rows = [(key, self._entity(admission, user_key, now))]
            rows += [(row_key(a), self._alias_entity(a, admission, now)) for a in aliases
                     if row_key(a) != key]
            keys = {k for k, _ in rows}
            if len(keys) < len(rows) or keys & taken:
                continue
            taken |= keys
            planned.append((i, admission, rows))
        chunk: list[tuple[int, Admission, list[tuple[str, dict[str, Any]]]]] = []
        for item in planned:
            if chunk and sum(len(r) for _, _, r in chunk) + len(item[2]) > \
                    self.journal.BATCH_OPS:
                await self._create_windows(chunk, answer)
                chunk = []
            chunk.append(item)
        if chunk:
            await self._create_windows(chunk, answer)
        return answer

    async def _create_windows(self, chunk: list[tuple[int, Admission,
                                                      list[tuple[str, dict[str, Any]]]]],
                              answer: list[Admission | None]) -> None:
        todo = list(chunk)
        for _ in range(self.NEW_ATTEMPTS):
            if not todo:
                return
            rows = [row for _, _, user_rows in todo for row in user_rows]
            owner = [n for n, (_, _, user_rows) in enumerate(todo) for _ in user_rows]
            made = await self.journal.create_rows(USERS_PARTITION, rows)
            if isinstance(made, int):  # a row exists: its user goes row by row
                del todo[owner[min(made, len(owner) - 1)]]
                continue
            for (key, _), n, etag in zip(rows, owner, made, strict=True):
                i, admission, _ = todo[n]
                if key == admission.key:
                    admission.etag = etag
                else:
                    admission.alias_rows.append((key, etag))
                answer[i] = admission
            return

    NEW_ATTEMPTS = 4
    """Transactions `admit_new` tries, leaving out one user whose row exists each time."""

    async def confirm_many(self, admissions: Sequence[Admission], now: datetime) -> None:
        """`confirm` for admissions made by `admit_new` (their alias rows are written): one
        transaction marks them enqueued; if any row changed meanwhile (a newer upgrade,
        whose writer confirms it), each is confirmed on its own."""
        rows = [(a.key, {"state": "enqueued", "updatedAt": now}, a.etag) for a in admissions]
        if rows and not await self.journal.merge_rows_if(USERS_PARTITION, rows):
            for key, values, etag in rows:
                await self.journal.write_row_if(USERS_PARTITION, key, values, etag,
                                                merge=True)

    async def mark_detections(self, handled: Sequence[tuple[str, str, str, str, str]],
                              now: datetime) -> None:
        """`mark_detection` for many (user key, detection id, level, outcome, source)."""
        await self.journal.put_items(DETECTIONS_PARTITION, [
            (row_key(user_key, detection), self._detection_entity(detection, level, outcome,
                                                                   source, now))
            for user_key, detection, level, outcome, source in handled])

    async def live_window(self, user_key: str, now: datetime) -> dict[str, Any] | None:
        """The user's open dedupe window (a request already queued), or None."""
        found = await self._get(row_key(user_key))
        return found.values if found is not None and self._live(found.values, now) else None

    # helpers ------------------------------------------------------------------------------
    async def _get(self, key: str) -> VersionedRow | None:
        return await self.journal.read_row(USERS_PARTITION, key)

    async def _replace(self, key: str, values: dict[str, Any], *, exists: bool) -> None:
        """Write the whole row whatever its version (last writer wins): replace it when it
        exists, create it when not, and try the other way when a racer got in between."""
        for _ in range(MAX_ATTEMPTS):
            if exists:
                if await self.journal.write_row_if(USERS_PARTITION, key, values,
                                                   ANY_ETAG) is not None:
                    return
            elif await self.journal.create_row(USERS_PARTITION, key, values) is not None:
                return
            exists = not exists
        raise DedupeConflict(f"gave up after {MAX_ATTEMPTS} concurrent writes of one alias row")

    async def _live_alias(self, aliases: Sequence[str], level: str,
                          now: datetime) -> dict[str, Any] | None:
        for alias in aliases:
            found = await self._get(row_key(alias))
            if found is not None and self._live(found.values, now) and _rank(
                    found.values.get("level")) >= _rank(level):
                return found.values
        return None

    def _live(self, row: Any, now: datetime) -> bool:
        start = row.get("windowStart")
        return isinstance(start, datetime) and start + self.window > now

    @staticmethod
    def _stale(row: Any, now: datetime) -> bool:
        reserved = row.get("reservedAt")
        return not isinstance(reserved, datetime) or reserved + STALE_RESERVATION <= now

    def _new_window(self, request: RemediationRequest, user_key: str, key: str, level: str,
                    now: datetime, previous: dict[str, Any] | None) -> Admission:
        return Admission("new", self._with_id(request, key, now, level),
                         f"first {level} request for {user_key} in this window",
                         key=key, previous=previous)

    @staticmethod
    def _with_id(request: RemediationRequest, key: str, window_start: datetime,
                 level: str) -> RemediationRequest:
        """The window's request id: the same user, window and level always give the same id."""
        basis = f"{key}|{window_start.isoformat()}|{level}"
        rid = "alert-" + hashlib.sha256(basis.encode()).hexdigest()[:40]
        return request.model_copy(update={"request_id": rid})

    @staticmethod
    def _duplicate(request: RemediationRequest, row: Any, key: str) -> Admission:
        state = row.get("state")
        what = "being queued by another instance" if state == "reserved" else "queued"
        return Admission(
            "duplicate", request,
            f"duplicate: a {row.get('level')} request ({row.get('requestId')}) for this user "
            f"was already {what} in the dedupe window",
            key=key,
        )

    @staticmethod
    def _alias_entity(alias: str, admission: Admission, now: datetime) -> dict[str, Any]:
        """An alias row: another form of the user, pointing at the admission's window."""
        return {"userKey": alias[:1000], "level": admission.request.risk_level or "high",
                "windowStart": now, "requestId": admission.request.request_id or "",
                "state": "alias", "updatedAt": now, "aliasOf": admission.key}

    def _entity(self, admission: Admission, user_key: str, now: datetime,
                row: Any = None) -> dict[str, Any]:
        keeps_window = admission.kind in ("upgrade", "takeover") and row is not None
        window_start = row["windowStart"] if keeps_window else now
        return {
            "userKey": user_key[:1000], "level": admission.request.risk_level or "high",
            "windowStart": window_start, "requestId": admission.request.request_id or "",
            "state": "reserved", "reservedAt": now, "updatedAt": now,
            "reservedBy": self.token, "message": admission.request.to_message(),
        }


def _stored_request(row: Any) -> RemediationRequest | None:
    """The request a reservation was made for (to re-enqueue it on takeover)."""
    try:
        return RemediationRequest.model_validate(json.loads(row.get("message") or ""))
    except ValueError:
        return None
