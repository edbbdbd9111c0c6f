"""One dedupe key per user, whatever form a route names the user in.

Why: the same detection reaches intake by several routes, and each names the user its own
way. Graph's riskDetections (the poller) carry the object id and the UPN; a diagnostic
record, a Logic App or a Monitor alert may carry only a UPN, in any case; for a B2B guest,
sign-in-log based alerts often carry the guest's home address (`ana.lima@fabrikam.com`)
while the directory names the guest `ana.lima_fabrikam.com#EXT#@contoso.onmicrosoft.com`.
No text rule ties these together (an object id has no textual relation to a UPN, and a
guest's mail may differ from the address inside its UPN), so every form is resolved to the
one name that does not change: the Entra object id.

- A signal that carries the object id is keyed on it; within one payload, a form another
  signal carries beside an object id is keyed on that id too (no lookup).
- Other forms are looked up in the directory (`$filter` on userPrincipalName, then mail:
  `shared.tenant.graph.directory.resolve_user`), a few at a time, each form once per
  process (`Services.tenant_fact`) and once per tenant (the answer is kept as a link row
  beside the dedupe rows, so other instances read a row instead of calling Graph).
  The HTTP webhook bounds the lookups by a deadline.
- When nothing answers (no such user, an ambiguous mail, Graph unavailable, the deadline
  passed) the lower-cased form is the key, as before; the dedupe's alias rows still tie it
  to the object id whenever a signal carried both. Each such case is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.errors import ServiceError
from shared.intake.dedupe import read_user_link, write_user_link
from shared.models import RiskSignal
from shared.services import Services
from shared.tenant.graph.directory import resolve_user

log = logging.getLogger("responder.intake.user_keys")

LOOKUP_CONCURRENCY = 4
"""Directory lookups at once per payload (directory reads share the tenant's budget)."""
LINK_TTL_SECONDS = 600.0
"""How long a process trusts a form -> object id answer (a UPN can be renamed)."""
NOT_FOUND = ""
"""Cached answer for a form the directory does not know."""


def text_key(signal: RiskSignal) -> str:
    """The key without a lookup: the object id when known, else the lower-cased UPN."""
    return signal.user_key


@dataclass
class UserKeys:
    """Canonical dedupe keys for the signals of one payload."""

    services: Services
    lookup: bool = True
    """False: only object ids the payload itself carries (dry runs make no lookup)."""
    deadline: float | None = None
    """`time.monotonic()` after which no lookup is waited for (the HTTP webhook)."""
    links: dict[str, str] = field(default_factory=dict)
    """Lower-cased form -> lower-cased object id, as resolved for this payload."""
    unresolved: dict[str, str] = field(default_factory=dict)
    """Lower-cased form -> why it is keyed on its text."""

    def key(self, signal: RiskSignal) -> str:
        """The signal's dedupe key: its object id, resolved where the payload lacks it."""
        if signal.user_id:
            return signal.user_id.lower()
        form = text_key(signal)
        return self.links.get(form, form)

    def aliases(self, signal: RiskSignal, key: str) -> list[str]:
        """Other forms of the user (alias rows point them at the key's window)."""
        forms = {f.lower() for f in (signal.user_id, signal.upn) if f}
        return sorted(f for f in forms if f != key)

    async def resolve(self, signals: Iterable[RiskSignal]) -> None:
        """Find the object id of every signal that names its user without one."""
        pending: set[str] = set()
        for signal in signals:
            if signal.user_id and signal.upn:
                self.links.setdefault(signal.upn.lower(), signal.user_id.lower())
            elif not signal.user_id:
                pending.add(text_key(signal))
        pending -= set(self.links)
        if not pending or not self.lookup:
            return
        gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def one(form: str) -> None:
            async with gate:
                found = await self._bounded(form)
            if found:
                self.links[form] = found

        await asyncio.gather(*(one(form) for form in sorted(pending)))
        if self.unresolved:
            log.warning("%d user form(s) keyed on their text: %s", len(self.unresolved),
                        "; ".join(sorted(set(self.unresolved.values())))[:300])

    async def _bounded(self, form: str) -> str | None:
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            self.unresolved[form] = "lookup deadline passed"
            return None
        try:
            found = await asyncio.wait_for(self._object_id(form), remaining)
        except TimeoutError:
            self.unresolved[form] = "lookup deadline passed"
            return None
        except ServiceError as exc:
            self.unresolved[form] = f"directory lookup failed ({exc.status or exc.code})"
            return None
        if found == NOT_FOUND:
            self.unresolved[form] = "no single directory user has this UPN or mail"
            return None
        return found

    async def _object_id(self, form: str) -> str:
        """Object id for a form: the process cache, the stored link, else the directory."""
        async def load() -> str:
            journal = self.services.journal
            stored = await read_user_link(journal, form)
            if stored:
                return stored
            try:
                user = await resolve_user(self.services.graph, form)
            except ServiceError as exc:
                if exc.status in (400, 404):  # not found, or ambiguous: a stable answer
                    return NOT_FOUND
                raise
            except ValueError:  # not a name a filter can carry (control characters)
                return NOT_FOUND
            found = user.id.lower()
            await write_user_link(journal, form, found, datetime.now(UTC))
            return found

        return await self.services.tenant_fact(f"intake-user-link:{form}", load,
                                               ttl=LINK_TTL_SECONDS)
