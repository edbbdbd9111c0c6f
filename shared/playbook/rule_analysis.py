"""Why an inbox rule looks like an attacker's: pure functions over Graph messageRule JSON
and Exchange Get-InboxRule rows, so they are tested with fixtures, not a tenant.

The patterns are the ones seen in business-email compromise: forwarding or redirecting
outside the organisation, deleting, hiding mail in folders nobody reads (RSS Feeds,
Archive, Junk, Deleted Items), marking read and stopping further rules, and keyword
conditions (invoice, payment, wire, password) combined with any of those.
"""

from __future__ import annotations

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


def _exchange_addresses(values: Any) -> list[str]:
    """Exchange rows show recipients as strings like '"Name" [SMTP:x@y]' or plain text."""
    out: list[str] = []
    for v in values if isinstance(values, list) else ([values] if values else []):
        text = str(v)
        if "SMTP:" in text.upper():
            start = text.upper().index("SMTP:") + 5
            text = text[start:].rstrip("]").strip()
        out.append(text.strip().strip('"'))
    return out


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
