"""Graph mailbox routes: mail folders, inbox message rules (the same store Exchange's
Get-InboxRule reads), and sendMail."""

from __future__ import annotations

import copy

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .tenant import GRAPH_WELL_KNOWN, folder_id
from .timefmt import iso7

router = Router()

_RULE_FIELDS = {
    "displayName", "sequence", "isEnabled", "hasError", "isReadOnly", "conditions",
    "actions", "exceptions",
}


_EXCHANGE_ONLY_KEYS = ("hidden", "ruleIdentity", "system", "exchangeOnly")


def rule_view(r: dict) -> dict:
    """Graph's messageRule JSON: the shared rule minus Exchange-only bookkeeping.

    A rule with predicates Graph does not support comes back read-only with no conditions,
    actions or exceptions at all (observed, not documented:
    https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3336)."""
    view = {k: copy.deepcopy(v) for k, v in r.items() if k not in _EXCHANGE_ONLY_KEYS}
    if r.get("exchangeOnly"):
        for key in ("conditions", "actions", "exceptions"):
            view.pop(key, None)
        view["isReadOnly"] = True
    return view


def folder_view(mb: dict, f: dict) -> dict:
    children = sum(1 for x in mb["folders"] if x["parentFolderId"] == f["id"])
    return {
        "id": f["id"],
        "displayName": f["displayName"],
        "parentFolderId": f["parentFolderId"],
        "childFolderCount": children,
        "unreadItemCount": 0,
        "totalItemCount": 0,
        "sizeInBytes": 0,
        "isHidden": False,
    }


def _folder(ctx: Ctx, user: dict, mb: dict, key: str) -> dict:
    low = key.lower()
    if low == "msgfolderroot":
        return {
            "id": folder_id(user["id"], "msgfolderroot"),
            "displayName": "Top of Information Store",
            "parentFolderId": folder_id(user["id"], "root"),
            "wellKnownName": "msgfolderroot",
        }
    for f in mb["folders"]:
        if f["id"] == key or (f.get("wellKnownName") == low and low in GRAPH_WELL_KNOWN):
            return f
    raise GraphError(404, "ErrorItemNotFound",
                     "The specified object was not found in the store.")


@router.add("GET", "users/{uid}/mailFolders")
def list_folders(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    mb = ctx.mailbox(user)
    root = folder_id(user["id"], "msgfolderroot")
    items = [folder_view(mb, f) for f in mb["folders"] if f["parentFolderId"] == root]
    items.sort(key=lambda f: f["displayName"].lower())
    return ctx.collection(items, f"users('{user['id']}')/mailFolders", page_key="mailFolders",
                          filter_fields=["displayName", "id", "parentFolderId"])


@router.add("GET", "users/{uid}/mailFolders/{fid}")
def get_folder(ctx: Ctx, uid: str, fid: str) -> EmuResponse:
    user = ctx.user(uid)
    mb = ctx.mailbox(user)
    return ctx.entity("mailFolders", folder_view(mb, _folder(ctx, user, mb, fid)))


@router.add("GET", "users/{uid}/mailFolders/{fid}/childFolders")
def list_child_folders(ctx: Ctx, uid: str, fid: str) -> EmuResponse:
    user = ctx.user(uid)
    mb = ctx.mailbox(user)
    parent = _folder(ctx, user, mb, fid)
    items = [folder_view(mb, f) for f in mb["folders"] if f["parentFolderId"] == parent["id"]]
    return ctx.collection(items, "mailFolders", page_key="mailFolders")


def _inbox_rules(ctx: Ctx, uid: str, fid: str) -> tuple[dict, dict]:
    user = ctx.user(uid)
    mb = ctx.mailbox(user)
    folder = _folder(ctx, user, mb, fid)
    if folder.get("wellKnownName") != "inbox":
        raise GraphError(400, "ErrorInvalidRequest",
                         "Message rules are only supported on the Inbox folder.")
    return user, mb


def _rule(mb: dict, rid: str) -> dict:
    for r in mb["rules"]:
        if r["id"] == rid and not r.get("hidden"):
            return r
    raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@router.add("GET", "users/{uid}/mailFolders/{fid}/messageRules")
def list_rules(ctx: Ctx, uid: str, fid: str) -> EmuResponse:
    user, mb = _inbox_rules(ctx, uid, fid)
    rules = sorted((r for r in mb["rules"] if not r.get("hidden")), key=lambda r: r["sequence"])
    return ctx.collection([rule_view(r) for r in rules],
                          f"users('{user['id']}')/mailFolders('inbox')/messageRules",
                          page_key="messageRules")


@router.add("GET", "users/{uid}/mailFolders/{fid}/messageRules/{rid}")
def get_rule(ctx: Ctx, uid: str, fid: str, rid: str) -> EmuResponse:
    _, mb = _inbox_rules(ctx, uid, fid)
    return ctx.entity("messageRules", rule_view(_rule(mb, rid)))


def _check_rule_body(body: dict) -> None:
    for key in body:
        if key not in _RULE_FIELDS and not key.startswith("@odata"):
            raise GraphError(400, "RequestBodyRead",
                             f"The property '{key}' does not exist on type "
                             "'microsoft.graph.messageRule'.")
    if "isEnabled" in body and not isinstance(body["isEnabled"], bool):
        raise GraphError(400, "RequestBodyRead", "Invalid value for 'isEnabled'.")


@router.add("PATCH", "users/{uid}/mailFolders/{fid}/messageRules/{rid}")
def patch_rule(ctx: Ctx, uid: str, fid: str, rid: str) -> EmuResponse:
    _user, mb = _inbox_rules(ctx, uid, fid)
    rule = _rule(mb, rid)
    body = ctx.body_dict()
    _check_rule_body(body)
    if rule.get("isReadOnly"):
        # isReadOnly: the rule "cannot be modified or deleted by the rules REST API"
        # (https://developer.microsoft.com/en-us/graph/docs/api-reference/v1.0/resources/messagerule).
        # The status and code Graph answers with are not documented: a plausible Graph
        # error shape (403 ErrorAccessDenied) is chosen here; the responder never relies
        # on it, it sends read-only rules to Exchange instead.
        raise GraphError(403, "ErrorAccessDenied",
                         "The rule is read-only and cannot be changed through this API.")
    for key, value in body.items():
        if key.startswith("@odata"):
            continue
        rule[key] = copy.deepcopy(value)
    return ctx.json({"@odata.context": ctx.context_url("messageRules/$entity"),
                     **rule_view(rule)}, write=True)


@router.add("DELETE", "users/{uid}/mailFolders/{fid}/messageRules/{rid}")
def delete_rule(ctx: Ctx, uid: str, fid: str, rid: str) -> EmuResponse:
    _, mb = _inbox_rules(ctx, uid, fid)
    rule = _rule(mb, rid)
    if rule.get("isReadOnly"):  # same as PATCH: documented as not allowed, error undocumented
        raise GraphError(403, "ErrorAccessDenied",
                         "The rule is read-only and cannot be changed through this API.")
    mb["rules"].remove(rule)
    return ctx.no_content()


@router.add("POST", "users/{uid}/mailFolders/{fid}/messageRules")
def create_rule(ctx: Ctx, uid: str, fid: str) -> EmuResponse:
    user, mb = _inbox_rules(ctx, uid, fid)
    body = ctx.body_dict()
    _check_rule_body(body)
    if not body.get("displayName"):
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    seq = body.get("sequence") or max((r["sequence"] for r in mb["rules"]), default=0) + 1
    rule = ctx.tenant.normalise_rule(
        user["id"], mb["folders"], {**body, "sequence": seq}, len(mb["rules"]) + 1000
    )
    mb["rules"].append(rule)
    return ctx.json({"@odata.context": ctx.context_url("messageRules/$entity"),
                     **rule_view(rule)}, status=201, write=True)


@router.add("POST", "users/{uid}/sendMail")
def send_mail(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    ctx.mailbox(user)
    body = ctx.body_dict()
    message = body.get("message")
    if not isinstance(message, dict) or not message.get("toRecipients"):
        raise GraphError(400, "ErrorInvalidRecipients",
                         "At least one recipient is not valid., A message can't be sent "
                         "because it contains no recipients.")
    ctx.tenant.sent_mail.append({
        "from": user["userPrincipalName"],
        "userId": user["id"],
        "sentDateTime": iso7(),
        "saveToSentItems": body.get("saveToSentItems", True),
        "message": copy.deepcopy(message),
    })
    return ctx.no_content(status=202)
