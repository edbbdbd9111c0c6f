"""What the emulator's request log says about a phase: per-user containment times, calls,
429s, faults, and the writes each user received."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

USER_PATH = re.compile(r"^/(?:v1\.0|beta)/users/([^/]+)(?:/(.*))?$")


@dataclass
class LogSummary:
    graph_calls: int = 0
    exchange_calls: int = 0
    throttled: int = 0
    faults: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    throttled_by_class: dict[str, int] = field(default_factory=dict)
    password_at: dict[str, float] = field(default_factory=dict)
    revoke_at: dict[str, float] = field(default_factory=dict)
    password_writes: Counter[str] = field(default_factory=Counter)
    revoke_writes: Counter[str] = field(default_factory=Counter)
    calls_per_user: Counter[str] = field(default_factory=Counter)


def is_password_write(entry: dict[str, Any]) -> str | None:
    """The user id of a successful password reset (PATCH /users/{id} with passwordProfile)."""
    if entry.get("method") != "PATCH" or not entry.get("write"):
        return None
    m = USER_PATH.match(entry.get("path") or "")
    body = entry.get("body")
    if m and not m.group(2) and isinstance(body, dict) and "passwordProfile" in body:
        return m.group(1)
    return None


def is_revoke_write(entry: dict[str, Any]) -> str | None:
    if entry.get("method") != "POST" or not entry.get("write"):
        return None
    m = USER_PATH.match(entry.get("path") or "")
    if m and (m.group(2) or "").lower() == "revokesigninsessions":
        return m.group(1)
    return None


def summarise(log: list[dict[str, Any]], *, write_latency: float) -> LogSummary:
    """`write_latency`: the emulator applies a write after its configured latency, so a
    user is contained at the request's arrival `t` plus that latency."""
    s = LogSummary()
    by_class: Counter[str] = Counter()
    thr: Counter[str] = Counter()
    for e in log:
        if e.get("api") == "exchange":
            s.exchange_calls += 1
        else:
            s.graph_calls += 1
        by_class[e.get("cls") or "?"] += 1
        if e.get("throttled"):
            s.throttled += 1
            thr[e.get("cls") or "?"] += 1
        if e.get("fault"):
            s.faults += 1
        m = USER_PATH.match(e.get("path") or "")
        if m:
            s.calls_per_user[m.group(1)] += 1
        uid = is_password_write(e)
        if uid:
            s.password_writes[uid] += 1
            s.password_at.setdefault(uid, e["t"] + write_latency)
        uid = is_revoke_write(e)
        if uid:
            s.revoke_writes[uid] += 1
            s.revoke_at.setdefault(uid, e["t"] + write_latency)
    s.by_class = dict(by_class)
    s.throttled_by_class = dict(thr)
    return s


def containment_times(s: LogSummary, injected_at: dict[str, float]) -> dict[str, float]:
    """Seconds from each user's alert to both sessions revoked and password reset."""
    out = {}
    for uid, t0 in injected_at.items():
        if uid in s.password_at and uid in s.revoke_at:
            out[uid] = max(s.password_at[uid], s.revoke_at[uid]) - t0
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def by_user_kind(log: list[dict[str, Any]]) -> dict[str, int]:
    """Call counts by (api, method, route shape), for comparing baseline and storm."""
    kinds: dict[str, int] = defaultdict(int)
    for e in log:
        if e.get("api") == "exchange":
            kinds[f"exchange {e.get('cmdlet')}"] += 1
            continue
        path = re.sub(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}", "{id}", e.get("path") or "")
        path = re.sub(r"user\d+@[^/]+", "{upn}", path)
        kinds[f"{e.get('method')} {path}"] += 1
    return dict(kinds)
