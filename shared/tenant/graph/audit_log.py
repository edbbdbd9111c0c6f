"""The Entra directory audit log: security-info (authentication method) events of a user.

Phone, email and software OATH methods may carry no creation time, so the audit log is the
only place that says when one was registered.

- List: `GET /v1.0/auditLogs/directoryAudits` with `$filter` on `activityDateTime` (ge) and
  `loggedByService` (eq), both documented as filterable; `category` is not. Application
  permissions: the current English page lists AuditLog.Read.All (Directory.Read.All as
  "higher"), older and translated copies list "AuditLog.Read.All and Directory.Read.All";
  both are declared, so the read works under either reading.
  https://learn.microsoft.com/graph/api/directoryaudit-list
  https://learn.Microsoft.com/en-us/graph/api/resources/directoryaudit
- The user an event is about is in `targetResources` (id, type, userPrincipalName). The
  docs also list `$filter` on targetResources id, but only through a lambda on a
  collection they show no example of, so the match is made here, in code.
- Activity names ("User registered security info", "Admin registered security info",
  "User changed default security info", ...):
  https://learn.microsoft.com/en-us/azure/active-directory/reports-monitoring/reference-audit-activities
  That page groups them under the "Authentication Methods" service, which is the
  `loggedByService` value filtered on; the docs do not state the field value itself, nor
  what `additionalDetails` / `modifiedProperties` hold for these events, so which method an
  event is about is read leniently from its text (`method_of_event`), and an event that
  names no method we recognise is reported as such, never guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.tenant.graph.client import GraphClient

PERM_AUDIT_READ = "AuditLog.Read.All"
# the list needs both, no smaller pair: https://learn.microsoft.com/tr-tr/graph/api/directoryaudit-list
PERM_AUDIT_DIRECTORY_READ = "Directory.Read.All"
AUTH_METHODS_SERVICE = "Authentication Methods"

REGISTRATION_ACTIVITIES = frozenset({
    "user registered security info", "admin registered security info",
    "user updated security info", "admin updated security info",
})
"""Events that (re)date a method: registering it, or changing it (a new phone number)."""
DEFAULT_CHANGED_ACTIVITIES = frozenset({"user changed default security info"})


def _literal(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def security_info_events(graph: GraphClient, user_id: str,
                               since: datetime) -> list[dict[str, Any]]:
    """The user's security-info events since `since`, oldest first."""
    query = {"$filter": f"activityDateTime ge {_literal(since)} and "
                        f"loggedByService eq '{AUTH_METHODS_SERVICE}'"}
    rows = await graph.list_all("/auditLogs/directoryAudits", params=query,
                                permission=f"{PERM_AUDIT_READ} and "
                                           f"{PERM_AUDIT_DIRECTORY_READ}")
    mine = [r for r in rows if targets_user(r, user_id)]
    return sorted(mine, key=lambda r: str(r.get("activityDateTime") or ""))


def targets_user(event: dict[str, Any], user_id: str) -> bool:
    for target in event.get("targetResources") or []:
        if isinstance(target, dict) and str(target.get("id") or "").lower() == user_id.lower():
            return True
    return False


def activity(event: dict[str, Any]) -> str:
    return str(event.get("activityDisplayName") or "").strip().lower()


def is_registration(event: dict[str, Any]) -> bool:
    return activity(event) in REGISTRATION_ACTIVITIES and \
        str(event.get("result") or "success").lower() == "success"


def event_text(event: dict[str, Any]) -> str:
    """Everything in an event that may name the method, lower-cased."""
    parts = [str(event.get("resultReason") or "")]
    for detail in event.get("additionalDetails") or []:
        if isinstance(detail, dict):
            parts += [str(detail.get("key") or ""), str(detail.get("value") or "")]
    for target in event.get("targetResources") or []:
        for prop in (target or {}).get("modifiedProperties") or []:
            if isinstance(prop, dict):
                parts += [str(prop.get("displayName") or ""), str(prop.get("newValue") or "")]
    return " ".join(parts).lower()


# (words, kind, phone type); the first match wins, so the specific words come first.
_HINTS: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("hardware oath", "hardware token"), "hardwareOath", None),
    (("software oath", "oath", "third-party", "third party", "software token"),
     "softwareOath", None),
    (("authenticator",), "microsoftAuthenticator", None),
    (("passkey", "fido"), "fido2", None),
    (("windows hello",), "windowsHelloForBusiness", None),
    (("temporary access pass",), "temporaryAccessPass", None),
    (("email",), "email", None),
    (("alternate mobile", "alternatemobile", "alternate phone"), "phone", "alternateMobile"),
    (("office phone", "office"), "phone", "office"),
    (("mobile",), "phone", "mobile"),
    (("phone", "sms", "voice"), "phone", None),
)


def method_of_event(event: dict[str, Any]) -> tuple[str, str | None] | None:
    """(method kind, phone type or None) an event names, or None when it names none."""
    text = event_text(event)
    for words, kind, phone_type in _HINTS:
        if any(w in text for w in words):
            return kind, phone_type
    return None
