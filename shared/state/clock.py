"""The one clock. Every timestamp the responder stores or compares comes from `now()`, so a
test can move time for all of it at once (monkeypatch `shared.state.clock.now`)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, aware and in UTC."""
    return datetime.now(UTC)
