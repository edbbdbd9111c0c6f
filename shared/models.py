"""Validated data shapes that cross module boundaries: signals, requests, step outcomes.

These are the public contracts of design.md (the queue message schema in particular):
changing a field name here breaks users' tooling, so tests pin them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.settings import tenant_domain, tenant_guid

MAX_MESSAGE_BYTES = 64 * 1024
"""Queue messages above this size are refused (Azure queues cap at 64 KiB anyway)."""

RiskLevel = Literal["none", "low", "medium", "high", "hidden"]


class RiskSignal(BaseModel):
    """One risk observation about one cloud user, whatever source it came from.

    Normalisers in `shared.intake.sources` produce these; `shared.intake.decision.decide`
    turns them into remediation requests. `user_id` is the Entra object id when the payload
    carries it; `upn` is kept when known. At least one of them is set.
    """

    model_config = ConfigDict(frozen=True)

    user_id: str | None = None
    upn: str | None = None
    risk_level: RiskLevel = "high"
    risk_event_type: str | None = None
    detection_id: str | None = None
    detected_at: datetime | None = None
    source: str
    """Stable source name, for example `graph.riskDetection` or `sentinel.incident`."""
    admin_initiated: bool = False
    """True for risk changes caused by an administrator (or by this responder)."""
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)
    tenant: str | None = None
    """The tenant id the payload named (a lower-case GUID), for deployments that serve
    several tenants (`shared.intake.routing`); None: the default tenant's."""

    @model_validator(mode="after")
    def _has_user(self) -> RiskSignal:
        if not (self.user_id or self.upn):
            raise ValueError("a risk signal needs a user id or a UPN")
        return self

    @property
    def user_key(self) -> str:
        """Key for deduplication: the object id when known, else the lower-cased UPN."""
        return (self.user_id or self.upn or "").lower()


class RemediationRequest(BaseModel):
    """Queue message body, schema version 1 (see README "Queue message schema").

    Unknown fields are kept (extra="allow") and ignored, as the contract promises.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: Literal[1] = Field(1, alias="schemaVersion")
    user: str = Field(min_length=1, max_length=1024)
    request_id: str | None = Field(None, alias="requestId", max_length=200)
    playbook: str | None = Field(None, max_length=100)
    actions: list[str] | None = None
    risk_level: Literal["low", "medium", "high"] | None = Field(None, alias="riskLevel")
    reason: str | None = Field(None, max_length=4000)
    requested_by: str | None = Field(None, alias="requestedBy", max_length=400)
    source: str | None = Field(None, max_length=200)
    dry_run: bool = Field(False, alias="dryRun")
    action: Literal["remediate", "release", "resume"] = "remediate"
    """`remediate` runs a playbook; `release` undoes a run after a false positive;
    `resume` continues a run after an approval decision."""
    run_id: str | None = Field(None, alias="runId", max_length=200)
    """For `release` and `resume`: the run acted on. A release without it acts on `user`'s
    most recent unreleased run."""
    all_runs: bool | None = Field(None, alias="all")
    """For a `release` by user (no `runId`): release every unreleased run of the user."""
    detected_at: datetime | None = Field(None, alias="detectedAt")
    tenant: str | None = Field(None, max_length=253)
    """The tenant acted on, for deployments that serve several (a tenant id or one of its
    accepted domains); absent: RESPONDER_TENANT_ID, as in schema version 1."""

    @field_validator("tenant")
    @classmethod
    def _tenant_is_an_id_or_domain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        name = tenant_guid(value) or tenant_domain(value)
        if name is None:
            raise ValueError("tenant must be a tenant id (GUID) or a domain name")
        return name

    @field_validator("user")
    @classmethod
    def _user_is_sane(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("user is empty")
        if any(ord(ch) < 0x20 or ch in "\x7f" for ch in value):
            raise ValueError("user contains control characters")
        if any(ch in value for ch in "/\\?") or ("#" in value and "#EXT#" not in value):
            raise ValueError("user contains characters that are not valid in an id or UPN")
        return value

    @field_validator("actions")
    @classmethod
    def _actions_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("actions, when given, must name at least one step")
        return value

    def effective_request_id(self) -> str:
        """The idempotency key: the given requestId, else a digest of the request's meaning.

        Two identical messages without ids (a double submit) map to the same run.
        """
        if self.request_id:
            return self.request_id
        meaning: dict[str, Any] = {
            "user": self.user.lower(),
            "playbook": self.playbook,
            "actions": self.actions,
            "riskLevel": self.risk_level,
            "action": self.action,
            "runId": self.run_id,
            "source": self.source,
            "reason": self.reason,
        }
        if self.all_runs:  # only when set: the ids of every other request stay as they were
            meaning["all"] = True
        basis = json.dumps(meaning, sort_keys=True)
        return "req-" + hashlib.sha256(basis.encode()).hexdigest()[:32]

    def to_message(self) -> str:
        """Serialise for the queue (by alias, without unset optional fields)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class StepStatus(StrEnum):
    """The outcome of one step in one run, as journaled."""

    DONE = "done"
    NOTHING_TO_DO = "nothing_to_do"
    SKIPPED = "skipped"
    FAILED = "failed"
    PLANNED = "planned"  # dry run: what would have been done
    WAITING_APPROVAL = "waiting_approval"
    PARTIAL = "partial"  # did what the cloud allows; something remains for a person


FINISHED_STEP_STATES = frozenset(
    {StepStatus.DONE, StepStatus.NOTHING_TO_DO, StepStatus.SKIPPED, StepStatus.PARTIAL}
)


class StepResult(BaseModel):
    """What one step did: a one-line summary, the changes made, and why it failed if it did."""

    step: str
    status: StepStatus
    summary: str = ""
    changes: list[dict[str, Any]] = Field(default_factory=list)
    """Each change is reversible data: what was changed from what to what."""
    error_code: str | None = None
    request_id: str | None = None
    """Graph's request-id for the failing call, for support tickets."""
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = Field(default_factory=list, exclude=True)
    """Audit events (kind, message, data) written with the step's record, in its
    transaction (a notification's deliveries); not part of the outcome itself."""


RunState = Literal[
    "running", "finished", "failed", "refused", "waiting_approval", "poisoned", "released"
]
