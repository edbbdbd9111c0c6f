"""The one settings object, read once from app settings (environment) and validated.

Names are public contracts (README "App settings"): users' Bicep, scripts and pipelines set
them. A bad value fails at start with an error that names the setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

CredentialKind = Literal["managed-identity", "default", "static-token", "federated-app"]
CREDENTIAL_KINDS = ("managed-identity", "default", "static-token", "federated-app")


@dataclass(frozen=True)
class SettingSpec:
    """One app setting: its name, default (None = required) and meaning, for README and infra."""

    name: str
    default: str | None
    meaning: str
    required_in_azure: bool = False


APP_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("AzureWebJobsStorage", None, "storage for queues, run journal, evidence", True),
    SettingSpec("RESPONDER_TENANT_ID", None, "the tenant acted on", True),
    SettingSpec("GRAPH_BASE_URL", "https://graph.microsoft.com", "Graph host, no version"),
    SettingSpec("EXCHANGE_BASE_URL", "https://outlook.office365.com", "Exchange admin REST host"),
    SettingSpec("RESPONDER_CREDENTIAL", "managed-identity", "credential kind"),
    SettingSpec("RESPONDER_STATIC_TOKEN", "", "bearer token for static-token; loopback only"),
    SettingSpec("AZURE_CLIENT_ID", "", "client id of a user-assigned managed identity"),
    SettingSpec("REMEDIATION_QUEUE", "remediation-requests", "the queue of remediation requests"),
    SettingSpec("RESPONDER_POLICY", "policy.json", "path to the policy file"),
    SettingSpec("RESPONDER_DRY_RUN", "false", "true: every run plans and reports, writes nothing"),
)
"""The contract of design.md. Later features add their own settings below this block."""

EXTRA_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("RESPONDER_JOURNAL_TABLE", "responderruns", "Table storage table of run records"),
    SettingSpec("RESPONDER_EVIDENCE_CONTAINER", "responder-evidence", "evidence blobs"),
    SettingSpec("RESPONDER_MAX_RETRY_WAIT_SECONDS", "120", "bound on total retry wait per call"),
    SettingSpec("RESPONDER_MAX_ATTEMPTS", "6", "bound on attempts per Graph/Exchange call"),
    # timer sweeps (docs/sweeps.md): 6-field NCRONTAB schedules, UTC unless WEBSITE_TIME_ZONE
    SettingSpec("RESPONDER_SWEEP_AUDIT_SCHEDULE", "0 15 2 * * *", "mailbox audit sweep schedule"),
    SettingSpec("RESPONDER_SWEEP_RISKY_USERS_SCHEDULE", "0 */30 * * * *",
                "risky-user sweep schedule"),
    SettingSpec("RESPONDER_SWEEP_RESTRICTED_SENDERS_SCHEDULE", "0 5,35 * * * *",
                "restricted-senders reconciliation schedule"),
    SettingSpec("RESPONDER_SWEEP_STALLED_RUNS_SCHEDULE", "0 */15 * * * *",
                "stalled-run sweep schedule"),
    SettingSpec("RESPONDER_SWEEP_FORWARDING_SCHEDULE", "0 20 * * * *",
                "forwarding and inbox-rules sweep schedule (opt-in)"),
    SettingSpec("RESPONDER_SWEEP_SECURE_SCORE_SCHEDULE", "0 0 7 * * *",
                "Secure Score posture sweep schedule"),
    SettingSpec("RESPONDER_SWEEP_REINFECTION_SCHEDULE", "0 40 * * * *",
                "re-infection watch schedule (contained users re-checked)"),
    SettingSpec("RESPONDER_SWEEPS_DRY_RUN", "false",
                "true: sweeps report what they would do and change nothing"),
    SettingSpec("RESPONDER_SWEEP_FORWARDING_ENABLED", "false",
                "true: turn on the opt-in forwarding and inbox-rules sweep"),
    # risk-alert intake (docs/intake.md)
    SettingSpec("RESPONDER_POLL_SCHEDULE", "0 */5 * * * *",
                "riskDetections poll schedule (6-field NCRONTAB; must be set: the timer binds it)"),
    SettingSpec("RESPONDER_POLL_LOOKBACK_MINUTES", "60",
                "first poll (no watermark yet) reads detections this far back"),
    SettingSpec("RESPONDER_POLL_OVERLAP_MINUTES", "15",
                "each poll re-reads this far before the watermark (late detections)"),
    SettingSpec("RESPONDER_WEBHOOK_SHARED_SECRET", "",
                "optional: alert webhook callers must send it in X-Responder-Secret"),
    SettingSpec("RESPONDER_GRAPH_CLIENT_STATE", "",
                "clientState of Graph change-notification subscriptions (unset: refused)"),
    SettingSpec("RESPONDER_CLEANUP_QUEUE", "remediation-requests-cleanup",
                "queue of runs whose account is contained and whose clean-up steps follow "
                "(default: REMEDIATION_QUEUE + '-cleanup'; the queue trigger binds it)"),
    SettingSpec("RESPONDER_OVERFLOW_QUEUE", "remediation-requests-overflow",
                "queue of remediation requests a tenant over its share of an instance moved "
                "aside, so another tenant's requests are reached at once (default: "
                "REMEDIATION_QUEUE + '-overflow'; the queue trigger binds it)"),
    SettingSpec("RESPONDER_INTAKE_QUEUE", "responder-intake",
                "queue of large alert bodies stored for the intake worker (the queue trigger "
                "binds it)"),
    # approvals, notifications (docs/safety.md)
    SettingSpec("RESPONDER_APPROVAL_SECRET", "",
                "HMAC key (32+ chars, a Key Vault reference) signing approve/deny links; "
                "unset: approvals are recorded without links and escalate on expiry"),
    SettingSpec("RESPONDER_APPROVAL_BASE_URL", "",
                "public URL of the approvals endpoint, https://<app>/api/approvals"),
    SettingSpec("RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER", "false",
                "true only behind App Service Authentication: record the signed-in approver"),
    SettingSpec("RESPONDER_WEBHOOK_SECRET", "",
                "HMAC key for the generic notification webhook (policy notify."
                "webhookSecretSetting names it)"),
    SettingSpec("RESPONDER_NOTIFY_TIMEOUT_SECONDS", "5", "timeout of each webhook delivery"),
    SettingSpec("RESPONDER_APPROVALS_ESCALATION_SCHEDULE", "0 */5 * * * *",
                "approvals escalation timer schedule (6-field NCRONTAB; must be set: the "
                "timer binds it)"),
    # preflight (README "First run in your tenant")
    SettingSpec("RESPONDER_PREFLIGHT_SCHEDULE", "0 30 6 * * *",
                "preflight timer schedule (6-field NCRONTAB; must be set: the timer binds it); "
                "it also runs at each start of the app"),
    # case report as PDF (docs/safety.md "Case report")
    SettingSpec("RESPONDER_CHROMIUM_PATH", "",
                "Chromium that prints the case report to PDF; unset: chromium, "
                "chromium-browser or google-chrome on PATH (none: PDF answers 501)"),
    SettingSpec("RESPONDER_PDF_TIMEOUT_SECONDS", "60",
                "bound on one headless Chromium PDF print (5 to 300)"),
    # one deployment, many tenants (docs/multi-tenant.md)
    SettingSpec("RESPONDER_TENANTS_TABLE", "respondertenants",
                "Table storage table of the tenant registry (absent: one tenant only)"),
    SettingSpec("RESPONDER_APP_CLIENT_ID", "",
                "client id of the multi-tenant app registration whose federated credential is "
                "the app's managed identity (RESPONDER_CREDENTIAL=federated-app)"),
    SettingSpec("RESPONDER_AUTHORITY_HOST", "",
                "https Entra authority for federated-app tokens (tests and local only; "
                "empty: azure-identity's default)"),
)


WEBHOOK_SECRET_SETTING = "RESPONDER_WEBHOOK_SECRET"  # noqa: S105 (a setting name)
"""The default of the policy's notify.webhookSecretSetting."""
MAX_POLL_MINUTES = 7 * 24 * 60.0
"""Bound on the poll look-back and overlap (a week)."""


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or default).strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    if parts.scheme == "http" and not _is_loopback(raw):
        raise SettingsError(f"{name} may use http:// only for a loopback host, got {raw!r}")
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must not carry a query or fragment")
    path = parts.path.rstrip("/")
    if path.endswith(("/v1.0", "/beta")):
        raise SettingsError(f"{name} must not include the API version (the code adds it)")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _bool(env: Mapping[str, str], name: str, default: str) -> bool:
    raw = (env.get(name) or default).strip().lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _strict_bool(env: Mapping[str, str], name: str) -> bool:
    """Only `true` turns it on: a setting that grants trust is never read loosely."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("true", "false", ""):
        return raw == "true"
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: str, lo: float, hi: float) -> float:
    raw = (env.get(name) or default).strip() or default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not lo <= value <= hi:  # NaN fails this too
        raise SettingsError(f"{name} must be between {lo:g} and {hi:g}, got {raw!r}")
    return value


def _queue_name(env: Mapping[str, str], name: str, default: str) -> str:
    """A Storage queue name (3-63 lowercase letters, digits, '-'), or the setting's error."""
    queue = (env.get(name) or default).strip()
    if not (3 <= len(queue) <= 63) or not all(c.islower() or c.isdigit() or c == "-"
                                               for c in queue):
        raise SettingsError(
            f"{name} must be a valid queue name (3-63 lowercase, digits, '-'), got {queue!r}"
        )
    return queue


def _int(env: Mapping[str, str], name: str, default: str, lo: int, hi: int) -> int:
    raw = (env.get(name) or default).strip()
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from exc
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def cleanup_queue_for(remediation_queue: str) -> str:
    """The clean-up lane's queue when RESPONDER_CLEANUP_QUEUE is not set."""
    return f"{remediation_queue}-cleanup"


def overflow_queue_for(remediation_queue: str) -> str:
    """The overflow lane's queue when RESPONDER_OVERFLOW_QUEUE is not set."""
    return f"{remediation_queue}-overflow"


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
# Table names: alphanumeric, not starting with a digit, 3-63 characters
# (https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model#table-names).
_CONTAINER_NAME = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")
# Container names: 3-63 lower-case letters, digits and single hyphens, starting and ending
# with a letter or digit (https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata#container-names).


def tenant_guid(value: str | None) -> str | None:
    """The lower-case tenant id when `value` is a GUID, else None (a domain, or junk)."""
    text = (value or "").strip().lower()
    return text if _GUID.fullmatch(text) else None


_DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def tenant_domain(value: str | None) -> str | None:
    """The lower-case DNS name when `value` is one (a tenant's accepted domain), else None."""
    text = (value or "").strip().lower()
    return text if _DOMAIN.fullmatch(text) else None


def is_table_name(name: str) -> bool:
    return bool(_TABLE_NAME.fullmatch(name))


def is_container_name(name: str) -> bool:
    return bool(_CONTAINER_NAME.fullmatch(name))


def _table_name(env: Mapping[str, str], name: str, default: str) -> str:
    table = (env.get(name) or default).strip()
    if not is_table_name(table):
        raise SettingsError(f"{name} must be a valid table name (3-63 letters and digits, "
                            f"starting with a letter), got {table!r}")
    return table


def _authority(env: Mapping[str, str], name: str) -> str:
    """Empty, or an https authority host (azure-identity refuses anything but https)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{name} must be an https URL (an Entra authority), got {raw!r}")
    return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, validated once at start."""

    storage_connection: str
    tenant_id: str
    storage_account: str = ""
    """Identity-based storage (`AzureWebJobsStorage__accountName`), used when no connection
    string is set: the deployed app holds no storage keys."""
    graph_base_url: str = "https://graph.microsoft.com"
    exchange_base_url: str = "https://outlook.office365.com"
    credential: CredentialKind = "managed-identity"
    static_token: str = field(default="", repr=False)
    managed_identity_client_id: str = ""
    remediation_queue: str = "remediation-requests"
    policy_path: str = "policy.json"
    dry_run: bool = False
    journal_table: str = "responderruns"
    evidence_container: str = "responder-evidence"
    max_retry_wait_seconds: float = 120.0
    max_attempts: int = 6
    website_hostname: str = ""
    """Set by Azure App Service / Functions (`WEBSITE_HOSTNAME`): the app's public host, used
    for links (approvals) when no explicit base URL is configured."""
    # risk-alert intake (docs/intake.md)
    poll_lookback_minutes: float = 60.0
    """RESPONDER_POLL_LOOKBACK_MINUTES: how far back the first poll (no watermark) reads."""
    poll_overlap_minutes: float = 15.0
    """RESPONDER_POLL_OVERLAP_MINUTES: how far before the watermark each poll re-reads."""
    webhook_shared_secret: str = field(default="", repr=False)
    """RESPONDER_WEBHOOK_SHARED_SECRET: optional X-Responder-Secret of the alert webhook."""
    graph_client_state: str = field(default="", repr=False)
    """RESPONDER_GRAPH_CLIENT_STATE: clientState of Graph change notifications (unset:
    change notifications are refused)."""
    cleanup_queue: str = "remediation-requests-cleanup"
    """RESPONDER_CLEANUP_QUEUE: a run contains the account from REMEDIATION_QUEUE, then its
    clean-up steps wait here, so every queued account is contained before clean-up takes
    the capacity (each queue trigger has its own concurrency)."""
    overflow_queue: str = "remediation-requests-overflow"
    """RESPONDER_OVERFLOW_QUEUE: when the deployment serves several tenants, a containment
    request of a tenant that already holds its share of an instance is moved here, so the
    remediation queue drains and another tenant's request is reached within seconds
    (shared.playbook.fairness); a single-tenant deployment never uses it."""
    intake_queue: str = "responder-intake"
    """RESPONDER_INTAKE_QUEUE: large alert bodies wait here (as a pointer to a stored blob)
    for the intake worker, so the webhook answers at once."""
    # timer sweeps (docs/sweeps.md)
    sweeps_dry_run: bool = False
    """RESPONDER_SWEEPS_DRY_RUN: sweeps report what they would do and change nothing."""
    sweep_forwarding_enabled: bool = False
    """RESPONDER_SWEEP_FORWARDING_ENABLED: turns on the opt-in forwarding sweep."""
    # approvals, notifications (docs/safety.md)
    approval_secret: str = field(default="", repr=False)
    """RESPONDER_APPROVAL_SECRET: HMAC key of approve/deny links (too short = unset)."""
    approval_base_url: str = ""
    """RESPONDER_APPROVAL_BASE_URL: public URL of the approvals endpoint."""
    approval_trust_principal_header: bool = False
    """RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER: only `true` (behind App Service
    Authentication) records the signed-in approver as trusted."""
    webhook_secret: str = field(default="", repr=False)
    """RESPONDER_WEBHOOK_SECRET: HMAC key of the generic notification webhook."""
    notify_timeout_seconds: float = 5.0
    """RESPONDER_NOTIFY_TIMEOUT_SECONDS: timeout of each webhook delivery."""
    # case report as PDF (docs/safety.md "Case report")
    chromium_path: str = ""
    """RESPONDER_CHROMIUM_PATH: the Chromium that prints the case report; unset: looked up
    on PATH. Not checked at start: a missing browser only makes the PDF unavailable."""
    pdf_timeout_seconds: float = 60.0
    """RESPONDER_PDF_TIMEOUT_SECONDS: bound on one PDF print (Chromium is killed after)."""
    # one deployment, many tenants (docs/multi-tenant.md)
    tenants_table: str = "respondertenants"
    """RESPONDER_TENANTS_TABLE: the tenant registry (shared.state.tenants); a missing table
    is an empty registry: the deployment serves RESPONDER_TENANT_ID only."""
    app_client_id: str = ""
    """RESPONDER_APP_CLIENT_ID: appId of the multi-tenant app registration that trusts the
    managed identity (federated credential); every tenant consents to this app."""
    authority_host: str = ""
    """RESPONDER_AUTHORITY_HOST: the Entra authority of federated-app tokens; empty means
    azure-identity's default (login.microsoftonline.com). For tests and local use only."""
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """Read-only raw RESPONDER_* environment, only for the one setting whose name is chosen
    at run time (the policy's notify.webhookSecretSetting, read through `secret_named`)."""

    def secret_named(self, name: str) -> str:
        """The value of the RESPONDER_* setting a policy names (notify.webhookSecretSetting):
        the default name is the typed field; another name is read as set, unparsed."""
        if name == WEBHOOK_SECRET_SETTING:
            return self.webhook_secret
        return self.extra.get(name, "")

    def is_default_tenant(self, tenant: str | None) -> bool:
        """True for no tenant and for RESPONDER_TENANT_ID itself (compared without case)."""
        return not tenant or tenant.strip().lower() == self.tenant_id.strip().lower()

    def for_tenant(self, tenant_id: str) -> Settings:
        """These settings for another tenant: its own journal table and evidence container,
        so every per-tenant row (runs, dedupe, leases, approvals, rate budgets) is apart with
        the partition layout unchanged. The default tenant gets these very settings."""
        if self.is_default_tenant(tenant_id):
            return self
        guid = tenant_guid(tenant_id)
        if guid is None:
            raise SettingsError(f"a tenant other than RESPONDER_TENANT_ID is named by its "
                                f"tenant id (a GUID), got {tenant_id!r}")
        table = f"{self.journal_table}t{guid.replace('-', '')}".lower()
        container = f"{self.evidence_container}-{guid}".lower()
        if not is_table_name(table):
            raise SettingsError(f"RESPONDER_JOURNAL_TABLE is too long to name tenant tables "
                                f"({table!r} is over 63 characters)")
        if not is_container_name(container):
            raise SettingsError(f"RESPONDER_EVIDENCE_CONTAINER is too long to name tenant "
                                f"containers ({container!r} is over 63 characters)")
        return dataclasses.replace(self, tenant_id=guid, journal_table=table,
                                   evidence_container=container)

    @property
    def loopback_only(self) -> bool:
        """True when both service URLs are loopback (the emulator)."""
        return _is_loopback(self.graph_base_url) and _is_loopback(self.exchange_base_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate; raises SettingsError naming the first bad setting."""
        env = os.environ if env is None else env
        storage = (env.get("AzureWebJobsStorage") or "").strip()
        if not storage and not (env.get("AzureWebJobsStorage__accountName") or "").strip():
            raise SettingsError(
                "AzureWebJobsStorage is required (a connection string, or the identity-based "
                "AzureWebJobsStorage__accountName setting)"
            )
        tenant = (env.get("RESPONDER_TENANT_ID") or "").strip()
        if not tenant:
            raise SettingsError("RESPONDER_TENANT_ID is required (the tenant acted on)")
        if len(tenant) > 100 or any(c in tenant for c in "/?#\\ "):
            raise SettingsError("RESPONDER_TENANT_ID must be a tenant id or domain name")
        graph = _base_url(env, "GRAPH_BASE_URL", "https://graph.microsoft.com")
        exchange = _base_url(env, "EXCHANGE_BASE_URL", "https://outlook.office365.com")
        credential = (env.get("RESPONDER_CREDENTIAL") or "managed-identity").strip()
        if credential not in CREDENTIAL_KINDS:
            raise SettingsError(
                "RESPONDER_CREDENTIAL must be managed-identity, default, static-token or "
                f"federated-app, got {credential!r}"
            )
        app_client_id = (env.get("RESPONDER_APP_CLIENT_ID") or "").strip()
        if credential == "federated-app":
            if not tenant_guid(app_client_id):
                raise SettingsError("RESPONDER_APP_CLIENT_ID (the multi-tenant app's client "
                                    "id, a GUID) is required for federated-app")
            if not (env.get("AZURE_CLIENT_ID") or "").strip():
                raise SettingsError("AZURE_CLIENT_ID (the user-assigned managed identity the "
                                    "app trusts) is required for federated-app")
        token = env.get("RESPONDER_STATIC_TOKEN") or ""
        if credential == "static-token":
            if not token:
                raise SettingsError("RESPONDER_STATIC_TOKEN is required for static-token")
            if not (_is_loopback(graph) and _is_loopback(exchange)):
                raise SettingsError(
                    "RESPONDER_CREDENTIAL=static-token is refused unless GRAPH_BASE_URL and "
                    "EXCHANGE_BASE_URL are loopback (it exists for the local emulator only)"
                )
        queue = _queue_name(env, "REMEDIATION_QUEUE", "remediation-requests")
        intake_queue = _queue_name(env, "RESPONDER_INTAKE_QUEUE", "responder-intake")
        cleanup_queue = _queue_name(env, "RESPONDER_CLEANUP_QUEUE", cleanup_queue_for(queue))
        overflow_queue = _queue_name(env, "RESPONDER_OVERFLOW_QUEUE",
                                     overflow_queue_for(queue))
        if len({queue, intake_queue, cleanup_queue, overflow_queue}) < 4:
            raise SettingsError("REMEDIATION_QUEUE, RESPONDER_CLEANUP_QUEUE, "
                                "RESPONDER_OVERFLOW_QUEUE and RESPONDER_INTAKE_QUEUE must be "
                                "four different queues")
        tenants_table = _table_name(env, "RESPONDER_TENANTS_TABLE", "respondertenants")
        journal_table = (env.get("RESPONDER_JOURNAL_TABLE") or "responderruns").strip()
        if tenants_table.lower() == journal_table.lower():
            # the registry is configuration, rewritten in place; the journal is the record
            raise SettingsError("RESPONDER_TENANTS_TABLE must not be the journal table "
                                "(RESPONDER_JOURNAL_TABLE)")
        return cls(
            storage_connection=storage,
            storage_account=(env.get("AzureWebJobsStorage__accountName") or "").strip(),
            tenant_id=tenant,
            graph_base_url=graph,
            exchange_base_url=exchange,
            credential=credential,  # type: ignore[arg-type]
            static_token=token,
            managed_identity_client_id=(env.get("AZURE_CLIENT_ID") or "").strip(),
            remediation_queue=queue,
            policy_path=(env.get("RESPONDER_POLICY") or "policy.json").strip(),
            dry_run=_bool(env, "RESPONDER_DRY_RUN", "false"),
            journal_table=journal_table,
            evidence_container=(
                env.get("RESPONDER_EVIDENCE_CONTAINER") or "responder-evidence"
            ).strip(),
            max_retry_wait_seconds=float(
                _int(env, "RESPONDER_MAX_RETRY_WAIT_SECONDS", "120", 1, 3600)
            ),
            max_attempts=_int(env, "RESPONDER_MAX_ATTEMPTS", "6", 1, 20),
            website_hostname=(env.get("WEBSITE_HOSTNAME") or "").strip(),
            poll_lookback_minutes=_float(env, "RESPONDER_POLL_LOOKBACK_MINUTES", "60",
                                         0.0, MAX_POLL_MINUTES),
            poll_overlap_minutes=_float(env, "RESPONDER_POLL_OVERLAP_MINUTES", "15",
                                        0.0, MAX_POLL_MINUTES),
            webhook_shared_secret=env.get("RESPONDER_WEBHOOK_SHARED_SECRET") or "",
            graph_client_state=(env.get("RESPONDER_GRAPH_CLIENT_STATE") or "").strip(),
            intake_queue=intake_queue,
            cleanup_queue=cleanup_queue,
            overflow_queue=overflow_queue,
            sweeps_dry_run=_bool(env, "RESPONDER_SWEEPS_DRY_RUN", "false"),
            sweep_forwarding_enabled=_bool(env, "RESPONDER_SWEEP_FORWARDING_ENABLED", "false"),
            approval_secret=env.get("RESPONDER_APPROVAL_SECRET") or "",
            approval_base_url=(env.get("RESPONDER_APPROVAL_BASE_URL") or "").strip(),
            approval_trust_principal_header=_strict_bool(
                env, "RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER"),
            webhook_secret=env.get(WEBHOOK_SECRET_SETTING) or "",
            notify_timeout_seconds=_float(env, "RESPONDER_NOTIFY_TIMEOUT_SECONDS", "5",
                                          0.5, 30.0),
            chromium_path=(env.get("RESPONDER_CHROMIUM_PATH") or "").strip(),
            pdf_timeout_seconds=_float(env, "RESPONDER_PDF_TIMEOUT_SECONDS", "60", 5.0, 300.0),
            tenants_table=tenants_table,
            app_client_id=app_client_id,
            authority_host=_authority(env, "RESPONDER_AUTHORITY_HOST"),
            extra=MappingProxyType({k: v for k, v in env.items()
                                    if k.startswith("RESPONDER_")}),
        )
