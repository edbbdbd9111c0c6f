"""OData literal escaping: no input reaches a `$filter` without passing through here.

A quote inside a string literal is doubled (`o'brien` -> `'o''brien'`). Control characters
are refused rather than escaped: no legitimate UPN or id carries them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_/]*$")


class ODataInputError(ValueError):
    """A value cannot be placed in a filter safely."""


def quote_literal(value: str) -> str:
    """Return `value` as an OData string literal, quotes doubled."""
    if not isinstance(value, str):
        raise ODataInputError("an OData string literal must be a string")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ODataInputError("control characters are not allowed in a filter value")
    if len(value) > 1024:
        raise ODataInputError("filter value too long")
    return "'" + value.replace("'", "''") + "'"


def field_name(name: str) -> str:
    """Field names are code, never input; this guards against mistakes anyway."""
    if not _FIELD.match(name):
        raise ODataInputError(f"invalid OData field name {name!r}")
    return name


def eq(name: str, value: str) -> str:
    """`name eq 'value'`, escaped."""
    return f"{field_name(name)} eq {quote_literal(value)}"


def datetime_literal(value: datetime) -> str:
    """An OData datetime literal in UTC (unquoted, as Graph expects in filters)."""
    if value.tzinfo is None:
        raise ODataInputError("datetimes in filters must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def in_(name: str, values: list[str]) -> str:
    """`name in ('a','b')`, each value escaped."""
    if not values:
        raise ODataInputError("an `in` filter needs at least one value")
    return f"{field_name(name)} in ({','.join(quote_literal(v) for v in values)})"
