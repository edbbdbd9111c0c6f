"""The one timestamp parser: every format in the traps, and only typed errors otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.intake.sources import AlertError, InvalidTimestamp, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T03:12:44.1234567Z", datetime(2026, 11, 25, 3, 12, 44, 123456, UTC)),
        ("2026-11-25T03:12:44Z", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("2026-11-25T03:12:44.5Z", datetime(2026, 11, 25, 3, 12, 44, 500000, UTC)),
        ("2026-11-25T03:12:44.36Z", datetime(2026, 11, 25, 3, 12, 44, 360000, UTC)),
        ("2026-11-25T03:12:44.361Z", datetime(2026, 11, 25, 3, 12, 44, 361000, UTC)),
        ("2026-11-25T8:48:50.361Z", datetime(2026, 11, 25, 8, 48, 50, 361000, UTC)),
        ("2026-11-25T03:12:44+00:00", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("2026-11-25T03:12:44.1234567+00:00", datetime(2026, 11, 25, 3, 12, 44, 123456, UTC)),
        ("2026-11-25T05:12:44+02:00", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("2026-11-24T22:12:44-0500", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("2026-11-25T03:12:44", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("2026-11-25 03:12:44Z", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        (" 2026-11-25t03:12:44z ", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("11/25/2026 3:12:44 AM", datetime(2026, 11, 25, 3, 12, 44, tzinfo=UTC)),
        ("11/25/2026 3:12:44 PM", datetime(2026, 11, 25, 15, 12, 44, tzinfo=UTC)),
        ("11/25/2026 12:00:01 AM", datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)),
        ("11/25/2026 12:00:01 PM", datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC)),
        ("1/5/2026 11:59:59 pm", datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)),
        ("11/25/2026 15:12:44", datetime(2026, 11, 25, 15, 12, 44, tzinfo=UTC)),
        ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),
    ],
)
def test_known_formats(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_datetimes_pass_through_as_utc() -> None:
    aware = datetime(2026, 11, 25, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time(aware) == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert parse_time(datetime(2026, 11, 25, 3, 0)).tzinfo is UTC


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "yesterday",
        "2026-13-25T03:12:44Z",
        "2026-02-30T03:12:44Z",
        "2026-11-25T25:12:44Z",
        "2026-11-25T03:61:44Z",
        "13/25/2026 3:12:44 AM",
        "11/25/2026 0:12:44 AM",
        "11/25/2026 13:12:44 PM",
        "2026-11-25T03:12:44+25:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "\uff12\uff10\uff12\uff16-11-25T03:12:44Z",  # full-width digits
        "2026-11-25T03:12:44Z" + "0" * 80,
        None,
        1764040364,
        True,
        ["2026-11-25T03:12:44Z"],
    ],
)
def test_bad_values_raise_typed_error(bad: object) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_time(bad)


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_typed_error(text: str) -> None:
    try:
        parsed = parse_time(text)
    except InvalidTimestamp:
        return
    assert parsed.tzinfo is UTC


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=7),
)
def test_round_trip_of_graph_style_timestamps(moment: datetime, digits: int) -> None:
    fraction = f"{moment.microsecond:06d}0"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"
    parsed = parse_time(text)
    assert parsed.replace(microsecond=0) == moment.replace(microsecond=0)
    assert abs(parsed - moment) < timedelta(seconds=1)


def test_invalid_timestamp_is_an_alert_error() -> None:
    assert issubclass(InvalidTimestamp, AlertError)
    assert issubclass(InvalidTimestamp, ValueError)
