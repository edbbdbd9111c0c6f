"""Typed errors: callers decide by type (retry, record, stop), never by parsing strings.

`retryable` tells the queue worker whether to raise (the host redelivers the message) or to
record a permanent failure and carry on with independent steps.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict, Unpack


class ResponderError(Exception):
    """Base of every error this app raises on purpose."""

    retryable: bool = False


class ServiceDetails(TypedDict):
    """The keyword arguments of `ServiceError`: what a support ticket needs of a failed call."""

    service: str
    status: NotRequired[int | None]
    code: NotRequired[str | None]
    request_id: NotRequired[str | None]
    method: NotRequired[str | None]
    path: NotRequired[str | None]


class ServiceError(ResponderError):
    """A Graph or Exchange call failed. Keeps what a support ticket needs."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.code = code
        self.request_id = request_id
        self.method = method
        self.path = path

    def __str__(self) -> str:
        base = super().__str__()
        bits = [f"{self.service} {self.method or ''} {self.path or ''}".strip()]
        if self.status is not None:
            bits.append(f"HTTP {self.status}")
        if self.code:
            bits.append(self.code)
        if self.request_id:
            bits.append(f"request-id {self.request_id}")
        return f"{base} ({', '.join(bits)})"


class Throttled(ServiceError):
    """429 after the retry budget was spent. The host retries the message later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None,
                 **kw: Unpack[ServiceDetails]) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """5xx, timeouts and dropped connections after retries: transient by nature."""

    retryable = True


class Forbidden(ServiceError):
    """401/403: the identity lacks a permission or a directory role. Permanent until an
    admin grants it; the message names what is likely missing."""


class NotFound(ServiceError):
    """404: the user, mailbox or object does not exist."""


class BadRequest(ServiceError):
    """400 and other 4xx: the request itself is wrong, retrying will not help."""


class FailedDependency(ServiceError):
    """424 inside a $batch: an item this one depended on failed."""


class ValidationError(ResponderError):
    """Input (a queue message, a payload, a policy) is invalid. Never retried."""


class UnknownTenant(ValidationError):
    """A message or alert names a tenant this deployment does not serve (not registered,
    disabled, or not reachable with the configured credential). Never retried: the message
    is refused like any invalid one, with the reason, in the default tenant's journal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason if reason.startswith("unknown tenant")
                         else f"unknown tenant: {reason}")
        self.reason = str(self)


class ReadOnlyViolation(ResponderError):
    """A write was attempted through a read-only (dry-run) view: a bug, never retried."""


class PolicyError(ResponderError):
    """The policy file is invalid. Raised at start, naming the field."""


def error_for_status(status: int) -> type[ServiceError]:
    """The error type for an HTTP status that was not retried away."""
    if status == 429:
        return Throttled
    if status in (401, 403):
        return Forbidden
    if status == 404:
        return NotFound
    if status == 424:
        return FailedDependency
    if status >= 500:
        return Unavailable
    return BadRequest


class AlertError(ValueError):
    """Outside input (an alert payload, one item of it, or a timestamp in it) cannot become
    a risk signal. Intake's normalisers raise its subclasses (shared.intake.sources.errors)."""


class InvalidTimestamp(AlertError):
    """A timestamp is in none of the formats the sources are known to send."""
