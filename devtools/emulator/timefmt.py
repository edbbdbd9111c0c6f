"""Graph-style timestamps: the emulator must emit the 7-digit fractional form Graph uses
and accept the looser forms clients send back in $filter literals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def utcnow() -> datetime:
    """Current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso7(dt: datetime | None = None) -> str:
    """Format like Graph: 2026-11-25T03:12:44.1234567Z (7 fractional digits)."""
    dt = (dt or utcnow()).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def iso_seconds(dt: datetime | None = None) -> str:
    """Format with whole seconds (used in Graph error innerError.date)."""
    dt = (dt or utcnow()).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def parse_dt(value: str) -> datetime:
    """Parse an ISO-8601 timestamp with 0..9 fractional digits; naive means UTC.

    Raises ValueError on anything else.
    """
    m = _DT_RE.match(value.strip())
    if not m:
        raise ValueError(f"not a datetime: {value!r}")
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(
        int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro,
        tzinfo=UTC,
    )
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt = dt - sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt


def looks_like_dt(value: object) -> bool:
    """True when value is a string that parses as a timestamp."""
    return isinstance(value, str) and bool(_DT_RE.match(value.strip())) and "-" in value
