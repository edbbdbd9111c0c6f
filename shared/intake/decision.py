"""The decision: one risk signal -> a remediation request, or a refusal that says why.

Pure (no I/O, no clock): the intake path, the CLI replay and the tests all call the same
function, so "why did (or didn't) this alert start a run?" has one answer. Group-based
exclusions need a Graph lookup and live in `shared.intake.pipeline`; deduplication needs storage and
lives in `shared.intake.dedupe`.

Risk levels:
- `low` / `medium` / `high` map to a playbook through `policy.risk_level_playbooks`.
- `hidden` means Identity Protection withheld the level (no Entra ID P2 licence) or the
  source gives no level (a user change notification, an unknown severity). The detection is
  still real, so it is treated as `HIDDEN_LEVEL` (medium: contain sessions and mail abuse,
  but do not reset a password on an unknown level). A later `high` signal upgrades it.
- `none` means there is no risk (remediated or dismissed): nothing to do.

Never a run: excluded accounts (policy `exclusions.users`), admin-initiated risk changes
(`adminConfirmedUserCompromised` and friends are caused by this responder itself), and
detections already remediated, dismissed or confirmed safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from shared.models import RemediationRequest, RiskSignal
from shared.policy import Policy

ActionableLevel = Literal["low", "medium", "high"]

HIDDEN_LEVEL: ActionableLevel = "medium"
"""What a `hidden` risk level is treated as (documented in docs/intake.md)."""

LEVEL_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3}
"""Order of actionable levels: a higher rank upgrades a pending request."""

REQUESTED_BY = "intake"

_SETTLED_STATES = frozenset({"remediated", "dismissed", "confirmedsafe"})

RefusalCode = Literal["excluded", "admin_initiated", "no_risk", "settled", "unknown_playbook"]


@dataclass(frozen=True)
class Refusal:
    """Why a signal starts no run. `code` is stable (reports group by it)."""

    code: RefusalCode
    reason: str
    signal: RiskSignal

    @property
    def user(self) -> str:
        return self.signal.user_id or self.signal.upn or ""


def effective_level(signal: RiskSignal, hidden_level: ActionableLevel = HIDDEN_LEVEL) -> str:
    """The level a signal is acted on at: `hidden` becomes `hidden_level`; others unchanged."""
    return hidden_level if signal.risk_level == "hidden" else signal.risk_level


def _risk_state(raw: dict[str, Any]) -> str:
    """riskState from a Graph object or a diagnostic record's properties (any case)."""
    properties = raw.get("properties")
    holders = (raw, properties) if isinstance(properties, dict) else (raw,)
    for holder in holders:
        for key, value in holder.items():
            if isinstance(key, str) and key.lower() == "riskstate" and isinstance(value, str):
                return "".join(ch for ch in value.lower() if ch.isalnum())
    return ""


def _policy_key(level: str) -> ActionableLevel | None:
    """`level` as a key of the policy's riskLevelPlaybooks, or None when it cannot be one."""
    match level:
        case "low" | "medium" | "high":
            return level
    return None


def request_id_for(user_key: str, level: str, basis: str) -> str:
    """A deterministic request id: the same user, level and basis give the same id."""
    digest = hashlib.sha256(f"{user_key.lower()}|{level}|{basis}".encode()).hexdigest()
    return f"alert-{digest[:40]}"


def decide(
    signal: RiskSignal,
    policy: Policy,
    *,
    route: str | None = None,
    hidden_level: ActionableLevel = HIDDEN_LEVEL,
) -> RemediationRequest | Refusal:
    """The request this signal should start, or a `Refusal` saying why not.

    The request's `requestId` is derived from the user, the level and the detection (or its
    time); `shared.intake.dedupe` replaces it with a per-window id when it accepts the request.
    """
    if policy.excluded_user(signal.user_id, signal.upn):
        return Refusal("excluded", "excluded account (policy exclusions.users): never touched",
                       signal)
    if signal.admin_initiated:
        return Refusal(
            "admin_initiated",
            f"admin-initiated risk change ({signal.risk_event_type or 'admin action'}): "
            "caused by an administrator or by this responder, never starts a run",
            signal,
        )
    if signal.risk_level == "none":
        return Refusal("no_risk", "risk level is none: nothing to remediate", signal)
    state = _risk_state(signal.raw)
    if state in _SETTLED_STATES:
        return Refusal("settled", f"detection is already {state}: nothing to remediate", signal)
    level = effective_level(signal, hidden_level)
    key = _policy_key(level)
    playbook = policy.risk_level_playbooks.get(key) if key is not None else None
    if playbook is None:
        return Refusal("unknown_playbook", f"no playbook for risk level {level!r} in the policy",
                       signal)
    user = signal.user_id or signal.upn or ""
    what = signal.risk_event_type or "risk"
    shown_level = level if level == signal.risk_level else f"{signal.risk_level} as {level}"
    via = f" via {route}" if route else ""
    reason = f"{what} ({shown_level}) from {signal.source}{via}"
    if signal.detection_id:
        reason += f", detection {signal.detection_id}"
    basis = signal.detection_id or (signal.detected_at.isoformat() if signal.detected_at else "")
    return RemediationRequest.model_validate({
        "user": user,
        "requestId": request_id_for(signal.user_key, level, basis),
        "playbook": playbook,
        "riskLevel": level,
        "reason": reason[:4000],
        "requestedBy": REQUESTED_BY,
        "source": signal.source[:200],
        "detectedAt": signal.detected_at,
    })
