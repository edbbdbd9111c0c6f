"""The policy file (`policy.json` by default): which playbook for which risk, who is never
touched, and the knobs of each step. Validated at start; errors name the field."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import PolicyError

FULL_CONTAINMENT = (
    "collect_evidence", "reset_password", "revoke_sessions", "confirm_compromised",
    "require_mfa", "remove_suspicious_auth_methods", "disable_malicious_inbox_rules",
    "clear_mailbox_forwarding", "enable_mailbox_audit", "revoke_consent_grants",
    "remove_mailbox_delegates", "block_mobile_devices", "request_unblock", "notify",
)
"""Admin-role removal and client-protocol shutdown are not in it: they wait for an
approval for every user (approvalRequiredSteps), and role removal needs a permission the
deploy grants only when it is enabled; add them to a playbook to use them. Remote wipe is
never automatic."""
STANDARD = (
    "collect_evidence", "revoke_sessions", "require_mfa", "disable_malicious_inbox_rules",
    "enable_mailbox_audit", "notify",
)
NOTIFY_ONLY = ("collect_evidence", "notify")

DEFAULT_KEYWORDS = (
    "invoice", "payment", "wire", "transfer", "password", "bank", "remittance", "urgent",
    "credentials", "docusign", "payroll", "ach", "swift", "iban",
)
# Global Administrator, Privileged Role Administrator, Privileged Authentication
# Administrator, User Administrator, Exchange Administrator, Security Administrator,
# Application Administrator, Cloud Application Administrator, Authentication Administrator,
# Helpdesk Administrator, Conditional Access Administrator, SharePoint Administrator,
# Billing Administrator, Intune Administrator, Hybrid Identity Administrator.
DEFAULT_PRIVILEGED_ROLES = (
    "62e90394-69f5-4237-9190-012177145e10", "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "29232cdf-9323-42fd-ade2-1d097af3e4de", "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "158c047a-c907-4556-b7ef-446551a6b5f7",
    "c4e39bd9-1100-46d3-8c65-fb160da0071f", "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9", "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "b0f54661-2d74-4c50-afa3-1ec803f12efe", "3a2c62db-5318-420d-8d74-23affee5d9d5",
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Exclusions(_Strict):
    """Break-glass and other accounts the responder never touches."""

    users: tuple[str, ...] = ()
    """Object ids or UPNs (compared case-insensitively)."""
    groups: tuple[str, ...] = ()
    """Group object ids: members (transitively) are never touched."""


class MfaPolicy(_Strict):
    conditional_access_group_id: str | None = Field(None, alias="conditionalAccessGroupId")
    """A group that a Conditional Access policy requires MFA (or blocks) for."""
    per_user_mfa: bool = Field(True, alias="perUserMfa")
    """Set per-user MFA to `enforced` (beta API)."""


class AuthMethodsPolicy(_Strict):
    window_days: float = Field(7, alias="windowDays", ge=0, le=365)
    """Methods registered this long before the detection, or after it, are removed."""


class ConsentsPolicy(_Strict):
    """`revoke_consent_grants`: which of the user's app consents are revoked."""

    allowed_app_ids: tuple[str, ...] = Field((), alias="allowedAppIds")
    """Application (client) ids never revoked, whenever consented (compared
    case-insensitively); their grants are reported."""
    window_days: float = Field(7, alias="windowDays", ge=0, le=365)
    """Consents given this long before the detection, or after it, are revoked."""


DEFAULT_APPROVAL_REQUIRED_STEPS = ("remove_admin_roles", "disable_mail_protocols",
                                   "wipe_mobile_devices")


class InboxRulesPolicy(_Strict):
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    internal_domains: tuple[str, ...] = Field((), alias="internalDomains")
    """Extra domains counted as internal, besides the tenant's verified domains."""
    include_hidden: bool = Field(True, alias="includeHidden")
    """Also look for hidden rules through Exchange (Get-InboxRule -IncludeHidden)."""


class DelegationPolicy(_Strict):
    """`remove_mailbox_delegates`: grants on the user's mailbox made in the risk window."""

    window_days: float = Field(7, alias="windowDays", ge=0, le=365)
    """Grants made this long before the detection, or after it, are removed."""
    audit_wait_seconds: float = Field(90, alias="auditWaitSeconds", ge=0, le=480)
    """How long to wait for the audit log query that dates the grants; undated grants are
    reported, and only those to principals outside the organisation removed."""


class MobileDevicesPolicy(_Strict):
    """`block_mobile_devices` (and the approval-only `wipe_mobile_devices`)."""

    window_days: float = Field(7, alias="windowDays", ge=0, le=365)
    """ActiveSync partnerships first synced this long before the detection, or after it."""
    wipe_account_only: bool = Field(True, alias="wipeAccountOnly")
    """`wipe_mobile_devices` removes only the mailbox data (Clear-MobileDevice
    -AccountOnly), not the whole device."""


Protocol = Literal["imap", "pop", "ews", "activesync", "mapi", "owa"]


class ProtocolsPolicy(_Strict):
    """`disable_mail_protocols`: client protocols turned off until release."""

    disable: tuple[Protocol, ...] = ("imap", "pop")
    """IMAP and POP carry no MFA and are what password sprayers use; add `ews`,
    `activesync`, `mapi` or `owa` to cut more (the user's own clients stop too)."""


class UnblockPolicy(_Strict):
    automatic: bool = False
    """Release from restricted senders automatically once contained (else a pending request
    for an administrator)."""


class GuestsPolicy(_Strict):
    """External (B2B) users: their password and sessions live in their home tenant."""

    block_sign_in: bool = Field(True, alias="blockSignIn")
    """`reset_password` blocks a compromised guest's sign-in to this tenant (accountEnabled
    false; a release enables it again), since neither their password nor their home
    sessions can be reset from here. On by default: it is the one containment this tenant
    has, and Identity Protection itself blocks a guest it cannot make reset a password.
    Removing the guest's access altogether is left to an administrator."""


class NotifyPolicy(_Strict):
    soc_mailbox: str | None = Field(None, alias="socMailbox")
    sender: str | None = None
    """The mailbox the summary is sent from (Mail.Send; scope it with an application access
    policy to this one mailbox)."""
    teams_webhook_url: str | None = Field(None, alias="teamsWebhookUrl")
    webhook_url: str | None = Field(None, alias="webhookUrl")
    webhook_secret_setting: str = Field("RESPONDER_WEBHOOK_SECRET", alias="webhookSecretSetting")

    @field_validator("webhook_secret_setting")
    @classmethod
    def _own_secret(cls, value: str) -> str:
        """The webhook receiver learns this secret: it must never be another secret of the
        app (the approval key or the static token would let it forge approvals)."""
        forbidden = {"RESPONDER_APPROVAL_SECRET", "RESPONDER_STATIC_TOKEN",
                     "RESPONDER_WEBHOOK_SHARED_SECRET", "RESPONDER_GRAPH_CLIENT_STATE"}
        if not value.startswith("RESPONDER_") or value in forbidden:
            raise ValueError("webhookSecretSetting must name a RESPONDER_* setting of its own, "
                             f"not {sorted(forbidden)}")
        return value


class PrivilegedPolicy(_Strict):
    role_template_ids: tuple[str, ...] = Field(DEFAULT_PRIVILEGED_ROLES, alias="roleTemplateIds")
    require_approval: bool = Field(True, alias="requireApproval")
    always_safe_steps: tuple[str, ...] = Field(
        ("collect_evidence", "revoke_sessions", "confirm_compromised",
         "disable_malicious_inbox_rules", "clear_mailbox_forwarding", "enable_mailbox_audit",
         "notify"),
        alias="alwaysSafeSteps",
    )
    approval_hours: float = Field(4, alias="approvalHours", gt=0, le=168)


Fix = Literal["fix", "report"]
Enqueue = Literal["enqueue", "report"]


class AuditSweepPolicy(_Strict):
    """What the mailbox audit sweep changes (`fix`) or only reports (`report`)."""

    mailboxes: Fix = "fix"
    """Mailboxes with AuditEnabled false: turning auditing on is the safe state."""
    bypass: Fix = "fix"
    """Accounts with an audit bypass association (their activity is not logged)."""
    organization: Fix = "report"
    """The organisation-wide switch (AuditDisabled): reported unless set to `fix`."""


class RiskyUsersSweepPolicy(_Strict):
    levels: tuple[Literal["low", "medium", "high"], ...] = ("high",)
    """Risk levels swept (users still `atRisk`); add `medium` to sweep those too."""
    mode: Enqueue = "enqueue"


class RestrictedSendersSweepPolicy(_Strict):
    mode: Enqueue = "enqueue"
    """Blocked senders with no run: a remediation request, or a line in the report.
    Release of contained ones follows `unblock.automatic`."""


class StalledRunsSweepPolicy(_Strict):
    after_minutes: float = Field(60, alias="afterMinutes", ge=5, le=7 * 24 * 60)
    """A run still `running` and not updated for this long is stalled."""
    mode: Literal["resume", "report"] = "resume"


class ForwardingSweepPolicy(_Strict):
    enabled: bool = False
    """Opt-in (or app setting RESPONDER_SWEEP_FORWARDING_ENABLED=true)."""
    mode: Enqueue = "report"
    mailboxes_per_run: int = Field(100, alias="mailboxesPerRun", ge=1, le=5000)
    """Mailboxes whose rules are read per run; the sweep rotates through the tenant."""
    risk_level: Literal["low", "medium", "high"] = Field("high", alias="riskLevel")


class SecureScoreSweepPolicy(_Strict):
    days: int = Field(7, ge=2, le=90)
    """Days of Secure Score history read for the trend."""


class ReinfectionSweepPolicy(_Strict):
    """The re-infection watch (docs/sweeps.md): contained users are checked again for a while
    for what an attacker who kept a foothold puts back."""

    days: float = Field(7, ge=0.1, le=90)
    """How long after a containment (a finished, unreleased, real run) the user is watched."""
    steps: tuple[str, ...] = (
        "disable_malicious_inbox_rules", "clear_mailbox_forwarding",
        "remove_suspicious_auth_methods", "revoke_consent_grants", "remove_mailbox_delegates")
    """Watch steps whose plan (read-only) is run for each watched user; any action they plan
    means something reappeared. A name that is not a registered step is skipped with a note."""
    users_per_run: int = Field(50, alias="usersPerRun", ge=1, le=5000)
    """Watched users checked per sweep run; the next run resumes after the last one."""
    mode: Enqueue = "enqueue"
    """`enqueue`: a new run for the user (reason "reinfection: ..."); `report`: a line only."""
    risk_level: Literal["low", "medium", "high"] = Field("high", alias="riskLevel")
    """The level of the new run's request (its playbook comes from riskLevelPlaybooks)."""


class SweepsPolicy(_Strict):
    """The timer sweeps (docs/sweeps.md). Defaults change only what is safe to change."""

    recent_run_hours: float = Field(24, alias="recentRunHours", ge=0, le=30 * 24)
    """Users with a run finished (or still going) in this window are not queued again."""
    max_items_per_run: int = Field(500, alias="maxItemsPerRun", ge=1, le=100_000)
    max_seconds_per_run: float = Field(480, alias="maxSecondsPerRun", ge=5, le=3600)
    audit: AuditSweepPolicy = AuditSweepPolicy()
    risky_users: RiskyUsersSweepPolicy = Field(RiskyUsersSweepPolicy(), alias="riskyUsers")
    restricted_senders: RestrictedSendersSweepPolicy = Field(
        RestrictedSendersSweepPolicy(), alias="restrictedSenders")
    stalled_runs: StalledRunsSweepPolicy = Field(StalledRunsSweepPolicy(), alias="stalledRuns")
    forwarding: ForwardingSweepPolicy = ForwardingSweepPolicy()
    secure_score: SecureScoreSweepPolicy = Field(SecureScoreSweepPolicy(), alias="secureScore")
    reinfection: ReinfectionSweepPolicy = ReinfectionSweepPolicy()


def _default_risk_level_playbooks() -> dict[Literal["low", "medium", "high"], str]:
    """A fresh mapping per Policy (a named function so the keys keep their Literal type)."""
    return {"high": "full-containment", "medium": "standard", "low": "notify-only"}


class Policy(_Strict):
    """The whole policy file."""

    playbooks: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "full-containment": FULL_CONTAINMENT,
            "standard": STANDARD,
            "notify-only": NOTIFY_ONLY,
        }
    )
    risk_level_playbooks: dict[Literal["low", "medium", "high"], str] = Field(
        default_factory=_default_risk_level_playbooks, alias="riskLevelPlaybooks",
    )
    default_risk_level: Literal["low", "medium", "high"] = Field("high", alias="defaultRiskLevel")
    exclusions: Exclusions = Exclusions()
    mfa: MfaPolicy = MfaPolicy()
    auth_methods: AuthMethodsPolicy = Field(AuthMethodsPolicy(), alias="authMethods")
    consents: ConsentsPolicy = ConsentsPolicy()
    approval_required_steps: tuple[str, ...] = Field(DEFAULT_APPROVAL_REQUIRED_STEPS,
                                                     alias="approvalRequiredSteps")
    """Steps that wait for a person's approval for EVERY user, not only privileged ones
    (the privileged-user gate applies on top). `[]` turns this off."""
    inbox_rules: InboxRulesPolicy = Field(InboxRulesPolicy(), alias="inboxRules")
    delegation: DelegationPolicy = DelegationPolicy()
    mobile_devices: MobileDevicesPolicy = Field(MobileDevicesPolicy(), alias="mobileDevices")
    protocols: ProtocolsPolicy = ProtocolsPolicy()
    unblock: UnblockPolicy = UnblockPolicy()
    guests: GuestsPolicy = GuestsPolicy()
    notify: NotifyPolicy = NotifyPolicy()
    privileged: PrivilegedPolicy = PrivilegedPolicy()
    sweeps: SweepsPolicy = SweepsPolicy()
    verify: bool = True
    """After a step changes the tenant, read the state back and record "verified" or the
    differences in the run (shared.playbook.verify); false skips those reads."""
    dedupe_minutes: float = Field(60, alias="dedupeMinutes", ge=0, le=7 * 24 * 60)
    """Signals for a user with a run in this window start no new run."""

    @field_validator("playbooks")
    @classmethod
    def _no_empty_playbook(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        # Step names are checked against the registry by shared.playbook.catalogue
        # (check_policy) when the services are built: the policy knows no steps.
        for name, steps in value.items():
            if not steps:
                raise ValueError(f"playbook {name!r} has no steps")
        return value

    @model_validator(mode="after")
    def _levels_point_at_playbooks(self) -> Policy:
        for level, playbook in self.risk_level_playbooks.items():
            if playbook not in self.playbooks:
                raise ValueError(f"riskLevelPlaybooks.{level} names unknown playbook {playbook!r}")
        return self

    def excluded_user(self, *identifiers: str | None) -> bool:
        """True when any identifier (object id, UPN, mail) is in the excluded users."""
        listed = {u.lower() for u in self.exclusions.users}
        return any(i and i.lower() in listed for i in identifiers)


def load_policy(path: str | Path | None) -> Policy:
    """Read and validate the policy file; a missing default file gives the default policy."""
    if path is None:
        return Policy()
    p = Path(path)
    if not p.exists():
        if str(path) == "policy.json" and not os.environ.get("WEBSITE_HOSTNAME"):
            logging.getLogger("responder.policy").warning(
                "policy.json not found: using the default policy, which excludes NO accounts "
                "(add your break-glass accounts to a policy file)")
            return Policy()
        # In Azure a missing policy file is an error: it would silently mean "no
        # break-glass exclusions".
        raise PolicyError(f"RESPONDER_POLICY points at {str(p)!r}, which does not exist")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"policy file {str(p)!r} is not valid JSON: {exc}") from exc
    return parse_policy(raw, origin=str(p))


def parse_policy(raw: object, origin: str = "policy") -> Policy:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"{origin} is invalid: {problems}") from exc
