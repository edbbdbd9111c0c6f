"""The one path every alert trigger uses: payload -> signals -> decision -> dedupe -> queue.

HTTP, Event Grid, Event Hub, the poller and `cli replay` all call `intake_payload` (or
`intake_signals`), so a payload gives the same requests whichever way it arrived. Every
signal that starts nothing is recorded with its reason in the journal partition
`INTAKE_PARTITION`, so an administrator can see why an alert did not start a run.

Group exclusions need a Graph call (`checkMemberGroups`). The HTTP webhook passes
`check_groups=False` to stay fast (Graph's notification budget is 3 seconds): the worker's
runner refuses members of excluded groups anyway, before any step runs. The other routes
check here, so an excluded member never even reaches the queue from them.

Every route keys a user the same way (`shared.intake.user_keys`): by object id, looked up in
the directory where a payload names the user only by UPN or mail, so a detection that comes
by three routes in three forms of the same user still gives one request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError as PydanticValidationError

from shared.errors import ServiceError
from shared.intake.decision import LEVEL_RANK, Refusal, decide, effective_level
from shared.intake.dedupe import Admission, Deduper
from shared.intake.routing import Refused, split
from shared.intake.sources import NormaliseResult, normalise
from shared.intake.sources.result import AlertProblem, UserChange
from shared.intake.user_checks import queue_user_checks
from shared.intake.user_keys import UserKeys
from shared.models import RemediationRequest, RiskSignal
from shared.safety.exclusions import group_reason
from shared.services import Services
from shared.state import partitions
from shared.state.journal import Journal

if TYPE_CHECKING:
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.intake")

INTAKE_PARTITION = partitions.INTAKE
"""Journal event partition of every intake decision that did not (or did) enqueue."""
CONCURRENCY = 16
"""Users handled at once within one payload (each user's signals stay in order)."""
BULK_MIN_USERS = 2
"""A payload naming at least this many users with one signal each takes them in together
(`_take_in_bulk`: a few Table transactions for a storm's payload, not rows one by one)."""
BULK_CHUNK = Journal.FILTER_KEYS
"""Users taken in together: one query reads their detections (Journal.FILTER_KEYS), and a
payload's first requests are queued before its later users are decided."""

UNKNOWN_TENANT = "unknown_tenant"
"""The code of an intake record refusing a signal for a tenant this deployment does not serve."""
QUIET_SEEN_ROUTES = frozenset({"poller"})
"""Routes that re-read detections on purpose (the poll overlap): a detection they see again
is skipped without an audit event, which would otherwise repeat every run."""

Outcome = Literal["enqueued", "upgraded", "duplicate", "refused", "would-enqueue", "error"]
Clock = Callable[[], datetime]


@dataclass
class IntakeItem:
    """What happened to one signal."""

    signal: RiskSignal
    outcome: Outcome
    reason: str = ""
    request: RemediationRequest | None = None
    refusal: Refusal | None = None
    error: BaseException | None = None

    def public(self) -> dict[str, Any]:
        """A JSON-able view (no raw payload) for logs, the CLI and HTTP answers."""
        req = self.request
        return {
            "user": self.signal.user_id or self.signal.upn, "upn": self.signal.upn,
            "source": self.signal.source, "detectionId": self.signal.detection_id,
            "riskLevel": self.signal.risk_level, "outcome": self.outcome, "reason": self.reason,
            "playbook": req.playbook if req else None,
            "requestRiskLevel": req.risk_level if req else None,
            "requestId": req.request_id if req else None,
        }


@dataclass
class IntakeOutcome:
    """Everything one payload produced: per-signal items, problems and deliberate ignores."""

    route: str
    items: list[IntakeItem] = field(default_factory=list)
    problems: list[AlertProblem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    user_checks: int = 0
    """User change notifications queued for a paced risk read (never a run by themselves)."""

    def count(self, *outcomes: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome in outcomes)

    @property
    def enqueued(self) -> list[RemediationRequest]:
        return [i.request for i in self.items
                if i.outcome in ("enqueued", "upgraded") and i.request is not None]

    @property
    def errors(self) -> list[BaseException]:
        return [i.error for i in self.items if i.error is not None]

    def extend(self, other: IntakeOutcome) -> None:
        self.items.extend(other.items)
        self.problems.extend(other.problems)
        self.ignored.extend(other.ignored)
        self.user_checks += other.user_checks

    def summary(self) -> dict[str, int]:
        return {
            "signals": len(self.items),
            "enqueued": self.count("enqueued", "upgraded"),
            "upgraded": self.count("upgraded"),
            "duplicates": self.count("duplicate"),
            "refused": self.count("refused"),
            "wouldEnqueue": self.count("would-enqueue"),
            "errors": self.count("error"),
            "problems": len(self.problems),
            "ignored": len(self.ignored),
            "userChecks": self.user_checks,
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def record(services: Services, kind: str, message: str,
                 data: dict[str, Any] | None = None) -> None:
    """Append one intake event (never raises: a failed audit write must not lose the alert)."""
    try:
        await services.journal.event(INTAKE_PARTITION, kind, message, data)
    except Exception:  # storage trouble is logged; the caller's own result stands
        log.warning("could not record intake event %s: %s", kind, message[:200], exc_info=True)


async def intake_payload(services: Services, payload: Any, *, route: str,
                         check_groups: bool = True, dry_run: bool = False,
                         clock: Clock = _utcnow,
                         lookup_seconds: float | None = None,
                         hub: TenantHub | None = None) -> IntakeOutcome:
    """Normalise a payload (parsed JSON, or JSON text/bytes) and take in its signals.

    Raises `AlertError` (UnknownShape, MalformedPayload, PayloadTooLarge) for a payload that
    cannot be read at all; per-item problems are recorded and returned, never raised.
    With a `hub`, each signal is taken in by the Services of the tenant it names
    (`shared.intake.routing`); `services` must then be the hub's default.
    """
    result = normalise(payload)
    return await intake_result(services, result, route=route, check_groups=check_groups,
                               dry_run=dry_run, clock=clock, lookup_seconds=lookup_seconds,
                               hub=hub)


async def intake_result(services: Services, result: NormaliseResult, *, route: str,
                        check_groups: bool = True, dry_run: bool = False,
                        clock: Clock = _utcnow,
                        lookup_seconds: float | None = None,
                        hub: TenantHub | None = None,
                        tenant: str | None = None) -> IntakeOutcome:
    """Take in a normaliser result: record its problems, then handle its signals.

    `hub`: route each signal to the tenant it names (problems are recorded in the default
    tenant's journal). `tenant`: `services` are that tenant's (the poller of a tenant)."""
    if hub is None:
        outcome = await _take_share(services, result.signals, result.user_changes,
                                    route=route, check_groups=check_groups, dry_run=dry_run,
                                    clock=clock, lookup_seconds=lookup_seconds, tenant=tenant)
    else:
        outcome = IntakeOutcome(route)
        shares, refused = await split(hub, result.signals, result.user_changes)
        for share in shares:
            outcome.extend(await _take_share(
                share.services, share.signals, share.changes, route=route,
                check_groups=check_groups, dry_run=dry_run, clock=clock,
                lookup_seconds=lookup_seconds, tenant=share.tenant))
        for part in refused:
            outcome.extend(await _refuse_tenant(hub.default, part, route=route,
                                                dry_run=dry_run))
    outcome.problems.extend(result.problems)
    outcome.ignored.extend(result.ignored)
    if not dry_run:
        for problem in result.problems:
            log.warning("alert item %s from %s not usable: %s", problem.locator, route,
                        problem.reason)
            await record(services, "problem", f"{problem.error}: {problem.reason}",
                         {"route": route, "locator": problem.locator, "source": problem.source,
                          "error": problem.error})
    return outcome


async def _take_share(services: Services, signals: list[RiskSignal],
                      changes: list[UserChange], *, route: str, check_groups: bool,
                      dry_run: bool, clock: Clock, lookup_seconds: float | None,
                      tenant: str | None) -> IntakeOutcome:
    """One tenant's signals and user changes, taken in by its own Services."""
    outcome = await intake_signals(services, signals, route=route, check_groups=check_groups,
                                   dry_run=dry_run, clock=clock,
                                   lookup_seconds=lookup_seconds, tenant=tenant)
    if changes and not dry_run:
        # a user change is not a risk signal: at most a paced read of the user's risk
        outcome.user_checks = await queue_user_checks(services, changes, route=route)
    elif changes:
        outcome.ignored.extend(
            f"user change for {c.user_id or c.upn}: would queue a paced risk read, no run"
            for c in changes)
    return outcome


async def _refuse_tenant(default: Services, part: Refused, *, route: str,
                         dry_run: bool) -> IntakeOutcome:
    """Signals and user changes for a tenant this deployment does not serve: refused with
    the reason, recorded in the default tenant's journal (no tenant's table is touched)."""
    outcome = IntakeOutcome(route)
    for signal in part.signals:
        item = IntakeItem(signal, "refused", part.reason)
        outcome.items.append(item)
        log.info("intake %s: refused %s signal: %s", route, signal.source, part.reason)
        if not dry_run:
            await record(default, "refused", part.reason, item.public() | {
                "route": route, "tenant": part.tenant, "code": UNKNOWN_TENANT})
    for change in part.changes:
        outcome.ignored.append(f"user change for {change.user_id or change.upn}: "
                               f"{part.reason}")
        if not dry_run:
            await record(default, "refused", part.reason, {
                "route": route, "tenant": part.tenant, "code": UNKNOWN_TENANT,
                "user": change.user_id or change.upn, "source": change.source})
    return outcome


async def take_user_changes(services: Services, changes: list[UserChange], *, route: str,
                            hub: TenantHub | None = None,
                            client_state_checked: bool = False) -> int:
    """Queue user changes for a paced risk read, each in its tenant's journal (with a
    `hub`); changes for a tenant not served are refused and recorded. Returns how many
    were queued."""
    if hub is None:
        return await queue_user_checks(services, changes, route=route,
                                       client_state_checked=client_state_checked)
    shares, refused = await split(hub, [], changes)
    queued = 0
    for share in shares:
        queued += await queue_user_checks(share.services, share.changes, route=route,
                                          client_state_checked=client_state_checked)
    for part in refused:
        await _refuse_tenant(hub.default, part, route=route, dry_run=False)
    return queued


async def intake_signals(services: Services, signals: Iterable[RiskSignal], *, route: str,
                         check_groups: bool = True, dry_run: bool = False,
                         clock: Clock = _utcnow,
                         lookup_seconds: float | None = None,
                         tenant: str | None = None) -> IntakeOutcome:
    """Decide, deduplicate and enqueue each signal.

    A failure on one signal (storage down) becomes that item's `error` and never stops the
    others; callers turn `outcome.errors` into a retry of their trigger (dedupe makes the
    retry harmless for the signals that did succeed). `lookup_seconds` bounds the directory
    lookups of users named without an object id (None: no bound). `tenant`: the services
    are that (non-default) tenant's, and every request queued names it.
    """
    outcome = IntakeOutcome(route)
    signals = list(signals)
    if not signals:
        return outcome
    await services.journal.ensure()
    keys = UserKeys(services, lookup=not dry_run,
                    deadline=None if lookup_seconds is None
                    else time.monotonic() + lookup_seconds)
    await keys.resolve(signals)
    if keys.unresolved:
        await record(services, "user-unresolved",
                     f"{len(keys.unresolved)} user(s) named without an object id could not be "
                     "resolved and are deduplicated by their name as given",
                     {"route": route, "reasons": sorted(set(keys.unresolved.values()))[:5]})
    by_user: dict[str, list[RiskSignal]] = defaultdict(list)
    for signal in signals:
        by_user[keys.key(signal)].append(signal)
    deduper = Deduper(services.journal, window_minutes=services.policy.dedupe_minutes)
    gate = asyncio.Semaphore(CONCURRENCY)
    member_cache: dict[str, str | None] = {}

    async def one_user(user_signals: list[RiskSignal]) -> list[IntakeItem]:
        # Highest level first: one request per user per payload, not a low one then an upgrade.
        ordered = sorted(user_signals,
                         key=lambda s: -LEVEL_RANK.get(effective_level(s), 0))
        items = []
        async with gate:
            for signal in ordered:
                try:
                    item = await _one(services, deduper, signal, route=route,
                                      check_groups=check_groups, dry_run=dry_run, clock=clock,
                                      member_cache=member_cache, keys=keys, tenant=tenant)
                except Exception as exc:  # one signal's failure never loses the others
                    log.warning("intake of a %s signal failed: %s", signal.source, exc)
                    item = IntakeItem(signal, "error", f"{type(exc).__name__}: {exc}",
                                      error=exc)
                items.append(item)
        return items

    groups = list(by_user.values())
    taken: dict[int, IntakeItem] = {}
    single = [group[0] for group in groups if len(group) == 1]
    if not dry_run and len(single) >= BULK_MIN_USERS:
        # a chunk at a time, so the first requests are queued while the rest is decided
        for start in range(0, len(single), BULK_CHUNK):
            done, left = await _take_in_bulk(
                services, deduper, single[start:start + BULK_CHUNK], route=route,
                check_groups=check_groups, clock=clock, member_cache=member_cache,
                keys=keys, tenant=tenant)
            taken.update(done)
            for signal in left:
                taken.pop(id(signal), None)
    rest = [group for group in groups if len(group) > 1 or id(group[0]) not in taken]
    by_group = dict(zip((id(g) for g in rest),
                        await asyncio.gather(*(one_user(group) for group in rest)), strict=True))
    for group in groups:  # in the payload's order, whichever path took a user in
        outcome.items.extend(by_group[id(group)] if id(group) in by_group
                             else [taken[id(group[0])]])
    return outcome


async def _take_in_bulk(services: Services, deduper: Deduper, signals: list[RiskSignal], *,
                        route: str, check_groups: bool, clock: Clock,
                        member_cache: dict[str, str | None], keys: UserKeys,
                        tenant: str | None) -> tuple[dict[int, IntakeItem], list[RiskSignal]]:
    """The signals of users with one signal in the payload, together: handled detections
    read a few keys per query, every new window (with its alias rows) created in one
    transaction, the enqueued windows confirmed in one, the outcomes recorded and the
    detections remembered in one each. A storm's payload of 50 then costs a handful of
    Table requests instead of about nine per signal.

    The same decisions as `_one`, row for row. A user whose dedupe row exists already (an
    open or expired window, an alias, a racer) is handed back in the second value, for
    `_one` to read and decide; so is everything when a bulk read fails."""
    now = clock()
    done: dict[int, IntakeItem] = {}
    named = [s for s in signals if s.detection_id]
    try:
        handled = await deduper.handled_detections(
            [(keys.key(s), s.detection_id or "", effective_level(s)) for s in named])
    except Exception as exc:  # storage trouble: one signal at a time, as ever
        log.warning("bulk intake could not read detections (one at a time instead): %s", exc)
        return {}, signals
    seen: list[IntakeItem] = []
    for n in sorted(handled):
        item = IntakeItem(named[n], "duplicate",
                          "detection already handled (another route or an earlier run)")
        done[id(item.signal)] = item
        if route not in QUIET_SEEN_ROUTES:
            seen.append(item)
    fresh = [s for s in signals if id(s) not in done]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def decided(signal: RiskSignal) -> IntakeItem:
        async with gate:
            try:
                return await _decision(services, signal, route=route,
                                       check_groups=check_groups, member_cache=member_cache)
            except Exception as exc:  # one signal's failure never loses the others
                log.warning("intake of a %s signal failed: %s", signal.source, exc)
                return IntakeItem(signal, "error", f"{type(exc).__name__}: {exc}", error=exc)

    settle: list[IntakeItem] = []
    wanted: list[tuple[RemediationRequest, str, list[str]]] = []
    owners: list[IntakeItem] = []
    for item in await asyncio.gather(*(decided(s) for s in fresh)):
        done[id(item.signal)] = item
        if tenant and item.request is not None:  # the worker acts in the tenant it names
            item.request = item.request.model_copy(update={"tenant": tenant})
        if item.outcome == "refused":
            settle.append(item)
        elif item.outcome == "would-enqueue" and item.request is not None:
            key = keys.key(item.signal)
            wanted.append((item.request, key, keys.aliases(item.signal, key)))
            owners.append(item)
    try:
        admissions = await deduper.admit_new(wanted, now=now)
    except Exception as exc:
        log.warning("bulk intake could not reserve windows (one at a time instead): %s", exc)
        admissions = [None] * len(wanted)
    left = [item.signal for item, a in zip(owners, admissions, strict=True) if a is None]
    admitted = [(item, a) for item, a in zip(owners, admissions, strict=True) if a is not None]

    async def enqueued(admission: Admission) -> Exception | None:
        async with gate:
            try:
                await services.storage.enqueue(services.settings.remediation_queue,
                                               admission.request.to_message())
            except BaseException as exc:
                try:
                    await deduper.release(admission)
                except Exception as undo:  # the reservation goes stale and is taken over
                    log.warning("could not undo a reservation after a failed enqueue: %s",
                                undo)
                if not isinstance(exc, Exception):
                    raise  # cancelled: released as far as possible, the caller decides
                return exc  # this user's item fails; the chunk's other users go on
            return None

    confirmed: list[Admission] = []
    failures = await asyncio.gather(*(enqueued(a) for _, a in admitted))
    for (item, admission), failure in zip(admitted, failures, strict=True):
        signal = item.signal
        if failure is not None:
            log.warning("intake of a %s signal failed: %s", signal.source, failure)
            done[id(signal)] = IntakeItem(signal, "error",
                                          f"{type(failure).__name__}: {failure}", error=failure)
            continue
        confirmed.append(admission)
        request = admission.request
        done[id(signal)] = ready = IntakeItem(signal, "enqueued", admission.reason,
                                              request=request)
        settle.append(ready)
        log.info("intake %s: enqueued %s request %s (%s)", route, request.risk_level,
                 request.request_id, request.playbook)
    try:
        await deduper.confirm_many(confirmed, now)
        await _settle_many(services, deduper, settle, seen, route, now, keys)
    except Exception as exc:  # as `_one`: the item fails, the trigger's retry finds the row
        log.warning("bulk intake could not record its outcomes: %s", exc)
        for item in settle:
            done[id(item.signal)] = IntakeItem(item.signal, "error",
                                               f"{type(exc).__name__}: {exc}", error=exc)
    return done, left


async def _one(services: Services, deduper: Deduper, signal: RiskSignal, *, route: str,
               check_groups: bool, dry_run: bool, clock: Clock,
               member_cache: dict[str, str | None], keys: UserKeys,
               tenant: str | None = None) -> IntakeItem:
    now = clock()
    level = effective_level(signal)
    detection = signal.detection_id
    user_key = keys.key(signal)
    if detection and not dry_run and await deduper.detection_handled(user_key, detection,
                                                                     level):
        item = IntakeItem(signal, "duplicate",
                          "detection already handled (another route or an earlier run)")
        if route not in QUIET_SEEN_ROUTES:
            await record(services, "duplicate", item.reason, item.public() | {"route": route})
        return item
    item = await _decision(services, signal, route=route, check_groups=check_groups,
                           member_cache=member_cache)
    if tenant and item.request is not None:  # the worker acts in the tenant it names
        item.request = item.request.model_copy(update={"tenant": tenant})
    if dry_run or item.outcome == "refused":
        if not dry_run:
            await _settle(services, deduper, item, route, now, user_key)
        return item

    assert item.request is not None
    aliases = keys.aliases(signal, user_key)
    admission = await deduper.admit(item.request, user_key, aliases, now=now)
    if not admission.admitted:
        item = IntakeItem(signal, "duplicate", admission.reason, request=admission.request)
        await _settle(services, deduper, item, route, now, user_key)
        return item
    request = admission.request
    try:
        await services.storage.enqueue(services.settings.remediation_queue, request.to_message())
    except BaseException:
        await deduper.release(admission)
        raise
    await deduper.confirm(admission, aliases, now)
    kind: Outcome = "upgraded" if admission.kind == "upgrade" else "enqueued"
    item = IntakeItem(signal, kind, admission.reason, request=request)
    log.info("intake %s: %s %s request %s (%s)", route, kind, request.risk_level,
             request.request_id, request.playbook)
    await _settle(services, deduper, item, route, now, user_key)
    return item


async def _decision(services: Services, signal: RiskSignal, *, route: str, check_groups: bool,
                    member_cache: dict[str, str | None]) -> IntakeItem:
    """`decide`, then the group exclusion (a Graph lookup), as a would-enqueue or refused item."""
    try:
        decision = decide(signal, services.policy, route=route)
    except PydanticValidationError as exc:
        return IntakeItem(signal, "refused", f"cannot build a request: {exc.errors()[0]['msg']}")
    if isinstance(decision, Refusal):
        return IntakeItem(signal, "refused", decision.reason, refusal=decision)
    if check_groups and services.policy.exclusions.groups:
        refusal = await _group_refusal(services, signal, member_cache)
        if refusal is not None:
            return IntakeItem(signal, "refused", refusal.reason, refusal=refusal)
    return IntakeItem(signal, "would-enqueue", "", request=decision)


async def _settle(services: Services, deduper: Deduper, item: IntakeItem, route: str,
                  now: datetime, user_key: str) -> None:
    """Record the item's outcome and remember its detection as handled."""
    signal = item.signal
    await record(services, *_outcome_event(item, route))
    if signal.detection_id:
        await deduper.mark_detection(user_key, signal.detection_id,
                                     effective_level(signal), item.outcome, now, signal.source)


def _outcome_event(item: IntakeItem, route: str) -> tuple[str, str, dict[str, Any]]:
    """The intake event recording an item's outcome: kind, message, data."""
    data = item.public() | {"route": route}
    if item.refusal is not None:
        data["code"] = item.refusal.code
    if item.outcome == "refused":
        log.info("intake %s: refused %s signal: %s", route, item.signal.source, item.reason)
    return item.outcome, item.reason or item.outcome, data


async def _settle_many(services: Services, deduper: Deduper, items: list[IntakeItem],
                       seen: list[IntakeItem], route: str, now: datetime,
                       keys: UserKeys) -> None:
    """`_settle` for many items (and the audit events of detections `seen` before): the
    events in one transaction of the intake partition, the detections in another. A
    failed event write is logged (as `record`); a failed detection write raises."""
    events = [_outcome_event(item, route) for item in items]
    events += [("duplicate", item.reason, item.public() | {"route": route}) for item in seen]
    if events:
        try:
            await services.journal.write_batch(INTAKE_PARTITION, events=events)
        except Exception:  # storage trouble is logged; the items' own results stand
            log.warning("could not record %d intake events", len(events), exc_info=True)
    marks = [(keys.key(item.signal), item.signal.detection_id, effective_level(item.signal),
              item.outcome, item.signal.source) for item in items if item.signal.detection_id]
    if marks:
        await deduper.mark_detections([(k, d or "", lv, o, src) for k, d, lv, o, src in marks],
                                      now)


async def _group_refusal(services: Services, signal: RiskSignal,
                         cache: dict[str, str | None]) -> Refusal | None:
    """A refusal when the user is in an excluded group. A failed lookup refuses nothing: the
    worker checks again before any step, so the request is still safe to queue."""
    user = signal.user_id or signal.upn or ""
    if user in cache:
        reason = cache[user]
    else:
        try:
            reason = await group_reason(services, user)
        except ServiceError as exc:
            log.warning("exclusion group lookup failed (the worker re-checks): %s", exc)
            reason = None
        cache[user] = reason
    return Refusal("excluded", reason, signal) if reason else None


def describe(outcome: IntakeOutcome) -> list[dict[str, Any]]:
    """One JSON-able row per signal (the CLI replay and the HTTP answer use it)."""
    return [item.public() for item in outcome.items]


def load_payload_file(path: str) -> Any:
    """A saved payload (JSON). A test fixture file (`{"description", "payload", ...}`) gives
    its `payload`, so the fixtures in tests/fixtures/alerts replay as they are."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, dict) and "payload" in data and ("expected" in data
                                                         or "description" in data):
        return data["payload"]
    return data


def outcome_text(outcome: IntakeOutcome) -> str:
    """A readable table of what each signal would produce (or produced)."""
    lines = [f"{'outcome':<14} {'user':<44} {'level':<8} {'playbook':<18} reason"]
    for row in describe(outcome):
        level = row["requestRiskLevel"] or row["riskLevel"]
        lines.append(f"{row['outcome']:<14} {str(row['user'])[:44]:<44} {level:<8} "
                     f"{row['playbook'] or '-':<18} {row['reason']}")
    for problem in outcome.problems:
        lines.append(f"{'problem':<14} {problem.locator[:44]:<44} {'-':<8} {'-':<18} "
                     f"{problem.error}: {problem.reason}")
    for ignored in outcome.ignored:
        lines.append(f"{'ignored':<14} {'-':<44} {'-':<8} {'-':<18} {ignored}")
    summary = ", ".join(f"{k} {v}" for k, v in outcome.summary().items() if v)
    lines.append(f"({summary or 'nothing'})")
    return "\n".join(lines)


def outcome_json(outcome: IntakeOutcome) -> str:
    return json.dumps({
        "route": outcome.route, "summary": outcome.summary(), "items": describe(outcome),
        "problems": [vars(p) for p in outcome.problems], "ignored": outcome.ignored,
    }, indent=2, default=str)
