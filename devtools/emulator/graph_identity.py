"""Graph Identity Protection routes: riskyUsers (+history, confirmCompromised, dismiss)
and riskDetections (late, and in no documented order: see `list_detections`)."""

from __future__ import annotations

import copy
import hashlib
import json

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .tenant import detection_id
from .timefmt import iso7, parse_dt, utcnow

router = Router()

RISKY_USER_FIELDS = [
    "id", "userPrincipalName", "userDisplayName", "riskLevel", "riskState", "riskDetail",
    "riskLastUpdatedDateTime", "isDeleted", "isProcessing",
]
DETECTION_FIELDS = [
    "id", "userId", "userPrincipalName", "userDisplayName", "riskEventType", "riskType",
    "riskLevel", "riskState", "riskDetail", "source", "activity", "ipAddress",
    "detectedDateTime", "activityDateTime", "lastUpdatedDateTime", "detectionTimingType",
    "requestId", "correlationId", "tokenIssuerType",
]


def risky_view(ru: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in ru.items() if k != "history"}


def _risky(ctx: Ctx, rid: str) -> dict:
    ru = ctx.tenant.risky_users.get(rid)
    if ru is None:
        raise GraphError(404, "Request_ResourceNotFound",
                         f"Resource '{rid}' does not exist or one of its queried "
                         "reference-property objects are not present.")
    return ru


@router.add("GET", "identityProtection/riskyUsers")
def list_risky(ctx: Ctx) -> EmuResponse:
    items = [risky_view(r) for r in ctx.tenant.risky_users.values()]
    return ctx.collection(items, "identityProtection/riskyUsers", page_key="riskyUsers",
                          filter_fields=RISKY_USER_FIELDS, default_page=100, max_top=500)


@router.add("GET", "identityProtection/riskyUsers/{rid}")
def get_risky(ctx: Ctx, rid: str) -> EmuResponse:
    return ctx.entity("identityProtection/riskyUsers", risky_view(_risky(ctx, rid)))


@router.add("GET", "identityProtection/riskyUsers/{rid}/history")
def risky_history(ctx: Ctx, rid: str) -> EmuResponse:
    ru = _risky(ctx, rid)
    return ctx.collection(copy.deepcopy(ru["history"]),
                          f"identityProtection/riskyUsers('{rid}')/history",
                          page_key="riskyUserHistory", default_page=100, max_top=500)


def _user_ids(ctx: Ctx) -> list[str]:
    ids = ctx.body_dict().get("userIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise GraphError(400, "invalidRequest", "userIds must be a non-empty list of user ids.")
    limit = int(ctx.config.get("confirm_max_user_ids", 100))
    if len(ids) > limit:
        raise GraphError(400, "invalidRequest",
                         f"Too many userIds: {len(ids)} were sent; at most {limit} are allowed "
                         "in one request.")
    return ids


def _ensure_risky(ctx: Ctx, user: dict) -> dict:
    ru = ctx.tenant.risky_users.get(user["id"])
    if ru is None:
        ru = ctx.tenant.risky_users[user["id"]] = {
            "id": user["id"], "isDeleted": False, "isProcessing": False,
            "riskLevel": "none", "riskState": "none", "riskDetail": "none",
            "riskLastUpdatedDateTime": iso7(), "userDisplayName": user["displayName"],
            "userPrincipalName": user["userPrincipalName"], "history": [],
        }
    return ru


def _apply(ctx: Ctx, ids: list[str], level: str, state: str, detail: str) -> int:
    changed = 0
    for uid in dict.fromkeys(ids):
        user = ctx.tenant.users.get(uid)
        if user is None:  # unknown ids are ignored (documented choice)
            continue
        ru = _ensure_risky(ctx, user)
        now = iso7()
        ru.update(riskLevel=level, riskState=state, riskDetail=detail,
                  riskLastUpdatedDateTime=now)
        ru["history"].append({
            "id": f"{uid}{len(ru['history'])}",
            "userId": uid,
            "initiatedBy": "00000000-0000-0000-0000-000000000000",
            "userDisplayName": ru["userDisplayName"],
            "userPrincipalName": ru["userPrincipalName"],
            "riskLevel": level, "riskState": state, "riskDetail": detail,
            "riskLastUpdatedDateTime": now, "isDeleted": False, "isProcessing": False,
            "activity": {"eventTypes": [], "riskEventTypes":
                         ["adminConfirmedUserCompromised"] if state == "confirmedCompromised"
                         else [], "detail": detail},
        })
        if state == "confirmedCompromised":
            ctx.tenant.add_detection({
                "id": detection_id(ctx.tenant.tenant_id, uid, "admin", now),
                "userId": uid,
                "riskEventType": "adminConfirmedUserCompromised",
                "riskLevel": "high", "riskState": "confirmedCompromised",
                "riskDetail": "adminConfirmedUserCompromised",
                "source": "IdentityProtection", "activity": "user",
                "detectionTimingType": "offline", "ipAddress": None, "location": None,
                "detectedDateTime": now,
                "additionalInfo": json.dumps([{"Key": "initiatedBy", "Value": "admin"}]),
            })
        changed += 1
    return changed


@router.add("POST", "identityProtection/riskyUsers/confirmCompromised")
def confirm_compromised(ctx: Ctx) -> EmuResponse:
    ids = _user_ids(ctx)
    _apply(ctx, ids, "high", "confirmedCompromised", "adminConfirmedUserCompromised")
    return ctx.no_content()


@router.add("POST", "identityProtection/riskyUsers/dismiss")
def dismiss(ctx: Ctx) -> EmuResponse:
    ids = _user_ids(ctx)
    _apply(ctx, ids, "none", "dismissed", "adminDismissedAllRiskForUser")
    return ctx.no_content()


def _visible_detections(ctx: Ctx) -> list[dict]:
    """Detections already surfaced, without the emulator-only `visibleAt`.

    Real-time detections surface minutes after the sign-in and offline ones up to 48 hours
    after they are detected (MicrosoftDocs/entra-docs:docs/id-protection/
    concept-risk-detection-types.md, "Real-time and offline detections"). A seed sets
    `visibleAfterMinutes` (or `visibleAt`) per detection; the default is visible at once."""
    now = utcnow()
    out = []
    for det in ctx.tenant.risk_detections:
        visible_at = det.get("visibleAt")
        if visible_at and parse_dt(visible_at) > now:
            continue
        out.append({k: copy.deepcopy(v) for k, v in det.items() if k != "visibleAt"})
    return out


def _unordered(items: list[dict], salt: str) -> list[dict]:
    """A deterministic shuffle: stable across the pages of one query, but no time order."""
    return sorted(items, key=lambda d: hashlib.sha256(f"{salt}|{d['id']}".encode()).digest())


@router.add("GET", "identityProtection/riskDetections")
def list_detections(ctx: Ctx) -> EmuResponse:
    # https://learn.microsoft.com/en-us/graph/api/riskdetection-list documents $filter,
    # $select and $top (default page 20, at most 500) and neither $orderby nor any order:
    # refuse $orderby so no client relies on it, and serve the list unsorted.
    if ctx.req.query.get("$orderby"):
        raise GraphError(400, "BadRequest",
                         "Query option '$orderby' is not supported on riskDetections.")
    items = _unordered(_visible_detections(ctx), ctx.tenant.tenant_id)
    return ctx.collection(items, "identityProtection/riskDetections", page_key="riskDetections",
                          filter_fields=DETECTION_FIELDS, default_page=20, max_top=500)


@router.add("GET", "identityProtection/riskDetections/{did}")
def get_detection(ctx: Ctx, did: str) -> EmuResponse:
    for d in _visible_detections(ctx):
        if d["id"] == did:
            return ctx.entity("identityProtection/riskDetections", d)
    raise GraphError(404, "Request_ResourceNotFound", f"Resource '{did}' does not exist.")
