"""The emulated tenant's state: users, groups, roles, mailboxes, risk data.

One Tenant is shared by the Graph and Exchange front ends so that a change made through
one (say, disabling an inbox rule in Exchange) is visible through the other. All access
goes through `lock` because tests read state from another thread than the server's."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from .timefmt import iso7, parse_dt

PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"  # noqa: S105 (an id)

ROLE_TEMPLATES: dict[str, str] = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13": "Privileged Authentication Administrator",
    "c4e39bd9-1100-46d3-8c65-fb160da0071f": "Authentication Administrator",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
}

# short name -> (@odata.type suffix, typed collection segment)
AUTH_METHOD_TYPES: dict[str, tuple[str, str]] = {
    "password": ("passwordAuthenticationMethod", "passwordMethods"),
    "phone": ("phoneAuthenticationMethod", "phoneMethods"),
    "microsoftAuthenticator": (
        "microsoftAuthenticatorAuthenticationMethod",
        "microsoftAuthenticatorMethods",
    ),
    "fido2": ("fido2AuthenticationMethod", "fido2Methods"),
    "softwareOath": ("softwareOathAuthenticationMethod", "softwareOathMethods"),
    "email": ("emailAuthenticationMethod", "emailMethods"),
    "temporaryAccessPass": (
        "temporaryAccessPassAuthenticationMethod",
        "temporaryAccessPassMethods",
    ),
    "windowsHelloForBusiness": (
        "windowsHelloForBusinessAuthenticationMethod",
        "windowsHelloForBusinessMethods",
    ),
    "platformCredential": (
        "platformCredentialAuthenticationMethod",
        "platformCredentialMethods",
    ),
    "hardwareOath": ("hardwareOathAuthenticationMethod", "hardwareOathMethods"),
}
# Types whose createdDateTime Graph may leave empty: the base authenticationMethod now has
# the property, but the docs do not say it is filled for these, so it is served as null.
# https://learn.microsoft.com/en-us/graph/api/resources/authenticationMethod
UNDATED_METHOD_TYPES = frozenset({"phone", "email", "softwareOath"})
# What the emulator's security-info audit events call each method (the docs do not give
# the wording of resultReason/additionalDetails; these are the emulator's own).
METHOD_AUDIT_LABELS = {
    "mobile": "Mobile Phone", "alternateMobile": "Alternate Mobile Phone",
    "office": "Office Phone", "email": "Email", "softwareOath": "Software OATH token",
    "microsoftAuthenticator": "Authenticator App", "fido2": "Passkey (FIDO2)",
    "temporaryAccessPass": "Temporary Access Pass",
    "windowsHelloForBusiness": "Windows Hello for Business",
    "platformCredential": "Platform Credential", "hardwareOath": "Hardware OATH token",
    "password": "Password",
}
ODATA_TO_SHORT = {f"#microsoft.graph.{v[0]}".lower(): k for k, v in AUTH_METHOD_TYPES.items()}
SEGMENT_TO_SHORT = {v[1].lower(): k for k, v in AUTH_METHOD_TYPES.items()}

# Graph's fixed ids for phone and email methods.
PHONE_METHOD_IDS = {
    "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
}
EMAIL_METHOD_ID = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f"

# (well-known name or None, display name); Graph well-known names are lower-case keys.
DEFAULT_FOLDERS: list[tuple[str, str]] = [
    ("archive", "Archive"),
    ("conversationhistory", "Conversation History"),
    ("deleteditems", "Deleted Items"),
    ("drafts", "Drafts"),
    ("inbox", "Inbox"),
    ("junkemail", "Junk Email"),
    ("outbox", "Outbox"),
    ("rssfeeds", "RSS Feeds"),
    ("sentitems", "Sent Items"),
]
GRAPH_WELL_KNOWN = {
    "archive", "conversationhistory", "deleteditems", "drafts", "inbox", "junkemail",
    "outbox", "sentitems", "msgfolderroot",
}

_USER_DEFAULTS: dict[str, Any] = {
    "displayName": None,
    "mail": None,
    "accountEnabled": True,
    "userType": "Member",
    "onPremisesSyncEnabled": None,
    "onPremisesImmutableId": None,
    "creationType": None,
    "givenName": None,
    "surname": None,
    "jobTitle": None,
    "perUserMfaState": "disabled",
    "sessionsRevokedCount": 0,
    "signInSessionsValidFromDateTime": None,
    "passwordChangeCount": 0,
    "lastPasswordChangeDateTime": None,
    "forceChangePasswordNextSignIn": False,
}


def stable_id(*parts: object) -> str:
    """A deterministic GUID from arbitrary parts (seeds stay reproducible)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator:" + "/".join(map(str, parts))))


def folder_id(user_id: str, key: str) -> str:
    """A Graph-looking, URL-safe folder id that is stable per user and folder."""
    digest = hashlib.sha256(f"{user_id}/folder/{key.lower()}".encode()).digest()
    return "AAMkA" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "AAA="


def rule_ids(user_id: str, seed: str) -> tuple[str, str]:
    """(Graph messageRule id, Exchange RuleIdentity) for one rule: the same 8 bytes.

    Microsoft documents neither id's format. Observed Graph ids are base64 of 8 bytes
    starting 01 00 00 00 ("AQAAAOQfqLg=", https://github.com/microsoftgraph/microsoft-graph-
    docs-contrib/issues/3336), and the documented RuleIdentity example 16752869479666417665
    (MicrosoftDocs/office-docs-powershell:exchange/exchange-ps/exchange/Disable-InboxRule.md)
    is 0xE87E260800000001: the same 8 bytes read as a little-endian integer."""
    raw = hashlib.sha256(f"{user_id}/rule/{seed}".encode()).digest()[:4]
    # URL-safe alphabet so that an id never puts "/" into a request path
    graph_id = base64.urlsafe_b64encode(b"\x01\x00\x00\x00" + raw).decode()
    return graph_id, rule_identity_of(graph_id) or "1"


def rule_identity_of(graph_id: str) -> str | None:
    """The Exchange RuleIdentity that goes with a Graph messageRule id (see rule_ids)."""
    try:
        raw = base64.b64decode(graph_id.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, TypeError):
        return None
    return str(int.from_bytes(raw, "little")) if len(raw) == 8 else None


JUNK_RULE_NAME = "Junk E-mail Rule"
"""The system rule every mailbox has, shown only by Get-InboxRule -IncludeHidden. Microsoft
does not document hidden rules' names; this one is what admin scripts filter out
(https://azure365addict.com/2025/05/22/detecting-hidden-inbox-rules-in-exchange-online/)."""


def detection_id(*parts: object) -> str:
    """Risk detection ids are 64 hex characters, not GUIDs."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def recipients(value: Any) -> Any:
    """Normalise seed recipients: strings become Graph recipient objects.

    A single recipient object is kept as-is (old Graph docs show redirectTo like that and
    seeds may want to exercise the quirk)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    out = []
    for item in value:
        if isinstance(item, str):
            out.append({"emailAddress": {"name": item, "address": item}})
        else:
            out.append(item)
    return out


class Tenant:
    """Mutable tenant state. Hold `lock` around any read-modify-write."""

    def __init__(self, seed: dict | None = None):
        self.lock = threading.RLock()
        self._pw_hashes: dict[str, tuple[bytes, bytes]] = {}
        self.load(seed or {})

    # ------------------------------------------------------------------ loading
    def load(self, seed: dict) -> None:
        """Replace all state with the given seed (see devtools/tenants/README.md)."""
        seed = copy.deepcopy(seed)
        with self.lock:
            self.tenant_id: str = seed.get("tenantId") or stable_id("tenant")
            self.display_name: str = seed.get("displayName", "Contoso")
            self.domains: list[dict] = []
            for d in seed.get("domains") or [{"id": "contoso.com"}]:
                d = {"id": d} if isinstance(d, str) else dict(d)
                d.setdefault("authenticationType", "Managed")
                d.setdefault("isVerified", True)
                d.setdefault("isDefault", False)
                self.domains.append(d)
            if self.domains and not any(d["isDefault"] for d in self.domains):
                self.domains[0]["isDefault"] = True
            self.users: dict[str, dict] = {}
            self._upn_index: dict[str, str] = {}
            self._pw_hashes = {}
            self.groups: dict[str, dict] = {}
            self.directory_roles: dict[str, dict] = {}
            self.risky_users: dict[str, dict] = {}
            self.risk_detections: list[dict] = []
            self.organization: dict = {"auditDisabled": False, **seed.get("organization", {})}
            self.blocked_senders: list[dict] = []
            # Remove-BlockedSenderAddress calls that succeeded, per address (lower case):
            # Exchange limits them per account (see exchange_routes.remove_blocked). Seed key
            # `blockedSenderReleases` {address: count}; runtime history, not in dump().
            self.sender_releases: dict[str, int] = {
                str(k).lower(): int(v)
                for k, v in (seed.get("blockedSenderReleases") or {}).items()}
            self.compromised_report: list[dict] = list(seed.get("compromisedUserReport", []))
            self.secure_scores: list[dict] | None = seed.get("secureScores")
            self.secure_score_profiles: list[dict] | None = seed.get(
                "secureScoreControlProfiles"
            )
            self.sent_mail: list[dict] = list(seed.get("sentMail", []))
            self.directory_audits: list[dict] = []
            # Exchange admin cmdlet records of the unified audit log (delegation grants; see
            # exchange_permissions.py), read by the Graph audit log query API. Derived from
            # the grants' `addedDateTime` and the cmdlets run: runtime history, not in dump().
            self.exchange_audit: list[dict] = []
            self.audit_queries: dict[str, dict] = {}  # Graph audit log queries (runtime)
            # The responder's own service principal (authz: its directory roles) and the
            # tenant's licences (authz: `identityProtection: false` refuses its APIs).
            self.service_principal: dict | None = seed.get("servicePrincipal")
            self.licences: dict = dict(seed.get("licences") or {})

            for g in seed.get("groups", []):
                self._add_group(g)
            for r in seed.get("directoryRoles", []):
                self._add_role(r)
            for u in seed.get("users", []):
                self.add_user(u)
            for ru in seed.get("riskyUsers", []):
                self._add_risky_user(ru)
            for i, det in enumerate(seed.get("riskDetections", [])):
                self.add_detection(det, index=i)
            for ev in seed.get("directoryAudits", []):
                self.add_audit_event(ev)
            # service principals, consents (grants, app role assignments), PIM eligibility
            from . import apps
            apps.load(self, seed)
            for b in seed.get("blockedSenders", []):
                b = dict(b)
                b.setdefault("Reason", "OutboundSpamLimitExceeded")
                b.setdefault("CreatedDatetime", iso7())
                b.setdefault("ChangedDatetime", b["CreatedDatetime"])
                self.blocked_senders.append(b)

    def _add_group(self, g: dict) -> dict:
        g = dict(g)
        if "id" not in g:
            g["id"] = stable_id("group", g.get("displayName"))
        g.setdefault("displayName", g["id"])
        g.setdefault("description", None)
        g.setdefault("mailEnabled", False)
        g.setdefault("securityEnabled", True)
        g.setdefault("groupTypes", [])
        g["members"] = list(dict.fromkeys(g.get("members", [])))
        self.groups[g["id"]] = g
        return g

    def _add_role(self, r: dict) -> dict:
        r = dict(r)
        tmpl = r.get("roleTemplateId") or r.get("id")
        r.setdefault("roleTemplateId", tmpl)
        r.setdefault("id", stable_id("role", tmpl))
        r.setdefault("displayName", ROLE_TEMPLATES.get(tmpl, tmpl))
        r.setdefault("description", None)
        r["members"] = list(dict.fromkeys(r.get("members", [])))
        self.directory_roles[r["id"]] = r
        return r

    def role_by_template_or_id(self, key: str) -> dict:
        """Find (or activate, like Graph does on first assignment) a directory role."""
        for r in self.directory_roles.values():
            if key in (r["id"], r["roleTemplateId"]) or r["displayName"].lower() == key.lower():
                return r
        for tmpl, name in ROLE_TEMPLATES.items():
            if key.lower() == name.lower():
                key = tmpl
        if key not in ROLE_TEMPLATES:
            raise ValueError(f"unknown directory role {key!r}")
        return self._add_role({"roleTemplateId": key})

    def add_user(self, u: dict) -> dict:
        """Add one user from seed format; returns the stored record."""
        u = copy.deepcopy(u)
        upn = u.get("userPrincipalName")
        if not upn:
            raise ValueError(f"user without userPrincipalName: {u!r}")
        uid = u.get("id") or stable_id("user", upn.lower())
        if uid in self.users or upn.lower() in self._upn_index:
            raise ValueError(f"duplicate user {uid} / {upn}")
        member_of = u.pop("memberOf", [])
        roles = u.pop("directoryRoles", [])
        methods = u.pop("authMethods", None)
        password = u.pop("password", None)
        has_mailbox_key = "mailbox" in u
        mailbox = u.pop("mailbox", None)
        rec = {"id": uid, "userPrincipalName": upn}
        for k, v in _USER_DEFAULTS.items():
            rec[k] = u.pop(k, v)
        rec.update(u)
        if rec["displayName"] is None:
            rec["displayName"] = upn.split("@")[0]
        if rec["userType"] == "Guest" and rec["creationType"] is None:
            rec["creationType"] = "Invitation"
        if rec["mail"] is None and rec["userType"] == "Member":
            rec["mail"] = upn
        self.users[uid] = rec
        self._upn_index[upn.lower()] = uid
        if password:
            self._store_password(uid, password)
        rec["authMethods"] = self._normalise_methods(uid, methods)
        for m in rec["authMethods"]:
            registered = m.pop("registeredDateTime", None)
            by_admin = m.pop("registeredByAdmin", False)
            pending = bool(m.pop("auditPending", False))
            if registered:
                self.record_security_info(rec, m, "registered", when=registered,
                                          by_admin=bool(by_admin), pending=pending)
        if not has_mailbox_key:
            mailbox = {} if rec["userType"] == "Member" and rec.get("mail") else None
        rec["mailbox"] = self._normalise_mailbox(rec, mailbox) if mailbox is not None else None
        for gid in member_of:
            group = self.groups.get(gid) or next(
                (g for g in self.groups.values() if g["displayName"] == gid), None
            )
            if group is None:
                raise ValueError(f"user {upn}: unknown group {gid!r} in memberOf")
            if uid not in group["members"]:
                group["members"].append(uid)
        for key in roles:
            role = self.role_by_template_or_id(key)
            if uid not in role["members"]:
                role["members"].append(uid)
        return rec

    def _normalise_methods(self, uid: str, methods: list | None) -> list[dict]:
        out: list[dict] = []
        for i, m in enumerate(methods or []):
            m = dict(m)
            short = m.pop("type", None)
            if short is None:
                short = ODATA_TO_SHORT.get(str(m.get("@odata.type", "")).lower())
            if short not in AUTH_METHOD_TYPES:
                raise ValueError(f"unknown auth method type in {m!r}")
            m["@odata.type"] = f"#microsoft.graph.{AUTH_METHOD_TYPES[short][0]}"
            if short == "password":
                m["id"] = PASSWORD_METHOD_ID
                m.setdefault("password", None)
            elif short == "phone":
                m.setdefault("phoneType", "mobile")
                m.setdefault("id", PHONE_METHOD_IDS.get(m["phoneType"], stable_id(uid, "m", i)))
                m.setdefault("phoneNumber", "+1 5555550100")
                m.setdefault("smsSignInState", "notAllowedByPolicy")
            elif short == "email":
                m.setdefault("id", EMAIL_METHOD_ID)
                m.setdefault("emailAddress", None)
            else:
                m.setdefault("id", stable_id(uid, "method", i))
            if short in UNDATED_METHOD_TYPES:
                m["createdDateTime"] = None  # date these with registeredDateTime (audit log)
            else:
                m.setdefault("createdDateTime", None)
            if short == "microsoftAuthenticator":
                m.setdefault("displayName", "iPhone")
                m.setdefault("deviceTag", "SoftwareTokenActivated")
                m.setdefault("phoneAppVersion", "6.8.7")
            if short == "fido2":
                m.setdefault("displayName", "Security key")
                m.setdefault("model", "YubiKey 5 NFC")
                m.setdefault("aaGuid", "cb69481e-8ff7-4039-93ec-0a2729a154a8")
                m.setdefault("attestationLevel", "attested")
            if short == "temporaryAccessPass":
                m.pop("temporaryAccessPass", None)
                m.setdefault("lifetimeInMinutes", 60)
                m.setdefault("isUsableOnce", True)
                m.setdefault("isUsable", True)
                m.setdefault("methodUsabilityReason", "EnabledByPolicy")
            out.append(m)
        if not any(m["id"] == PASSWORD_METHOD_ID for m in out):
            out.insert(
                0,
                {
                    "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
                    "id": PASSWORD_METHOD_ID,
                    "password": None,
                    "createdDateTime": None,
                },
            )
        return out

    def _normalise_mailbox(self, user: dict, mb: dict) -> dict:
        mb = dict(mb)
        uid = user["id"]
        mb.setdefault("auditEnabled", True)
        mb.setdefault("auditBypassEnabled", False)
        # licence includes Audit (Premium) (E5/A5/G5): decides the default audited actions
        # and whether events reach audit search without AuditEnabled (mailbox_audit.py)
        mb.setdefault("auditPremium", False)
        mb.setdefault("forwardingSmtpAddress", None)
        mb.setdefault("forwardingAddress", None)
        mb.setdefault("deliverToMailboxAndForward", False)
        mb.setdefault("alias", user["userPrincipalName"].split("@")[0].replace("#", "_"))
        root = folder_id(uid, "msgfolderroot")
        folders = [
            {
                "id": folder_id(uid, key),
                "displayName": name,
                "parentFolderId": root,
                "wellKnownName": key,
            }
            for key, name in DEFAULT_FOLDERS
        ]
        by_name = {f["displayName"].lower(): f for f in folders}
        for extra in mb.get("folders", []):
            if isinstance(extra, str):
                extra = {"displayName": extra}
            if extra["displayName"].lower() in by_name:
                continue
            parent = extra.get("parent") or extra.get("parentFolderId")
            parent_id = root
            if parent:
                pf = self._folder_lookup(folders, parent)
                parent_id = pf["id"] if pf else parent
            f = {
                "id": extra.get("id") or folder_id(uid, extra["displayName"]),
                "displayName": extra["displayName"],
                "parentFolderId": parent_id,
                "wellKnownName": None,
            }
            folders.append(f)
            by_name[f["displayName"].lower()] = f
        mb["folders"] = folders
        rules = []
        for i, r in enumerate(mb.get("rules", [])):
            rules.append(self.normalise_rule(uid, folders, r, i))
        if not any(r.get("system") == "junk" for r in rules):
            # every mailbox has the hidden junk e-mail rule (name: see JUNK_RULE_NAME; what
            # Get-InboxRule shows of its actions is not documented: modelled as a move to
            # Junk Email, which is what it does)
            rules.append(self.normalise_rule(uid, folders, {
                "displayName": JUNK_RULE_NAME, "hidden": True, "system": "junk",
                "sequence": max((r["sequence"] for r in rules), default=0) + 1,
                "actions": {"moveToFolder": "junkemail"}}, len(rules)))
        mb["rules"] = rules
        # Outlook's client-side rules (names only). Changing any inbox rule through Exchange
        # PowerShell removes them (Disable-InboxRule.md, see exchange_routes); the names
        # removed are kept in clientRulesRemoved so a test or the demo can see it happened.
        mb["outlookClientRules"] = list(mb.get("outlookClientRules") or [])
        mb["clientRulesRemoved"] = list(mb.get("clientRulesRemoved") or [])
        # delegates (Full Access, Send As, Send on Behalf), mobile devices, protocols
        from .exchange_permissions import normalise_mailbox
        normalise_mailbox(self, user, mb)
        return mb

    @staticmethod
    def _folder_lookup(folders: list[dict], key: str) -> dict | None:
        low = key.lower()
        for f in folders:
            if low in (f["id"].lower(), f["displayName"].lower(), (f["wellKnownName"] or "")):
                return f
        return None

    def normalise_rule(self, uid: str, folders: list[dict], r: dict, index: int) -> dict:
        """Fill a messageRule's defaults; resolve folder names in moveToFolder to ids."""
        r = copy.deepcopy(r)
        gid, rid = rule_ids(uid, r.get("id") or r.get("displayName") or index)
        r.setdefault("id", gid)
        r.setdefault("ruleIdentity", rule_identity_of(r["id"]) or rid)
        # Predicates and actions only Exchange knows (e.g. ReceivedAfterDate), as
        # Get-InboxRule names them. Graph returns such a rule with isReadOnly true and no
        # conditions or actions (https://github.com/microsoftgraph/microsoft-graph-docs-
        # contrib/issues/3336); isReadOnly: "cannot be modified or deleted by the rules REST
        # API" (https://developer.microsoft.com/en-us/graph/docs/api-reference/v1.0/resources/messagerule).
        r["exchangeOnly"] = dict(r.get("exchangeOnly") or {})
        if r["exchangeOnly"]:
            r["isReadOnly"] = True
        r.setdefault("displayName", "")
        r.setdefault("sequence", index + 1)
        r.setdefault("isEnabled", True)
        r.setdefault("hasError", False)
        r.setdefault("isReadOnly", False)
        r.setdefault("hidden", False)
        r["conditions"] = dict(r.get("conditions") or {})
        r["actions"] = dict(r.get("actions") or {})
        acts = r["actions"]
        for key in ("forwardTo", "forwardAsAttachmentTo", "redirectTo"):
            if key in acts:
                acts[key] = recipients(acts[key])
        for key in ("moveToFolder", "copyToFolder"):
            if acts.get(key):
                f = self._folder_lookup(folders, acts[key])
                if f:
                    acts[key] = f["id"]
        return r

    def _add_risky_user(self, ru: dict) -> dict:
        ru = dict(ru)
        user = self.find_user(ru.get("id") or ru.get("userPrincipalName") or "")
        if "id" not in ru:
            if user is None:
                raise ValueError(f"riskyUser without id: {ru!r}")
            ru["id"] = user["id"]
        if user:
            ru.setdefault("userPrincipalName", user["userPrincipalName"])
            ru.setdefault("userDisplayName", user["displayName"])
        ru.setdefault("userPrincipalName", None)
        ru.setdefault("userDisplayName", None)
        ru.setdefault("isDeleted", False)
        ru.setdefault("isProcessing", False)
        ru.setdefault("riskLevel", "none")
        ru.setdefault("riskState", "none")
        ru.setdefault("riskDetail", "none")
        ru.setdefault("riskLastUpdatedDateTime", iso7())
        history = []
        for i, h in enumerate(ru.get("history", [])):
            h = dict(h)
            h.setdefault("id", f"{ru['id']}{i}")
            h.setdefault("userId", ru["id"])
            h.setdefault("initiatedBy", None)
            h.setdefault("userDisplayName", ru["userDisplayName"])
            h.setdefault("userPrincipalName", ru["userPrincipalName"])
            h.setdefault("riskLevel", ru["riskLevel"])
            h.setdefault("riskState", ru["riskState"])
            h.setdefault("riskDetail", ru["riskDetail"])
            h.setdefault("riskLastUpdatedDateTime", ru["riskLastUpdatedDateTime"])
            h.setdefault("activity", {"eventTypes": [], "riskEventTypes": [], "detail": "none"})
            history.append(h)
        ru["history"] = history
        self.risky_users[ru["id"]] = ru
        return ru

    def add_detection(self, det: dict, index: int | None = None) -> dict:
        """Append one riskDetection, filling Graph's fields; keeps ascending time order."""
        det = dict(det)
        user = self.find_user(det.get("userId") or det.get("userPrincipalName") or "")
        if user:
            det.setdefault("userId", user["id"])
            det.setdefault("userPrincipalName", user["userPrincipalName"])
            det.setdefault("userDisplayName", user["displayName"])
        n = len(self.risk_detections) if index is None else index
        det.setdefault("id", detection_id(self.tenant_id, det.get("userId"), n, det.get(
            "detectedDateTime")))
        det.setdefault("requestId", stable_id("req", det["id"]))
        det.setdefault("correlationId", stable_id("corr", det["id"]))
        det.setdefault("riskEventType", "unfamiliarFeatures")
        det.setdefault("riskType", det["riskEventType"])
        det.setdefault("riskState", "atRisk")
        det.setdefault("riskLevel", "medium")
        det.setdefault("riskDetail", "none")
        det.setdefault("source", "IdentityProtection")
        det.setdefault("detectionTimingType", "realtime")
        det.setdefault("activity", "signin")
        det.setdefault("tokenIssuerType", "AzureAD")
        det.setdefault("ipAddress", "198.51.100.23")
        det.setdefault("location", {
            "city": "Amsterdam", "state": "Noord-Holland", "countryOrRegion": "NL",
            "geoCoordinates": {"latitude": 52.37, "longitude": 4.89},
        })
        det.setdefault("detectedDateTime", iso7())
        det.setdefault("activityDateTime", det["detectedDateTime"])
        det.setdefault("lastUpdatedDateTime", det["detectedDateTime"])
        det.setdefault("userId", None)
        det.setdefault("userDisplayName", None)
        det.setdefault("userPrincipalName", None)
        info = det.get("additionalInfo", [])
        if not isinstance(info, str):
            det["additionalInfo"] = json.dumps(info)
        # Emulator-only: when the detection becomes visible to the list. Offline detections
        # surface up to 48 hours after they are detected (see graph_identity.py).
        delay = det.pop("visibleAfterMinutes", None)
        if delay is not None and "visibleAt" not in det:
            det["visibleAt"] = iso7(parse_dt(det["detectedDateTime"])
                                    + timedelta(minutes=float(delay)))
        self.risk_detections.append(det)
        self.risk_detections.sort(key=lambda d: parse_dt(d["detectedDateTime"]))
        return det

    # ------------------------------------------------------------------ audit log
    def add_audit_event(self, ev: dict, visible_after: float | None = None) -> dict:
        """Append one directoryAudit (documented shape; missing fields filled)."""
        ev = copy.deepcopy(ev)
        ev.setdefault("activityDateTime", iso7())
        ev["activityDateTime"] = iso7(parse_dt(ev["activityDateTime"]))
        ev.setdefault("id", "Directory_" + stable_id("audit", len(self.directory_audits),
                                                     ev["activityDateTime"]))
        ev.setdefault("category", "UserManagement")
        ev.setdefault("correlationId", stable_id("corr", ev["id"]))
        ev.setdefault("result", "success")
        ev.setdefault("resultReason", "")
        ev.setdefault("activityDisplayName", "User registered security info")
        ev.setdefault("loggedByService", "Authentication Methods")
        ev.setdefault("operationType", "Add")
        ev.setdefault("initiatedBy", {"user": None, "app": None})
        ev.setdefault("targetResources", [])
        ev.setdefault("additionalDetails", [])
        if visible_after is not None:
            ev["_visibleAfter"] = visible_after
        self.directory_audits.append(ev)
        self.directory_audits.sort(key=lambda e: parse_dt(e["activityDateTime"]))
        return ev

    def record_security_info(self, user: dict, method: dict, action: str, *,
                             when: str | None = None, by_admin: bool = False,
                             pending: bool = False, delay_seconds: float = 0.0) -> dict:
        """Log a security-info event for a method ("registered", "updated", "deleted").

        Audit data arrives late: `pending` withholds the event until
        `release_audit_events`, `delay_seconds` hides it for that long."""
        short = ODATA_TO_SHORT.get(str(method.get("@odata.type", "")).lower(), "unknown")
        key = method.get("phoneType") if short == "phone" else short
        label = METHOD_AUDIT_LABELS.get(str(key), str(key))
        actor = "Admin" if by_admin else "User"
        initiator = ({"user": None, "app": {"appId": stable_id("app", "admin"),
                                            "displayName": "Admin tooling",
                                            "servicePrincipalId": None,
                                            "servicePrincipalName": None}}
                     if by_admin else
                     {"user": {"id": user["id"], "displayName": user.get("displayName"),
                               "userPrincipalName": user["userPrincipalName"],
                               "ipAddress": "198.51.100.23"}, "app": None})
        ev = {
            "activityDateTime": when or iso7(),
            "activityDisplayName": f"{actor} {action} security info",
            "operationType": {"registered": "Add", "deleted": "Delete"}.get(action, "Update"),
            "resultReason": f"{actor} {action} {label}",
            "initiatedBy": initiator,
            "targetResources": [{
                "id": user["id"], "displayName": user.get("displayName"), "type": "User",
                "userPrincipalName": user["userPrincipalName"], "groupType": None,
                "modifiedProperties": [],
            }],
            "additionalDetails": [{"key": "Method", "value": label}],
        }
        visible = float("inf") if pending else (
            time.time() + delay_seconds if delay_seconds > 0 else None)
        return self.add_audit_event(ev, visible_after=visible)

    def release_audit_events(self) -> None:
        """Make every withheld audit event visible (the log has caught up)."""
        with self.lock:
            for ev in self.directory_audits:
                ev.pop("_visibleAfter", None)

    def visible_audit_events(self) -> list[dict]:
        now = time.time()
        return [{k: v for k, v in ev.items() if not k.startswith("_")}
                for ev in self.directory_audits
                if ev.get("_visibleAfter") is None or ev["_visibleAfter"] <= now]

    # ------------------------------------------------------------------ lookups
    def find_user(self, key: str) -> dict | None:
        """By object id or UPN (case-insensitive)."""
        if not key:
            return None
        with self.lock:
            if key in self.users:
                return self.users[key]
            low = key.lower()
            uid = self._upn_index.get(low)
            if uid:
                return self.users[uid]
            for u in self.users.values():
                if u["id"].lower() == low:
                    return u
        return None

    def iter_users(self) -> Iterator[dict]:
        return iter(list(self.users.values()))

    def domain_of(self, user: dict) -> dict | None:
        suffix = user["userPrincipalName"].rsplit("@", 1)[-1].lower()
        return next((d for d in self.domains if d["id"].lower() == suffix), None)

    def is_federated(self, user: dict) -> bool:
        d = self.domain_of(user)
        return bool(d and d.get("authenticationType", "").lower() == "federated")

    def groups_of(self, uid: str, transitive: bool = False) -> list[dict]:
        direct = [g for g in self.groups.values() if uid in g["members"]]
        if not transitive:
            return direct
        seen = {g["id"]: g for g in direct}
        frontier = list(seen)
        while frontier:
            gid = frontier.pop()
            for g in self.groups.values():
                if gid in g["members"] and g["id"] not in seen:
                    seen[g["id"]] = g
                    frontier.append(g["id"])
        return list(seen.values())

    def roles_of(self, uid: str) -> list[dict]:
        return [r for r in self.directory_roles.values() if uid in r["members"]]

    def find_object(self, oid: str) -> tuple[str, dict] | None:
        """Resolve a directoryObject id to ("user"|"group", record)."""
        u = self.find_user(oid)
        if u:
            return "user", u
        g = self.groups.get(oid)
        if g:
            return "group", g
        return None

    # ------------------------------------------------------------------ passwords
    def _store_password(self, uid: str, password: str) -> None:
        salt = os.urandom(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
        self._pw_hashes[uid] = (salt, digest)

    def set_password(self, uid: str, password: str, force_change: bool) -> None:
        """Keep only a salted hash; the state dump shows a counter and a timestamp."""
        with self.lock:
            self._store_password(uid, password)
            user = self.users[uid]
            user["passwordChangeCount"] = user.get("passwordChangeCount", 0) + 1
            user["lastPasswordChangeDateTime"] = iso7()
            user["forceChangePasswordNextSignIn"] = bool(force_change)

    def check_password(self, uid_or_upn: str, password: str) -> bool:
        """For tests: does this password match the stored hash?"""
        with self.lock:
            user = self.find_user(uid_or_upn)
            if not user or user["id"] not in self._pw_hashes:
                return False
            salt, digest = self._pw_hashes[user["id"]]
        cand = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
        return hmac.compare_digest(cand, digest)

    # ------------------------------------------------------------------ restricted senders
    def block_sender(self, address: str, reason: str = "OutboundSpamLimitExceeded",
                     created: str | None = None) -> dict:
        """Put an address on the restricted-senders list, as Exchange does when an account
        sends spam (again); tests use it to re-block an account after a release."""
        with self.lock:
            stamp = created or iso7()
            row = {"SenderAddress": address, "Reason": reason, "CreatedDatetime": stamp,
                   "ChangedDatetime": stamp}
            self.blocked_senders = [b for b in self.blocked_senders
                                    if b["SenderAddress"].lower() != address.lower()]
            self.blocked_senders.append(row)
            return dict(row)

    def release_count(self, address: str) -> int:
        """How many times this address was released from the restricted-senders list."""
        with self.lock:
            return self.sender_releases.get(address.lower(), 0)

    # ------------------------------------------------------------------ dump
    def dump(self) -> dict:
        """A deep copy of all state in seed format (re-loadable); no secrets."""
        with self.lock:
            users = []
            for u in self.users.values():
                d = copy.deepcopy(u)
                d["memberOf"] = [g["id"] for g in self.groups_of(u["id"])]
                d["directoryRoles"] = [r["roleTemplateId"] for r in self.roles_of(u["id"])]
                users.append(d)
            groups = [copy.deepcopy(g) for g in self.groups.values()]
            for g in groups:
                g["members"] = [m for m in g["members"] if m not in self.users]
            roles = [
                {k: v for k, v in copy.deepcopy(r).items() if k != "members"}
                for r in self.directory_roles.values()
            ]
            return {
                "tenantId": self.tenant_id,
                "displayName": self.display_name,
                "domains": copy.deepcopy(self.domains),
                "groups": groups,
                "directoryRoles": roles,
                "users": users,
                "riskyUsers": copy.deepcopy(list(self.risky_users.values())),
                "riskDetections": copy.deepcopy(self.risk_detections),
                "organization": copy.deepcopy(self.organization),
                "blockedSenders": copy.deepcopy(self.blocked_senders),
                "compromisedUserReport": copy.deepcopy(self.compromised_report),
                "secureScores": copy.deepcopy(self.secure_scores),
                "secureScoreControlProfiles": copy.deepcopy(self.secure_score_profiles),
                "sentMail": copy.deepcopy(self.sent_mail),
                "directoryAudits": [{k: v for k, v in ev.items() if not k.startswith("_")}
                                    for ev in self.directory_audits],
                "servicePrincipal": copy.deepcopy(self.service_principal),
                "licences": copy.deepcopy(self.licences),
                **_apps_dump(self),
            }


def _apps_dump(tenant: Tenant) -> dict:
    from . import apps
    return apps.dump(tenant)


def load_tenant(source: str | Path | dict | Tenant | None = None) -> Tenant:
    """Build a Tenant from a seed dict, a JSON file path, or return a Tenant unchanged."""
    if isinstance(source, Tenant):
        return source
    if source is None:
        return Tenant({})
    if isinstance(source, dict):
        return Tenant(source)
    with open(source, encoding="utf-8") as fh:
        return Tenant(json.load(fh))
