"""Small helpers shared by the per-source normalisers (lenient reads, strict ids).

Reads are lenient (wrong types count as missing, nulls are fine); ids are strict: an id
that is too long or carries characters no Entra id or UPN has is refused, not cleaned up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.intake.sources.errors import (
    AlertError,
    Ignored,
    InvalidTimestamp,
    MalformedPayload,
    NoCloudUser,
    PayloadTooLarge,
)
from shared.intake.sources.result import NormaliseResult
from shared.models import RiskLevel, RiskSignal
from shared.settings import tenant_guid
from shared.timestamps import parse_time

MAX_RECORDS = 10_000
"""Batches above this many items are refused outright."""
MAX_ID_CHARS = 1_024
"""Strings used as ids (user ids, UPNs, detection ids) above this length are refused."""
MAX_TEXT_CHARS = 256
"""Free text carried into a signal (event types) is cut to this length."""
MAX_JSON_STRING_CHARS = 256 * 1024
"""JSON-in-a-string fields above this size are not decoded."""

_LEVELS: dict[str, RiskLevel] = {
    "none": "none",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "hidden": "hidden",
    # Defender / Sentinel / Graph alert severities.
    "informational": "low",
    "critical": "high",
    # Azure Monitor severities: Sev0 critical ... Sev4 verbose.
    "sev0": "high",
    "sev1": "high",
    "sev2": "medium",
    "sev3": "low",
    "sev4": "low",
}

_ADMIN_NAMES = frozenset(
    {
        "adminconfirmedusercompromised",
        "admindismissedallriskforuser",
        "adminconfirmedsigninsafe",
        "adminconfirmedsignincompromised",
        "admingeneratedtemporarypassword",
        "adminconfirmedserviceprincipalcompromised",
        "admindismissedallriskforserviceprincipal",
    }
)
_ADMIN_STATES = frozenset({"confirmedcompromised", "dismissed", "confirmedsafe"})
_BAD_ID_CHARS = re.compile(r"[\x00-\x20\x7f/\\?]")

T = TypeVar("T")


def as_dict(value: Any) -> dict[str, Any] | None:
    """The value if it is a JSON object, else None."""
    return value if isinstance(value, dict) else None


def as_list(value: Any, what: str) -> list[Any] | None:
    """The value if it is a JSON array (refusing huge ones), else None."""
    if not isinstance(value, list):
        return None
    if len(value) > MAX_RECORDS:
        raise PayloadTooLarge(f"{what} has {len(value)} items; at most {MAX_RECORDS} accepted")
    return value


def first(mapping: dict[str, Any] | None, *keys: str) -> Any:
    """The first of `keys` whose value is not None (sources drift between field names)."""
    if mapping is None:
        return None
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def get_ci(mapping: dict[str, Any] | None, *keys: str) -> Any:
    """Case-insensitive `first`: diagnostic and Sentinel fields change case between routes."""
    if mapping is None:
        return None
    wanted = [key.lower() for key in keys]
    lowered = {k.lower(): v for k, v in mapping.items() if isinstance(k, str) and v is not None}
    for key in wanted:
        if key in lowered:
            return lowered[key]
    return None


def norm(value: Any) -> str:
    """Lower-case alphanumerics only: compares `Admin confirmed user compromised` and
    `adminConfirmedUserCompromised` as the same thing."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value.lower() if ch.isascii() and ch.isalnum())


def clean_id(value: Any, field: str) -> str | None:
    """A string id, stripped; None when absent or not a string; typed error when unusable."""
    if not isinstance(value, str):
        return None
    if len(value) > MAX_ID_CHARS:
        raise PayloadTooLarge(f"{field} is {len(value)} characters; at most {MAX_ID_CHARS}")
    text = value.strip()
    if not text:
        return None
    if _BAD_ID_CHARS.search(text) or ("#" in text and "#EXT#" not in text.upper()):
        raise MalformedPayload(f"{field} contains characters not valid in an id: {text[:80]!r}")
    return text


def clean_upn(value: Any, field: str) -> str | None:
    """A UPN exactly as given (apostrophes and `#EXT#` kept); None unless it has an `@`."""
    text = clean_id(value, field)
    if text is None or "@" not in text[1:-1]:
        return None
    return text


def clean_text(value: Any) -> str | None:
    """Free text for a signal field: strings only, cut to a sane length."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:MAX_TEXT_CHARS] or None


def first_text(value: Any) -> str | None:
    """A string, or the first string of a list (Sentinel custom details are lists)."""
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str)), None)
    return clean_text(value)


def decode_json(value: Any) -> Any:
    """Decode a JSON-in-a-string field; None when absent or malformed (never an error)."""
    if isinstance(value, (dict, list)):
        return value
    if not isinstance(value, str) or len(value) > MAX_JSON_STRING_CHARS:
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def risk_level(*values: Any) -> RiskLevel:
    """Map a risk level or a severity (any case) to RiskLevel; unknown means `hidden`."""
    for value in values:
        if isinstance(value, str) and value.strip():
            return _LEVELS.get(value.strip().lower(), "hidden")
    return "hidden"


def is_admin_identifier(*values: Any) -> bool:
    """True for identifier-like fields (riskEventType, riskDetail) that start with `admin`."""
    return any(norm(value).startswith("admin") for value in values)


def is_admin_name(*values: Any) -> bool:
    """True for free text naming an admin action exactly (alert titles, for example)."""
    return any(norm(value) in _ADMIN_NAMES for value in values)


def is_admin_state(value: Any) -> bool:
    """Risk states only an administrator (or this responder) sets."""
    return norm(value) in _ADMIN_STATES


def parse_time_opt(*values: Any) -> datetime | None:
    """The first parseable timestamp; None when none parse.

    A bad time must not drop a real compromise signal, so it degrades to "unknown time".
    """
    for value in values:
        if value is None:
            continue
        try:
            return parse_time(value)
        except InvalidTimestamp:
            continue
    return None


def resolve_user(user_id: Any, upn: Any, what: str) -> tuple[str | None, str | None]:
    """Clean the user id and UPN; NoCloudUser when neither is usable.

    A bad UPN next to a good object id is dropped; a bad object id is always an error.
    """
    uid = clean_id(user_id, f"{what} user id")
    try:
        name = clean_upn(upn, f"{what} UPN")
    except MalformedPayload:
        if uid is None:
            raise
        name = None  # the object id is authoritative; a junk UPN beside it is dropped
    if uid is None and name is None:
        raise NoCloudUser(f"{what}: no resolvable cloud user (no object id and no UPN)")
    return uid, name


def signal_tenant(signal: RiskSignal) -> str | None:
    """The tenant id a signal's payload named, or None."""
    return signal.tenant or None


def routed(signal: RiskSignal, tenant: str) -> RiskSignal:
    """The signal with its tenant set."""
    return signal.model_copy(update={"tenant": tenant})


def clean_tenant(value: Any, field: str) -> str | None:
    """A tenant id (a GUID, lower case) named by a payload; None when absent or empty.

    Strict like every id: a value that is not a GUID is refused, never guessed at, because
    it decides which tenant is acted on."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"{field} must be a tenant id (a GUID), got "
                               f"{type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    guid = tenant_guid(text)
    if guid is None:
        raise MalformedPayload(f"{field} is not a tenant id (a GUID): {text[:80]!r}")
    return guid


def make_signal(**fields: Any) -> RiskSignal:
    """Build a RiskSignal (with its `tenant`, when the payload names one), turning model
    validation errors into typed alert errors."""
    try:
        return RiskSignal(**fields)
    except ValidationError as exc:
        raise MalformedPayload(f"cannot build a risk signal: {exc.errors()[0]['msg']}") from None


def collect(
    result: NormaliseResult,
    items: Iterable[tuple[str, T]],
    convert: Callable[[T], RiskSignal],
    source: str | Callable[[T], str],
) -> None:
    """Convert each item; one failure becomes a problem (or an ignore) and never stops the rest."""
    for locator, item in items:
        try:
            result.signals.append(convert(item))
        except Ignored as exc:
            result.ignore(locator, str(exc))
        except AlertError as exc:
            result.problem(locator, exc, source(item) if callable(source) else source)


def dedupe(signals: list[RiskSignal]) -> list[RiskSignal]:
    """Within one alert, one signal per user: UPN-only duplicates of an id'd user are dropped."""
    with_id = {s.upn.lower() for s in signals if s.user_id and s.upn}
    seen: set[str] = set()
    out: list[RiskSignal] = []
    for signal in signals:
        if not signal.user_id and signal.upn and signal.upn.lower() in with_id:
            continue
        if signal.user_key in seen:
            continue
        seen.add(signal.user_key)
        out.append(signal)
    return out
