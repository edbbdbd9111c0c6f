"""Fault injection: probabilistic faults from a seeded RNG (same seed and same request
sequence give the same faults) and scripted faults that match method/path/cmdlet."""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

from .messages import EmuRequest

DEFAULT_KINDS = {"429": 1, "429_no_retry_after": 1, "503": 1, "504": 1, "drop": 1}


@dataclass
class ScriptedFault:
    """A canned response for matching requests; count None means forever."""

    id: int
    status: int | str  # an HTTP status or "drop"
    method: str | None = None
    path_regex: str | None = None
    cmdlet: str | None = None
    code: str | None = None
    message: str | None = None
    count: int | None = 1
    retry_after: float | str | None = None
    retry_after_http_date: bool = False
    delay_ms: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hits: int = 0

    def matches(self, req: EmuRequest) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method and self.method.upper() != req.method.upper():
            return False
        if self.cmdlet and (req.cmdlet or "").lower() != self.cmdlet.lower():
            return False
        return not (self.path_regex and not re.search(self.path_regex, req.path))

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class FaultInjector:
    """Draws random faults per request and serves scripted ones."""

    def __init__(self, seed: int = 0):
        self._ids = itertools.count(1)
        self.scripted: list[ScriptedFault] = []
        self.rate = 0.0
        self.kinds: dict[str, float] = dict(DEFAULT_KINDS)
        self.classes: set[str] | None = None
        self.retry_after: str = "1"
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def configure(self, cfg: dict | None) -> None:
        cfg = cfg or {}
        self.rate = float(cfg.get("rate", 0.0))
        self.kinds = dict(cfg.get("kinds") or DEFAULT_KINDS)
        classes = cfg.get("classes")
        self.classes = set(classes) if classes else None
        self.retry_after = str(cfg.get("retry_after", "1"))

    def draw(self, cls: str) -> str | None:
        """Return a fault kind or None. Consumes RNG only for eligible requests."""
        if self.rate <= 0 or (self.classes is not None and cls not in self.classes):
            return None
        if self.rng.random() >= self.rate:
            return None
        kinds = list(self.kinds)
        return self.rng.choices(kinds, weights=[float(self.kinds[k]) for k in kinds])[0]

    def add(self, **kw: Any) -> ScriptedFault:
        if "status" not in kw:
            raise ValueError("a scripted fault needs a status (an HTTP status or 'drop')")
        status = kw.pop("status")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        fault = ScriptedFault(id=next(self._ids), status=status, **kw)
        self.scripted.append(fault)
        return fault

    def match(self, req: EmuRequest) -> ScriptedFault | None:
        for fault in self.scripted:
            if fault.matches(req):
                fault.hits += 1
                return fault
        return None

    def clear(self) -> None:
        self.scripted.clear()
