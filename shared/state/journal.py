"""Run state and the audit trail, in Table storage; evidence documents in Blob storage.

One partition per run holds the run record, one entity per step (so a redelivered message
resumes after the last finished step), and append-only events. A per-user partition
indexes runs by user, for deduplication and the sweeps. Nothing secret is ever written
here: callers pass summaries and change records, never passwords or tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from shared.models import StepResult, StepStatus
from shared.state import partitions, transactions
from shared.state.clock import now
from shared.state.storage import Storage

MAX_PROPERTY_CHARS = 30_000
"""Table string properties hold 64 KiB (32K UTF-16 chars); bigger data goes to blobs."""
_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def safe_key(value: str) -> str:
    """A Table key from any text: kept when legal and short, else a stable digest."""
    if value and len(value) <= 200 and not _BAD_KEY.search(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def user_partition(user_key: str) -> str:
    return partitions.RUN_INDEX_PREFIX + hashlib.sha256(user_key.lower().encode()).hexdigest()[:40]




FINAL_STATES = frozenset({"finished", "failed", "refused", "released", "poisoned"})
"""Run states that do not change any more (an index row carrying one is current)."""


def _exists(exc: TableTransactionError) -> bool:
    """The transaction failed because a row it creates exists already."""
    code = str(getattr(exc, "error_code", "") or "")
    return code == "EntityAlreadyExists" or "EntityAlreadyExists" in str(exc)


def _dump(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    if len(text) > MAX_PROPERTY_CHARS:
        return json.dumps({"truncated": True, "chars": len(text)})
    return text


def _load(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


class RidingLease(Protocol):
    """A lease whose row can ride in a run's transactions (shared.state.lease.Lease, which
    builds on this module)."""

    def create_op(self) -> tuple[Any, ...]: ...
    def took(self, answers: list[Any] | None) -> bool: ...
    def release_op(self) -> tuple[Any, ...] | None: ...
    def gave_back(self, answers: list[Any] | None) -> None: ...


@dataclass
class RunRecord:
    """The run as journaled: who, what, where it stands."""

    run_id: str
    user: str
    state: str = "running"
    user_id: str | None = None
    upn: str | None = None
    playbook: str | None = None
    steps: list[str] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    finished_at: datetime | None = None
    reason: str = ""
    evidence_blob: str = ""
    dry_run: bool = False
    attempts: int = 0
    resumes: int = 0
    """Times the stalled-run sweep re-enqueued this run (capped there). Written only by
    conditional saves (`save_run_if`), so a delivery's plain `save_run` never resets it."""
    etag: str | None = None
    indexed: list[str] = field(default_factory=list)
    """The user keys whose index row exists (written once each: see `_index_user`)."""
    approval_asked: bool = False
    """An approval was opened for this run: only then does a delivery read the approval row
    (shared.safety.approvals.gating)."""

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.run_id, "RowKey": "run", "user": self.user,
            "userId": self.user_id or "", "upn": self.upn or "", "state": self.state,
            "playbook": self.playbook or "", "steps": _dump(self.steps),
            "request": _dump(self.request), "createdAt": self.created_at,
            "updatedAt": self.updated_at, "finishedAt": self.finished_at,
            "reason": self.reason[:4000], "evidenceBlob": self.evidence_blob,
            "dryRun": self.dry_run, "attempts": self.attempts,
            "indexed": _dump(self.indexed), "approvalAsked": self.approval_asked,
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=e["PartitionKey"], user=e.get("user", ""), state=e.get("state", "running"),
            user_id=e.get("userId") or None, upn=e.get("upn") or None,
            playbook=e.get("playbook") or None, steps=_load(e.get("steps"), []),
            request=_load(e.get("request"), {}), created_at=e.get("createdAt") or now(),
            updated_at=e.get("updatedAt") or now(), finished_at=e.get("finishedAt"),
            reason=e.get("reason", ""), evidence_blob=e.get("evidenceBlob", ""),
            dry_run=bool(e.get("dryRun")), attempts=int(e.get("attempts") or 0),
            resumes=int(e.get("resumes") or 0), indexed=_load(e.get("indexed"), []),
            approval_asked=bool(e.get("approvalAsked")),
            etag=(e.metadata or {}).get("etag") if hasattr(e, "metadata") else None,
        )


@dataclass
class VersionedRow:
    """A Table row and the ETag it had when read."""

    values: dict[str, Any]
    etag: str | None


class Journal:
    """Reads and writes run records, step outcomes, events and evidence."""

    def __init__(self, storage: Storage, table: str, container: str) -> None:
        self._storage = storage
        self._table_name = table
        self._container_name = container
        self._table: TableClient | None = None
        self._ready = False

    async def ensure(self) -> None:
        """Create the table and container once per process."""
        if self._ready:
            return
        self._table = self._storage.tables.get_table_client(self._table_name)
        try:
            await self._storage.tables.create_table(self._table_name)
        except ResourceExistsError:
            pass
        try:
            await self._storage.blobs.create_container(self._container_name)
        except ResourceExistsError:
            pass
        self._ready = True

    @property
    def table(self) -> TableClient:
        assert self._table is not None, "call ensure() first"
        return self._table

    # runs -----------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> RunRecord | None:
        await self.ensure()
        try:
            entity = await self.table.get_entity(run_id, "run")
        except ResourceNotFoundError:
            return None
        return RunRecord.from_entity(entity)

    async def create_run(self, run: RunRecord,
                         first_event: tuple[str, str, dict[str, Any]] | None = None, *,
                         lease: RidingLease | None = None) -> bool:
        """Create the run record (with its first event, in one transaction); False when it
        already exists (a redelivery). With `lease`, the run's lease row is created in the
        same transaction (`lease.took` says whether it was)."""
        await self.ensure()
        try:
            answers = await self.write_batch(
                run.run_id, run=run, create_run=True,
                events=[first_event] if first_event else [],
                also=[lease.create_op()] if lease is not None else None)
        except (ResourceExistsError, TableTransactionError) as exc:
            if isinstance(exc, TableTransactionError) and not _exists(exc):
                raise
            return False
        if lease is not None:
            lease.took(answers)
        await self._index_user(run)
        return True

    async def save_run(self, run: RunRecord, *,
                       events: list[tuple[str, str, dict[str, Any]]] | None = None,
                       release: RidingLease | None = None) -> None:
        """Save unconditionally (merge): for the holder of the run's lease, with the events
        that say why, in one transaction. Keeps `run.etag` current, so a later
        `save_run_if` by the same holder does not lose to itself. With `release` (the
        holder's last save), the lease row is deleted in the same transaction."""
        await self._index_user(run)  # first: the record then lists the keys indexed
        op = release.release_op() if release is not None else None
        answers = await self.write_batch(run.run_id, run=run, events=events,
                                         also=[op] if op is not None else None)
        if release is not None:
            release.gave_back(answers)

    async def save_run_if(self, run: RunRecord) -> bool:
        """Save only if the record still has `run.etag` (the version this writer read);
        False when another writer changed it meanwhile: re-read (`get_run`) and decide
        again, instead of keeping whichever wrote last."""
        await self.ensure()
        updated_at = run.updated_at
        run.updated_at = now()
        values = {k: v for k, v in run.to_entity().items()
                  if k not in ("PartitionKey", "RowKey")}
        values["resumes"] = run.resumes
        etag = await self.write_row_if(run.run_id, "run", values, run.etag, merge=True)
        if etag is None:
            run.updated_at = updated_at
            return False
        run.etag = etag
        await self._index_user(run)
        return True

    async def record_resume(self, run: RunRecord) -> bool:
        """Count one re-enqueue of a stalled run, only if the record still has `run.etag`
        (False: the run moved meanwhile). `updatedAt` stays: the run itself did not move."""
        await self.ensure()
        etag = await self.write_row_if(run.run_id, "run",
                                       {"resumes": run.resumes + 1, "resumedAt": now()},
                                       run.etag, merge=True)
        if etag is None:
            return False
        run.resumes += 1
        run.etag = etag
        return True

    async def _index_user(self, run: RunRecord) -> None:
        """Write the index row of each user key the run has not indexed yet. A row is
        written once (the state it carries is a hint, refreshed by `runs_for_user`), so a
        run's later saves cost no index writes. The keys written are recorded on the run
        by its next save."""
        done = {k.lower() for k in run.indexed}
        for key in sorted({k for k in (run.user_id, run.upn, run.user) if k}):
            if key.lower() in done:
                continue  # the same partition (keys are case-blind): written already
            done.add(key.lower())
            await self.table.upsert_entity({
                "PartitionKey": user_partition(key), "RowKey": run.run_id,
                "state": run.state, "createdAt": run.created_at, "updatedAt": now(),
                "finishedAt": run.finished_at, "playbook": run.playbook or "",
                "dryRun": run.dry_run,
            })
            run.indexed.append(key)

    async def runs_for_user(self, user_key: str) -> list[dict[str, Any]]:
        """Index rows of every run for a user (object id, UPN or the requested name). A row
        whose state is not final is brought up to date from its run record (index rows are
        written once, when the run learns the key)."""
        await self.ensure()
        pk = user_partition(user_key)
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})
        found = [dict(r) async for r in rows]
        for row in found:
            if row.get("state") in FINAL_STATES:
                continue
            run = await self.get_run(str(row["RowKey"]))
            if run is not None:
                row.update(state=run.state, updatedAt=run.updated_at,
                           finishedAt=run.finished_at)
        return found

    async def list_runs(self, *, limit: int = 1000, state: str | None = None) -> list[RunRecord]:
        """Run records, oldest first (for reports and the stalled-run sweep). `state` filters
        on the server, so a large table does not hide the runs asked for."""
        await self.ensure()
        if state is not None:
            rows = self.table.query_entities("RowKey eq 'run' and state eq @state",
                                             parameters={"state": state},
                                             results_per_page=200)
        else:
            rows = self.table.query_entities("RowKey eq 'run'", results_per_page=200)
        found: list[RunRecord] = []
        async for row in rows:
            found.append(RunRecord.from_entity(row))
            if len(found) >= limit:
                break
        return sorted(found, key=lambda r: r.created_at)

    async def run_and_steps(self, run_id: str) -> tuple[RunRecord | None,
                                                        dict[str, StepResult]]:
        """The run record and its step outcomes in one query (the rows `run` and `step-*`
        sort next to each other): what a redelivery or the clean-up lane reads first."""
        await self.ensure()
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'run' and RowKey lt 'step.'",
            parameters={"pk": run_id},
        )
        run: RunRecord | None = None
        out: dict[str, StepResult] = {}
        async for e in rows:
            key = str(e.get("RowKey"))
            if key == "run":
                run = RunRecord.from_entity(e)
            elif key.startswith("step-"):
                result = self._step_result(e)
                out[result.step] = result
        return run, out

    # steps ------------------------------------------------------------------------------
    async def step_results(self, run_id: str) -> dict[str, StepResult]:
        await self.ensure()
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'step-' and RowKey lt 'step.'",
            parameters={"pk": run_id},
        )
        out: dict[str, StepResult] = {}
        async for e in rows:
            result = self._step_result(e)
            out[result.step] = result
        return out

    @staticmethod
    def _step_result(e: dict[str, Any]) -> StepResult:
        return StepResult(
            step=e["step"], status=StepStatus(e["status"]), summary=e.get("summary", ""),
            changes=_load(e.get("changes"), []), error_code=e.get("errorCode") or None,
            request_id=e.get("requestId") or None, started_at=e.get("startedAt") or now(),
            finished_at=e.get("finishedAt"), data=_load(e.get("data"), {}),
        )

    async def record_step(self, run_id: str, result: StepResult, attempt: int) -> None:
        """The step's row and its event, in one transaction."""
        await self.write_batch(run_id, steps=[(result, attempt)])

    @staticmethod
    def _step_entity(run_id: str, result: StepResult, attempt: int) -> dict[str, Any]:
        return {
            "PartitionKey": run_id, "RowKey": f"step-{result.step}", "step": result.step,
            "status": result.status.value, "summary": result.summary[:4000],
            "changes": _dump(result.changes), "errorCode": result.error_code or "",
            "requestId": result.request_id or "", "startedAt": result.started_at,
            "finishedAt": result.finished_at or now(), "attempt": attempt,
            "data": _dump(result.data),
        }

    BATCH_OPS = 100
    """Operations per entity-group transaction (the service's limit)."""

    async def write_batch(self, run_id: str, *, run: RunRecord | None = None,
                          create_run: bool = False,
                          steps: list[tuple[StepResult, int]] | None = None,
                          events: list[tuple[str, str, dict[str, Any]]] | None = None,
                          also: list[tuple[Any, ...]] | None = None) -> list[Any] | None:
        """Write a run's rows together: the run record (created, or merged), step rows and
        their events, and further events, in as few entity-group transactions as the
        service allows (all in the run's partition; one round trip instead of one per
        row). Events are only ever created: a colliding event key fails the transaction,
        which is retried with fresh keys (bounded).

        `also` are conditional operations on other rows of the partition that may ride
        along (the run lease's creation or release, shared.state.lease): when the service
        refuses one of them, the rest is written without them. Returns their answers (with
        the ETags), or None when they were left out. A transaction may hold Insert, Update,
        Merge and Delete Entity operations (a delete with its If-Match), each entity once,
        all or nothing (learn.microsoft.com/rest/api/storageservices/
        performing-entity-group-transactions)."""
        await self.ensure()
        rows: list[tuple[Any, ...]] = []
        if run is not None:
            if not create_run:  # a new record keeps the times it was made with
                run.updated_at = now()
            rows.append(("create", run.to_entity()) if create_run
                        else ("upsert", run.to_entity(), {"mode": UpdateMode.MERGE}))
        extra = list(also or [])
        first_extra = len(rows)
        rows.extend(extra)
        notes: list[tuple[str, str, dict[str, Any]]] = []
        for result, attempt in steps or []:
            rows.append(("upsert", self._step_entity(run_id, result, attempt),
                         {"mode": UpdateMode.MERGE}))
            notes.append(("step", f"{result.step}: {result.status.value}",
                          {"summary": result.summary[:1000], "errorCode": result.error_code}))
            notes.extend(result.events)
        notes.extend(events or [])
        attempt = 0
        while attempt < self.EVENT_KEY_ATTEMPTS:
            attempt += 1
            ops = [*rows, *(("create", self._event_entity(run_id, *n)) for n in notes)]
            try:
                answers: list[Any] = []
                for start in range(0, len(ops), self.BATCH_OPS):
                    answers.extend(await transactions.submit(
                        self.table, ops[start:start + self.BATCH_OPS]))
            except TableTransactionError as exc:
                failed = exc.index if isinstance(exc.index, int) else -1
                # The rows of the run only create (409) or upsert: a 404 or 412 can only be
                # the conditional `also` row's, even where the service names no index.
                if extra and (first_extra <= failed < first_extra + len(extra)
                              or exc.status_code in (404, 412)):
                    # The lease row changed or exists: write the rest without it (the
                    # caller then takes or gives back the lease on its own).
                    del rows[first_extra:first_extra + len(extra)]
                    extra = []
                    attempt -= 1
                    continue
                # Only a colliding (random) event key is worth new keys; a run record that
                # exists already (create) is the caller's answer, and the rest is storage's.
                if (_exists(exc) and failed >= len(rows)
                        and attempt < self.EVENT_KEY_ATTEMPTS):
                    continue
                raise
            if run is not None and answers:
                run.etag = (answers[0] or {}).get("etag") or run.etag
            return answers[first_extra:first_extra + len(extra)] if extra else None
        return None  # not reached: the last attempt returns or raises

    # events (append-only) ------------------------------------------------------------------
    EVENT_KEY_ATTEMPTS = 5
    """Fresh row keys tried when one collides (a timestamp and 32 random bits: never, in
    practice); bounded, so a broken key source fails loudly instead of looping."""

    @staticmethod
    def _event_key(stamp: datetime) -> str:
        """An event's row key: `ev-` + its time (so events sort in order) + random bits."""
        return f"ev-{stamp.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"

    @classmethod
    def _event_entity(cls, partition: str, kind: str, message: str,
                      data: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new event row, under a fresh key: only ever created (`event`, `write_batch`)."""
        stamp = now()
        return {"PartitionKey": partition, "RowKey": cls._event_key(stamp), "kind": kind,
                "message": message[:4000], "at": stamp, "data": _dump(data or {})}

    async def event(self, partition: str, kind: str, message: str,
                    data: dict[str, Any] | None = None) -> None:
        """Append one audit event. Created, never updated or deleted, by any code path (the
        audit trail is append-only in fact): a row key that exists already is retried with a
        fresh key, never overwritten."""
        await self.ensure()
        for attempt in range(1, self.EVENT_KEY_ATTEMPTS + 1):
            try:
                await self.table.create_entity(self._event_entity(partition, kind, message,
                                                                  data))
                return
            except ResourceExistsError:
                if attempt == self.EVENT_KEY_ATTEMPTS:
                    raise

    async def events(self, partition: str) -> list[dict[str, Any]]:
        await self.ensure()
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'ev-' and RowKey lt 'ev.'",
            parameters={"pk": partition},
        )
        out = [dict(r) async for r in rows]
        for row in out:
            row["data"] = _load(row.get("data"), {})
        return out

    # key-value rows for other features (watermarks, checkpoints, pending unblocks) ---------
    async def put_item(self, partition: str, row: str, **values: Any) -> None:
        await self.ensure()
        await self.table.upsert_entity({"PartitionKey": partition, "RowKey": safe_key(row),
                                        **values})

    async def get_item(self, partition: str, row: str) -> dict[str, Any] | None:
        await self.ensure()
        try:
            return dict(await self.table.get_entity(partition, safe_key(row)))
        except ResourceNotFoundError:
            return None

    async def items(self, partition: str) -> list[dict[str, Any]]:
        await self.ensure()
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
        return [dict(r) async for r in rows]

    async def delete_item(self, partition: str, row: str) -> None:
        await self.ensure()
        try:
            await self.table.delete_entity(partition, safe_key(row))
        except ResourceNotFoundError:
            pass

    # conditional rows: every optimistic-concurrency write of the app goes through these ------
    async def read_row(self, partition: str, row: str) -> VersionedRow | None:
        """A row with its ETag, for a later conditional write; None when absent."""
        await self.ensure()
        try:
            entity = await self.table.get_entity(partition, safe_key(row))
        except ResourceNotFoundError:
            return None
        return VersionedRow(dict(entity), entity.metadata.get("etag"))

    async def create_row(self, partition: str, row: str, values: dict[str, Any]) -> str | None:
        """Create the row; its ETag, or None when it exists already (someone was first)."""
        await self.ensure()
        try:
            meta = await self.table.create_entity(
                {**values, "PartitionKey": partition, "RowKey": safe_key(row)})
        except ResourceExistsError:
            return None
        return meta.get("etag")

    async def write_row_if(self, partition: str, row: str, values: dict[str, Any],
                           etag: str | None, *, merge: bool = False) -> str | None:
        """Replace (or merge into) the row only if it still has `etag`; the new ETag, or None
        when the row changed or vanished meanwhile (another writer won)."""
        await self.ensure()
        try:
            meta = await self.table.update_entity(
                {**values, "PartitionKey": partition, "RowKey": safe_key(row)},
                mode=UpdateMode.MERGE if merge else UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return None
            raise
        return meta.get("etag")

    async def delete_row_if(self, partition: str, row: str, etag: str | None) -> bool:
        """Delete the row only if it still has `etag`; False when another writer changed it."""
        await self.ensure()
        try:
            await self.table.delete_entity(partition, safe_key(row), etag=etag,
                                           match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        return True

    # many rows of one partition at once (a storm's intake) ------------------------------
    FILTER_KEYS = 14
    """Row keys per query: the Table service allows 15 comparisons in one $filter, and the
    partition key takes one (learn.microsoft.com/rest/api/storageservices/
    querying-tables-and-entities)."""

    async def read_rows(self, partition: str, rows: list[str]) -> dict[str, VersionedRow]:
        """The rows of `partition` that exist among `rows`, by the row key given: one query
        per FILTER_KEYS keys instead of a read each."""
        await self.ensure()
        wanted = {safe_key(r): r for r in rows}
        keys = list(wanted)
        found: dict[str, VersionedRow] = {}
        for start in range(0, len(keys), self.FILTER_KEYS):
            chunk = keys[start:start + self.FILTER_KEYS]
            params = {"pk": partition, **{f"k{i}": k for i, k in enumerate(chunk)}}
            keyed = " or ".join(f"RowKey eq @k{i}" for i in range(len(chunk)))
            async for entity in self.table.query_entities(
                    f"PartitionKey eq @pk and ( {keyed} )", parameters=params):
                found[wanted[entity["RowKey"]]] = VersionedRow(dict(entity),
                                                               entity.metadata.get("etag"))
        return found

    async def create_rows(self, partition: str,
                          rows: list[tuple[str, dict[str, Any]]]) -> list[str | None] | int:
        """Create every row in one entity-group transaction (at most BATCH_OPS): their
        ETags, or the index of a row that exists already (then nothing was written)."""
        await self.ensure()
        if not rows:
            return []
        if len(rows) > self.BATCH_OPS:
            raise ValueError(f"{len(rows)} rows: a transaction holds {self.BATCH_OPS}")
        ops = [("create", {**values, "PartitionKey": partition, "RowKey": safe_key(row)})
               for row, values in rows]
        try:
            answers = await transactions.submit(self.table, ops)
        except TableTransactionError as exc:
            if _exists(exc) and exc.index is not None:
                return int(exc.index)
            raise
        return [(a or {}).get("etag") for a in answers]

    async def merge_rows_if(self, partition: str,
                            rows: list[tuple[str, dict[str, Any], str | None]]) -> bool:
        """Merge `values` into each row only if it still has its ETag, all in one
        transaction: False (nothing written) when any of them changed meanwhile."""
        await self.ensure()
        for start in range(0, len(rows), self.BATCH_OPS):
            ops = [("update", {**values, "PartitionKey": partition, "RowKey": safe_key(row)},
                    {"mode": UpdateMode.MERGE, "etag": etag,
                     "match_condition": MatchConditions.IfNotModified})
                   for row, values, etag in rows[start:start + self.BATCH_OPS]]
            try:
                await transactions.submit(self.table, ops)
            except TableTransactionError as exc:
                if exc.status_code in (404, 409, 412):
                    return False
                raise
        return True

    async def put_items(self, partition: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """`put_item` for many rows of one partition: a transaction per BATCH_OPS rows."""
        await self.ensure()
        ops = [("upsert", {**values, "PartitionKey": partition, "RowKey": safe_key(row)},
                {"mode": UpdateMode.MERGE}) for row, values in rows]
        for start in range(0, len(ops), self.BATCH_OPS):
            await transactions.submit(self.table, ops[start:start + self.BATCH_OPS])

    # evidence -----------------------------------------------------------------------------
    async def put_evidence(self, run_id: str, name: str, document: dict[str, Any]) -> str:
        await self.ensure()
        blob = f"{run_id}/{name}.json"
        client = self._storage.blobs.get_blob_client(self._container_name, blob)
        data = json.dumps(document, default=str, indent=2, sort_keys=True).encode()
        await client.upload_blob(data, overwrite=True)
        return f"{self._container_name}/{blob}"

    async def get_evidence(self, run_id: str, name: str) -> dict[str, Any] | None:
        await self.ensure()
        client = self._storage.blobs.get_blob_client(self._container_name, f"{run_id}/{name}.json")
        try:
            stream = await client.download_blob()
        except ResourceNotFoundError:
            return None
        document: dict[str, Any] = json.loads(await stream.readall())  # put_evidence writes a dict
        return document


class StepWriter:
    """Records the steps of one delivery of a run, several at a time, so a run of a dozen
    steps costs a few Table operations, not two dozen. Each `record` still returns only
    once its row is stored: a step counts as done only when it is recorded.

    When the runner tells it which steps have started (`step_started`), a finished step's
    record waits until every started step has handed its record over, or `linger` seconds
    at most: steps running side by side share one transaction, and a step that others wait
    for (they start only after it) is written at once. Told nothing, records that arrive
    within `linger` seconds of each other share one."""

    def __init__(self, journal: Journal, run_id: str, linger: float = 0.02) -> None:
        self.journal = journal
        self.run_id = run_id
        self.linger = linger
        self.started = 0
        """Steps of this delivery started so far (told by the runner)."""
        self._handed = 0
        self._pending: list[tuple[StepResult, int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None

    def step_started(self) -> None:
        self.started += 1

    async def record(self, result: StepResult, attempt: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((result, attempt, fut))
        self._handed += 1
        if self._arrived is not None:
            self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._flush())
        await asyncio.shield(fut)

    async def _gathered(self) -> None:
        """Wait for the records of the other running steps (at most `linger` seconds)."""
        if not self.started:
            await asyncio.sleep(self.linger)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger
        self._arrived = self._arrived or asyncio.Event()
        while self._handed < self.started and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def _flush(self) -> None:
        while self._pending:
            await self._gathered()
            batch, self._pending = self._pending, []
            try:
                await self.journal.write_batch(self.run_id,
                                               steps=[(r, a) for r, a, _ in batch])
            except Exception as exc:  # each waiting step sees the storage failure
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for *_, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def drain(self) -> None:
        """Wait for the rows already handed over (the delivery ends after them)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
