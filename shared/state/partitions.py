"""Every Table-storage partition the responder writes, named once.

Runs live in a partition of their own (the run id); everything else is in one of these.
Renaming one orphans existing rows: they are part of the deployed data's layout.
"""

from __future__ import annotations

RUN_INDEX_PREFIX = "user-"
"""Per-user index of runs: `user-<user key>` (see `Journal.runs_for_user`)."""
INVALID_MESSAGES = "invalid-messages"
"""Queue messages that failed validation, with the reason (poisoned at once)."""
NOTIFICATIONS = "notifications"
"""What was sent to whom (never a token or a password)."""
APPROVALS = "approvals"
"""One approval row per run that waits for a person."""
APPROVAL_REFUSALS = "approval-refusals"
"""Refused approval links (forged, expired, reused)."""
PENDING_UNBLOCKS = "pending-unblocks"
"""Restricted-sender releases waiting for an administrator (or the sweep)."""
SWEEP_CHECKPOINTS = "sweep-checkpoints"
"""Where each sweep resumes."""
SWEEP_LEASES = "sweep-leases"
"""One lease row per sweep."""
INTAKE = "intake"
"""Intake outcomes (accepted, refused, problems) per payload."""
INTAKE_USERS = "intake-users"
"""Dedupe: the latest admitted signal per user."""
INTAKE_DETECTIONS = "intake-detections"
"""Dedupe: detections already seen."""
INTAKE_POLLER = "intake-poller"
"""The risk poller's watermark and lease."""
INTAKE_USER_CHECKS = "intake-user-checks"
"""Users a change notification named, waiting for the poller's paced risk read."""

RATE_BUDGETS = "rate-budgets"
"""One row per shared per-tenant request budget (shared.state.budget)."""

SWEEP_REPORTS = "sweep-reports"
"""The latest report of each sweep."""
SECURE_SCORE_HISTORY = "securescore-history"
"""One Secure Score row per day."""
SECURE_SCORE_LAST = "securescore"
"""The last Secure Score sweep's snapshot."""


def sweep_events(name: str) -> str:
    """A sweep's append-only events."""
    return f"sweep-{name}"


ALL: tuple[str, ...] = (
    INVALID_MESSAGES, NOTIFICATIONS, APPROVALS, APPROVAL_REFUSALS, PENDING_UNBLOCKS,
    SWEEP_CHECKPOINTS, SWEEP_LEASES, INTAKE, INTAKE_USERS, INTAKE_DETECTIONS, INTAKE_POLLER,
    INTAKE_USER_CHECKS, RATE_BUDGETS, SWEEP_REPORTS, SECURE_SCORE_HISTORY, SECURE_SCORE_LAST,
)
"""Every fixed partition (per-run and per-sweep partitions are named by functions)."""
