"""The request log tests assert on: what was called, with what, and whether it wrote."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from .messages import EmuRequest

REDACTED = "<redacted>"


def redact(value: Any) -> Any:
    """Copy of a request body with every string under a "password" key replaced, so the
    log (and anything that prints it) never holds a plaintext password."""
    if isinstance(value, dict):
        return {k: (REDACTED if k.lower() == "password" and isinstance(v, str) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class RequestLog:
    """Append-only, thread-safe list of request entries (dicts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._seq = 0

    def start(self, req: EmuRequest, cls: str) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "t": time.monotonic(),
                "api": req.api,
                "tenant": getattr(getattr(req.hosted, "tenant", None), "tenant_id", None),
                "method": req.method.upper(),
                "path": req.path,
                "query": dict(req.query),
                "status": None,
                "cls": cls,
                "body": redact(req.body),
                "cmdlet": req.cmdlet,
                "params": copy.deepcopy(req.params),
                "batch_id": req.batch_id,
                "write": False,
                "throttled": False,
                "fault": None,
            }
            self._entries.append(entry)
            return entry

    def finish(self, entry: dict, status: int | None, write: bool = False,
               throttled: bool = False, fault: str | None = None) -> None:
        with self._lock:
            entry["status"] = status
            entry["write"] = bool(write)
            entry["throttled"] = throttled
            entry["fault"] = fault

    def entries(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Copies of the entries; `tenant`: only those of that tenant id."""
        with self._lock:
            chosen = self._entries if tenant is None else [
                e for e in self._entries if (e.get("tenant") or "").lower() == tenant.lower()]
            return copy.deepcopy(chosen)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
