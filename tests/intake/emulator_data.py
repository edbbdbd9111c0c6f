"""Seeding helpers: synthetic users' risk detections in the emulator (ascending times)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def user_id(n: int) -> str:
    return str(uuid.UUID(int=0x5EED0000_0000_4000_8000_000000000000 + n))


def user_upn(n: int) -> str:
    return f"storm{n:03d}@contoso.com"


def iso7(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def detection(n_user: int, index: int, when: datetime, level: str = "high") -> dict[str, Any]:
    """A riskDetection as Graph returns it (the emulator fills the other fields)."""
    return {
        "id": f"{index:064x}",
        "userId": user_id(n_user), "userPrincipalName": user_upn(n_user),
        "userDisplayName": f"Storm {n_user}", "riskLevel": level, "riskState": "atRisk",
        "riskEventType": "unfamiliarFeatures", "detectedDateTime": iso7(when),
    }


def seed_detections(emulator: Any, detections: list[dict[str, Any]]) -> None:
    """Replace the emulator's detections with these."""
    tenant = emulator.tenant
    with tenant.lock:
        tenant.risk_detections.clear()
        for det in detections:
            tenant.add_detection(det)


def recent(minutes_ago: float, plus_seconds: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago) + timedelta(seconds=plus_seconds)
