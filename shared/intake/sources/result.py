"""What normalising one payload produced: signals, problems, and deliberate ignores.

A batch (Event Hub records, an Event Grid array) is never all-or-nothing: each bad item
becomes an `AlertProblem` with a locator, and the good items still become signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.models import RiskSignal


@dataclass(frozen=True)
class AlertProblem:
    """One item that could not become a signal, and why (reported, never guessed around)."""

    locator: str
    """Where in the payload: `$` for the whole payload, else like `records[3]`, `[0].data`."""
    reason: str
    source: str
    """The source name the item was recognised as, or `unknown`."""
    error: str = "AlertError"
    """The typed error's class name (`NoCloudUser`, `MalformedPayload`, ...)."""


@dataclass(frozen=True)
class UserChange:
    """A notification that a user object changed (Graph `users` subscription, Event Grid
    `Microsoft.Graph.UserUpdated`). Not a risk signal: a licence, a manager or a password
    reset (the responder's own too) fires it. At most it asks for a paced read of the user's
    risk (`shared.intake.user_checks`)."""

    user_id: str | None
    upn: str | None
    change_type: str | None
    source: str
    client_state: str | None = field(default=None, repr=False, compare=False)
    """The notification's clientState, compared (never stored) where it is checked."""
    tenant: str | None = None
    """The tenant the notification came from (its `tenantId`); None: not named."""

    @property
    def user_key(self) -> str:
        return (self.user_id or self.upn or "").lower()


@dataclass
class NormaliseResult:
    """Signals produced, user changes noticed, problems reported, and reasons items were
    deliberately ignored."""

    signals: list[RiskSignal] = field(default_factory=list)
    problems: list[AlertProblem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    user_changes: list[UserChange] = field(default_factory=list)

    def absorb(self, other: NormaliseResult, prefix: str) -> None:
        """Merge a nested result, prefixing its locators so they stay precise."""
        self.signals.extend(other.signals)
        self.user_changes.extend(other.user_changes)
        for problem in other.problems:
            self.problems.append(
                AlertProblem(
                    locator=join_locator(prefix, problem.locator),
                    reason=problem.reason,
                    source=problem.source,
                    error=problem.error,
                )
            )
        for reason in other.ignored:
            loc, sep, rest = reason.partition(": ")
            if sep:
                self.ignored.append(f"{join_locator(prefix, loc)}: {rest}")
            else:
                self.ignored.append(f"{prefix}: {reason}")

    def problem(self, locator: str, error: Exception, source: str) -> None:
        """Record a failed item."""
        self.problems.append(
            AlertProblem(
                locator=locator, reason=str(error), source=source, error=type(error).__name__
            )
        )

    def ignore(self, locator: str, reason: str) -> None:
        """Record an item deliberately not turned into a signal."""
        self.ignored.append(f"{locator}: {reason}")


def join_locator(prefix: str, locator: str) -> str:
    """`records[1]` inside `[0].data` becomes `[0].data.records[1]`; `$` means "here"."""
    if not prefix or prefix == "$":
        return locator
    if not locator or locator == "$":
        return prefix
    if locator.startswith("["):
        return prefix + locator
    return f"{prefix}.{locator}"
