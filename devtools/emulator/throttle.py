"""Throttling models for each request class.

Graph's limits differ by workload, so each class gets its own model: a fixed rate with
no Retry-After (Identity Protection), token buckets with Retry-After (directory writes,
Exchange), and an in-flight cap per mailbox (Outlook's MailboxConcurrency)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

CLASSES = (
    "identity_protection",
    "directory_write",
    "directory_read",
    "mailbox",
    "exchange",
    "security",
    "batch",
)


def format_retry_after(seconds: float | str | None, http_date: bool = False) -> str | None:
    """Retry-After as a seconds string (fractional allowed) or an HTTP-date."""
    if seconds is None:
        return None
    if isinstance(seconds, str):
        return seconds
    if http_date:
        return formatdate(time.time() + max(1.0, math.ceil(seconds)), usegmt=True)
    seconds = max(0.1, math.ceil(seconds * 10) / 10)
    text = f"{seconds:.1f}"
    return text[:-2] if text.endswith(".0") else text


class TokenBucket:
    """Classic token bucket; `take` reports how long until a token is available."""

    def __init__(self, capacity: float, refill_per_sec: float):
        self.capacity = float(capacity)
        self.refill = float(refill_per_sec)
        self.tokens = float(capacity)
        self.last = time.monotonic()

    def take(self, cost: float = 1.0) -> tuple[bool, float]:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.refill)
        self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True, 0.0
        wait = (cost - self.tokens) / self.refill if self.refill > 0 else 3600.0
        return False, wait


@dataclass
class ThrottleDecision:
    """Why a request was refused and what Retry-After (if any) to send."""

    cls: str
    model: str  # rate | bucket | concurrency
    retry_after: str | None


class Throttler:
    """Holds the per-class models; thread-confined to the server's event loop."""

    def __init__(self, config: dict[str, Any] | None = None):
        self.config: dict[str, dict] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self.configure(config or {})

    def configure(self, config: dict[str, Any]) -> None:
        """Replace the settings of the given classes (None removes); resets their buckets."""
        for cls, cfg in config.items():
            if cfg is None or cfg == {}:
                self.config.pop(cls, None)
            else:
                self.config[cls] = dict(cfg)
            for key in [k for k in self._buckets if k[0] == cls]:
                del self._buckets[key]

    def _bucket(self, cls: str, key: str, cfg: dict) -> TokenBucket | None:
        if "rps" in cfg:
            capacity = float(cfg.get("burst", max(1.0, float(cfg["rps"]))))
            refill = float(cfg["rps"])
        elif "capacity" in cfg:
            capacity = float(cfg["capacity"])
            refill = float(cfg.get("refill_per_sec", 1.0))
        else:
            return None
        bucket = self._buckets.get((cls, key))
        if bucket is None:
            bucket = self._buckets[(cls, key)] = TokenBucket(capacity, refill)
        return bucket

    def _retry_after(self, cls: str, cfg: dict, wait: float) -> str | None:
        setting = cfg.get("retry_after", None if cls == "identity_protection" else "auto")
        if setting is None or setting is False:
            return None
        http_date = bool(cfg.get("retry_after_http_date"))
        if setting == "auto":
            return format_retry_after(wait, http_date)
        if isinstance(setting, int | float):
            return format_retry_after(float(setting), http_date)
        return str(setting)

    def admit(self, cls: str, key: str) -> ThrottleDecision | None:
        """Check rate/bucket then take a concurrency slot. None means admitted; the caller
        must then call `release(cls, key)` when the request finishes."""
        cfg = self.config.get(cls)
        if not cfg:
            self._in_flight[(cls, key)] = self._in_flight.get((cls, key), 0) + 1
            return None
        limit = cfg.get("concurrency")
        if limit is not None and self._in_flight.get((cls, key), 0) >= int(limit):
            ra = self._retry_after(cls, {"retry_after": "1", **cfg}, 1.0)
            return ThrottleDecision(cls, "concurrency", ra)
        bucket = self._bucket(cls, key, cfg)
        if bucket is not None:
            ok, wait = bucket.take()
            if not ok:
                model = "rate" if "rps" in cfg else "bucket"
                return ThrottleDecision(cls, model, self._retry_after(cls, cfg, wait))
        self._in_flight[(cls, key)] = self._in_flight.get((cls, key), 0) + 1
        return None

    def release(self, cls: str, key: str) -> None:
        n = self._in_flight.get((cls, key), 0) - 1
        if n <= 0:
            self._in_flight.pop((cls, key), None)
        else:
            self._in_flight[(cls, key)] = n
