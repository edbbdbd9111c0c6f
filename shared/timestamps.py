"""One lenient timestamp parser for every format the alert sources send.

Graph sends 0-7 fractional digits with `Z`; diagnostic records send US-style
`M/D/YYYY h:mm:ss AM`, unpadded hours (`T8:48:50.361Z`) and `+00:00` offsets. Everything
becomes an aware UTC datetime; anything else raises `InvalidTimestamp`, never another error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from shared.errors import InvalidTimestamp

MAX_TIMESTAMP_CHARS = 64

_ISO = re.compile(
    r"""
    (?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})
    (?:
        [Tt\ ]
        (?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2})
        (?::(?P<s>[0-9]{1,2})(?:[.,](?P<f>[0-9]{1,12}))?)?
    )?
    \s*(?P<tz>[Zz]|[+-][0-9]{2}:?[0-9]{2})?
    """,
    re.VERBOSE | re.ASCII,
)

_US = re.compile(
    r"""
    (?P<mo>[0-9]{1,2})/(?P<d>[0-9]{1,2})/(?P<y>[0-9]{4})
    (?:
        \s+(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})
        (?::(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,12}))?)?
        (?:\s*(?P<ampm>[AaPp][Mm]))?
    )?
    \s*(?P<tz>[Zz]|[+-][0-9]{2}:?[0-9]{2})?
    """,
    re.VERBOSE | re.ASCII,
)


def parse_time(value: Any) -> datetime:
    """Parse a source timestamp to an aware UTC datetime.

    Naive values are taken as UTC: every source documents its times as UTC.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise InvalidTimestamp(f"timestamp must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidTimestamp("timestamp is empty")
    if len(text) > MAX_TIMESTAMP_CHARS:
        raise InvalidTimestamp(f"timestamp is longer than {MAX_TIMESTAMP_CHARS} characters")
    match = _ISO.fullmatch(text) or _US.fullmatch(text)
    if match is None:
        raise InvalidTimestamp(f"unrecognised timestamp format: {text!r}")
    return _build(match, text)


def _build(match: re.Match[str], text: str) -> datetime:
    """Assemble the datetime from regex groups, turning range errors into InvalidTimestamp."""
    parts = match.groupdict()
    hour = int(parts["h"] or 0)
    ampm = (parts.get("ampm") or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            raise InvalidTimestamp(f"hour {hour} is not valid with {ampm.upper()}: {text!r}")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    fraction = (parts["f"] or "")[:6].ljust(6, "0")
    tz = _offset(parts["tz"], text)
    try:
        parsed = datetime(
            int(parts["y"]),
            int(parts["mo"]),
            int(parts["d"]),
            hour,
            int(parts["mi"] or 0),
            int(parts["s"] or 0),
            int(fraction),
            tzinfo=tz,
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestamp(f"timestamp out of range: {text!r} ({exc})") from None


def _offset(raw: str | None, text: str) -> timezone:
    """`Z`, `+00:00` or `+0000` to a fixed offset; missing means UTC."""
    if raw is None or raw in ("Z", "z"):
        return UTC
    digits = raw[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise InvalidTimestamp(f"invalid UTC offset in {text!r}")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if raw.startswith("-") else delta)
