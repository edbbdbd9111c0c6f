"""Why an inbox rule looks like an attacker's: pure functions over Graph messageRule JSON
and Exchange Get-InboxRule rows, so they are tested with fixtures, not a tenant.

The patterns are the ones seen in business-email compromise: forwarding or redirecting
outside the organisation, deleting, hiding mail in folders nobody reads (RSS Feeds,
Archive, Junk, Deleted Items), marking read and stopping further rules, and keyword
conditions (invoice, payment, wire, password) combined with any of those.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

HIDING_FOLDERS = frozenset({"rss feeds", "rss subscriptions", "conversation history", "notes"})
"""Folders nobody reads: moving mail there is suspicious on its own."""
QUIET_FOLDERS = frozenset({"archive", "junk email", "junk e-mail", "junk", "deleted items"})
"""Folders people do file into: suspicious only with keywords, mark-as-read or all mail."""


def _quiet_move_is_suspicious(conditions: dict[str, Any], marks_read: bool,
                              keyword_hits: list[str]) -> bool:
    return bool(keyword_hits or marks_read or not any(conditions.values()))


def _addresses(recipients: Any) -> list[str]:
    """Addresses from a recipient list (or the single object older docs show)."""
    if isinstance(recipients, dict):
        recipients = [recipients]
    out: list[str] = []
    for r in recipients or []:
        if isinstance(r, dict):
            addr = (r.get("emailAddress") or {}).get("address") if isinstance(
                r.get("emailAddress"), dict) else r.get("address")
            if addr:
                out.append(str(addr))
        elif isinstance(r, str):
            out.append(r)
    return out


_TAGGED = re.compile(r"\[(SMTP|EX):([^\]]*)\]\s*$", re.IGNORECASE)


def exchange_recipient(text: str) -> tuple[str, str]:
    """('ex', legacyExchangeDN) or ('smtp', address) for one Get-InboxRule recipient.

    Microsoft does not document the strings; public scripts show a mailbox of the
    organisation as '"Name" [EX:/o=ExchangeLabs/.../cn=Recipients/cn=...]' and anyone else
    as '"Name" [SMTP:x@y]', and sometimes a bare legacyExchangeDN or a bare address."""
    text = str(text).strip()
    tagged = _TAGGED.search(text)
    if tagged:
        return tagged.group(1).lower(), tagged.group(2).strip()
    bare = text.strip('"').strip()
    if bare.lower().startswith("/o="):
        return "ex", bare
    if bare.lower().startswith("smtp:"):
        bare = bare[5:]
    return "smtp", bare


def _exchange_addresses(values: Any) -> list[str]:
    """The SMTP addresses among an Exchange row's recipients. An EX: recipient is a
    mailbox of this organisation (Exchange resolved it to its directory entry), so it is
    never external and is left out."""
    out: list[str] = []
    for v in values if isinstance(values, list) else ([values] if values else []):
        kind, value = exchange_recipient(str(v))
        if kind == "smtp":
            out.append(value)
    return out


SYSTEM_RULE_NAMES = frozenset({"junk e-mail rule"})
SYSTEM_RULE_PREFIXES = ("microsoft.exchange.oof.",)
"""Hidden rules Exchange itself keeps (junk e-mail, automatic replies). Microsoft documents
only that -IncludeHidden shows hidden rules (https://learn.microsoft.com/powershell/module/
exchange/Get-InboxRule), not their names; these are the names admin scripts filter out
(https://azure365addict.com/2025/05/22/detecting-hidden-inbox-rules-in-exchange-online/)."""


def is_system_rule(row: dict[str, Any], *, visible_in_graph: bool) -> bool:
    """A hidden system rule the responder must never disable. Only a rule Graph does not
    show counts: a user-visible rule that borrows the name is judged like any other."""
    if visible_in_graph:
        return False
    name = str(row.get("Name") or "").strip().lower()
    return name in SYSTEM_RULE_NAMES or name.startswith(SYSTEM_RULE_PREFIXES)


def rule_identity_of(graph_id: str) -> str | None:
    """The Exchange RuleIdentity of a Graph messageRule id, or None if it is not one.

    Neither format is documented. A Graph rule id is base64 of 8 bytes (observed:
    "AQAAAOQfqLg=", https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3336)
    and the documented RuleIdentity example 16752869479666417665 (MicrosoftDocs/office-docs-
    powershell:exchange/exchange-ps/exchange/Disable-InboxRule.md) is 0xE87E260800000001,
    the same layout read as a little-endian integer."""
    try:
        raw = base64.b64decode(str(graph_id).replace("-", "+").replace("_", "/"),
                               validate=True)
    except (binascii.Error, ValueError):
        return None
    return str(int.from_bytes(raw, "little")) if len(raw) == 8 else None


def row_rule_identity(row: dict[str, Any]) -> str:
    """RuleIdentity of a Get-InboxRule row (Identity is MailboxAlias\\RuleIdentity)."""
    return str(row.get("RuleIdentity") or str(row.get("Identity") or "").rsplit("\\", 1)[-1])


def pair_rules(graph_rules: list[dict[str, Any]], rows: list[dict[str, Any]]
               ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """(Graph rule, Exchange row) pairs for one mailbox; None where one side has no match
    (a hidden rule has no Graph side). Ids are matched first; a name is used only when it
    is unique on both sides."""
    by_identity = {row_rule_identity(r): r for r in rows}
    names_g: dict[str, int] = {}
    for g in graph_rules:
        names_g[str(g.get("displayName"))] = names_g.get(str(g.get("displayName")), 0) + 1
    names_x: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        names_x.setdefault(str(r.get("Name")), []).append(r)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    used: set[int] = set()
    for g in graph_rules:
        row = by_identity.get(rule_identity_of(str(g.get("id"))) or "")
        if row is None:
            name = str(g.get("displayName"))
            same = [r for r in names_x.get(name, []) if id(r) not in used]
            row = same[0] if names_g.get(name) == 1 and len(same) == 1 else None
        if row is not None:
            used.add(id(row))
        pairs.append((g, row))
    pairs.extend((None, r) for r in rows if id(r) not in used)
    return pairs


def external(addresses: Iterable[str], internal_domains: set[str]) -> list[str]:
    """Addresses whose domain is not one of the organisation's."""
    found = []
    for a in addresses:
        domain = a.rsplit("@", 1)[-1].lower() if "@" in a else ""
        if not domain or domain not in internal_domains:
            found.append(a)
    return found


def _keywords_hit(words: Iterable[str], keywords: Iterable[str]) -> list[str]:
    lowered = [w.lower() for w in words]
    return sorted({k for k in keywords for w in lowered if k.lower() in w})


def graph_rule_reasons(
    rule: dict[str, Any],
    folder_names: dict[str, str],
    internal_domains: set[str],
    keywords: Iterable[str],
) -> list[str]:
    """Reasons a Graph messageRule is suspicious; an empty list means benign."""
    actions = rule.get("actions") or {}
    conditions = rule.get("conditions") or {}
    reasons: list[str] = []
    for key in ("forwardTo", "forwardAsAttachmentTo", "redirectTo"):
        outside = external(_addresses(actions.get(key)), internal_domains)
        if outside:
            reasons.append(f"{key} outside the organisation: {', '.join(outside)}")
    if actions.get("delete"):
        reasons.append("deletes messages")
    if actions.get("permanentDelete"):
        reasons.append("permanently deletes messages")
    words: list[str] = []
    for key in ("subjectContains", "bodyContains", "bodyOrSubjectContains", "headerContains"):
        words.extend(str(w) for w in conditions.get(key) or [])
    hits = _keywords_hit(words, keywords)
    target = actions.get("moveToFolder")
    if target:
        name = folder_names.get(str(target), str(target))
        if name.lower() in HIDING_FOLDERS or (
                name.lower() in QUIET_FOLDERS
                and _quiet_move_is_suspicious(conditions, bool(actions.get("markAsRead")),
                                              hits)):
            reasons.append(f"moves messages to {name}")
    if actions.get("markAsRead") and actions.get("stopProcessingRules"):
        reasons.append("marks messages read and stops other rules")
    if hits and reasons:
        reasons.append(f"acts on keywords {', '.join(hits)}")
    if reasons and not any(conditions.values()):
        reasons.append("applies to all mail")
    return reasons


def exchange_rule_reasons(
    row: dict[str, Any], internal_domains: set[str], keywords: Iterable[str]
) -> list[str]:
    """Reasons an Exchange Get-InboxRule row is suspicious (for hidden rules)."""
    reasons: list[str] = []
    for key in ("ForwardTo", "ForwardAsAttachmentTo", "RedirectTo"):
        outside = external(_exchange_addresses(row.get(key)), internal_domains)
        if outside:
            reasons.append(f"{key} outside the organisation: {', '.join(outside)}")
    if row.get("DeleteMessage"):
        reasons.append("deletes messages")
    words = [str(w) for key in ("SubjectContainsWords", "BodyContainsWords",
                                "SubjectOrBodyContainsWords")
             for w in (row.get(key) or [])]
    hits = _keywords_hit(words, keywords)
    folder = str(row.get("MoveToFolder") or "")
    if folder:
        leaf = folder.replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].strip()
        conditions = {k: row.get(k) for k in ("From", "SentTo", "SubjectContainsWords",
                                                "BodyContainsWords", "FromAddressContainsWords")}
        if leaf.lower() in HIDING_FOLDERS or (
                leaf.lower() in QUIET_FOLDERS
                and _quiet_move_is_suspicious(conditions, bool(row.get("MarkAsRead")), hits)):
            reasons.append(f"moves messages to {leaf}")
    if row.get("MarkAsRead") and row.get("StopProcessingRules"):
        reasons.append("marks messages read and stops other rules")
    if hits and reasons:
        reasons.append(f"acts on keywords {', '.join(hits)}")
    return reasons
