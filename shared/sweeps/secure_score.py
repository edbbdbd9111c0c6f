"""Secure Score posture sweep: is the tenant getting safer against account compromise?

Microsoft's guidance for a compromised account is: enable MFA, check Secure Score, turn on
mailbox audit logging. This sweep reads the latest daily scores and the control profiles,
keeps the controls that bear on account compromise, and reports the score, its trend over
the days read, each chosen control's state and what changed since the last sweep. History
is kept in Table storage. A tenant without the data (no licence, or the identity lacks
SecurityEvents.Read.All) gets a clear "not available" line, not a failure.

Which controls count is decided from each profile's own fields (`choose_controls`), never
from a list of control ids:
- its `threats` include Account Breach, Password Cracking or Password Spray; or
- its title or remediation text mentions multifactor authentication (MFA), legacy
  authentication, mailbox auditing, sign-in risk or user risk policies, or self-service
  password reset (SSPR).
Deprecated profiles are left out.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import Forbidden
from shared.state import partitions
from shared.state.clock import now
from shared.sweeps.base import SweepContext, SweepResult
from shared.sweeps.registry import Sweep, register
from shared.tenant.graph.security import PERM_SECURITY_READ, control_profiles, secure_scores

HISTORY = partitions.SECURE_SCORE_HISTORY
LAST = partitions.SECURE_SCORE_LAST
LAST_ROW = "last-sweep"

COMPROMISE_THREATS = frozenset({"account breach", "password cracking", "password spray"})
TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("multifactor authentication", re.compile(r"multi-?factor|\bmfa\b", re.I)),
    ("legacy authentication", re.compile(r"legacy auth", re.I)),
    ("mailbox auditing", re.compile(r"mailbox audit", re.I)),
    ("sign-in risk policy", re.compile(r"sign-?in risk", re.I)),
    ("user risk policy", re.compile(r"user risk", re.I)),
    ("self-service password reset", re.compile(r"self-?service password reset|\bsspr\b", re.I)),
)
NOT_AVAILABLE = ("Secure Score: not available (HTTP 403: the tenant has no Secure Score data "
                 f"for this app, or the identity lacks {PERM_SECURITY_READ})")


def _plain(html: Any) -> str:
    return re.sub(r"<[^>]+>", " ", str(html or ""))


def control_reasons(profile: dict[str, Any]) -> list[str]:
    """Why a control profile bears on account compromise (empty: it does not)."""
    if profile.get("deprecated"):
        return []
    reasons = [f"threat: {t}" for t in profile.get("threats") or []
               if str(t).lower() in COMPROMISE_THREATS]
    text = f"{profile.get('title') or ''} {_plain(profile.get('remediation'))}"
    reasons += [f"about {topic}" for topic, pattern in TOPICS if pattern.search(text)]
    return reasons


def choose_controls(profiles: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The chosen profiles by control id, each with the reasons it was chosen."""
    chosen: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        reasons = control_reasons(profile)
        if reasons and profile.get("id"):
            chosen[str(profile["id"])] = {**profile, "reasons": reasons}
    return chosen


def _day(score: dict[str, Any]) -> str:
    return str(score.get("createdDateTime") or "")[:10]


def _pct(current: float, maximum: float) -> float:
    return round(100.0 * current / maximum, 1) if maximum else 0.0


def control_states(latest: dict[str, Any], chosen: dict[str, dict[str, Any]])\
        -> list[dict[str, Any]]:
    """Each chosen control's score against its maximum, from the latest daily score."""
    scores = {str(c.get("controlName")): c for c in latest.get("controlScores") or []}
    out = []
    for cid, profile in sorted(chosen.items(), key=lambda kv: (kv[1].get("rank") or 999, kv[0])):
        maximum = float(profile.get("maxScore") or 0)
        row = scores.get(cid)
        score = float(row.get("score") or 0) if row else None
        if score is None:
            state = "not scored"
        elif maximum and score >= maximum:
            state = "done"
        elif score > 0:
            state = "partial"
        else:
            state = "not done"
        out.append({"id": cid, "title": profile.get("title") or cid,
                    "category": profile.get("controlCategory"), "score": score,
                    "maxScore": maximum, "state": state, "reasons": profile["reasons"],
                    "actionUrl": profile.get("actionUrl")})
    return out


def trend(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The score per day, oldest first, and its change over the period."""
    days: list[dict[str, Any]] = []
    for s in sorted(scores, key=lambda s: str(s.get("createdDateTime") or "")):
        score, maximum = float(s.get("currentScore") or 0), float(s.get("maxScore") or 0)
        days.append({"date": _day(s), "score": score, "maxScore": maximum,
                     "percent": _pct(score, maximum)})
    if len(days) < 2:
        return {"days": days, "change": 0.0, "direction": "unknown"}
    change = round(days[-1]["score"] - days[0]["score"], 2)
    direction = "up" if change > 0 else "down" if change < 0 else "flat"
    return {"days": days, "change": change, "direction": direction,
            "from": days[0]["date"], "to": days[-1]["date"]}


def changes_since(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """What moved between the last sweep's snapshot and this one."""
    if not previous:
        return {"first": True, "lines": ["first posture sweep: nothing to compare yet"]}
    lines: list[str] = []
    delta = round(current["score"] - float(previous.get("score") or 0), 2)
    if delta:
        lines.append(f"score {previous.get('score')} -> {current['score']} "
                     f"({'+' if delta > 0 else ''}{delta})")
    before = previous.get("controls") or {}
    now_ = current["controls"]
    moved = []
    for cid, state in sorted(now_.items()):
        old = before.get(cid)
        if old is None:
            lines.append(f"{cid}: newly counted ({state['state']})")
            moved.append(cid)
        elif old.get("score") != state["score"]:
            lines.append(f"{cid}: {old.get('score')} -> {state['score']} of "
                         f"{state['maxScore']} ({old.get('state')} -> {state['state']})")
            moved.append(cid)
    for cid in sorted(set(before) - set(now_)):
        lines.append(f"{cid}: no longer counted")
        moved.append(cid)
    if not lines:
        lines.append(f"no change since the last sweep ({previous.get('date')})")
    return {"first": False, "scoreChange": delta, "controls": moved, "lines": lines,
            "previousDate": previous.get("date")}


@register
class SecureScoreSweep(Sweep):
    """Is the tenant getting safer against account compromise? The posture report says."""

    name = "secure_score"
    description = "Secure Score for controls that bear on account compromise: score, trend"
    schedule_setting = "RESPONDER_SWEEP_SECURE_SCORE_SCHEDULE"
    default_schedule = "0 0 7 * * *"
    graph_permissions = (PERM_SECURITY_READ,)
    why = "Report the tenant's Secure Score for controls that bear on account compromise."

    async def run(self, ctx: SweepContext) -> None:
        result = ctx.result
        days = int(ctx.policy.sweeps.secure_score.days)
        try:
            scores = await secure_scores(ctx.graph, days)
            profiles = await control_profiles(ctx.graph)
        except Forbidden:
            result.status = "not-available"
            result.note(NOT_AVAILABLE)
            result.data = {"available": False, "line": NOT_AVAILABLE}
            return
        if not scores:
            result.status = "not-available"
            line = "Secure Score: not available (the tenant has no daily scores yet)"
            result.note(line)
            result.data = {"available": False, "line": line}
            return
        latest = scores[0]
        chosen = choose_controls(profiles)
        controls = control_states(latest, chosen)
        current: dict[str, Any] = {
            "date": _day(latest), "score": float(latest.get("currentScore") or 0),
            "maxScore": float(latest.get("maxScore") or 0),
            "controls": {c["id"]: {"score": c["score"], "state": c["state"],
                                   "maxScore": c["maxScore"]} for c in controls}}
        journal = ctx.services.journal
        previous_row = await journal.get_item(LAST, LAST_ROW)
        previous = _loads(previous_row.get("snapshot")) if previous_row else None
        result.data = {
            "available": True, "date": current["date"], "score": current["score"],
            "maxScore": current["maxScore"],
            "percent": _pct(current["score"], current["maxScore"]),
            "comparative": latest.get("averageComparativeScores") or [],
            "trend": trend(scores), "controls": controls,
            "changes": changes_since(previous, current),
            "rule": "threats include Account Breach/Password Cracking/Password Spray, or the "
                    "title/remediation mentions MFA, legacy authentication, mailbox auditing, "
                    "sign-in/user risk policy or SSPR",
        }
        for c in controls:
            if c["state"] != "done":
                result.found.append({"kind": "posture-gap", "identity": c["id"],
                                     "what": c["title"],
                                     "why": f"{c['state']}: {c['score']} of {c['maxScore']}"})
        if ctx.dry_run:
            return
        for s in scores:
            await journal.put_item(HISTORY, _day(s), currentScore=float(s.get("currentScore")
                                                                        or 0),
                                   maxScore=float(s.get("maxScore") or 0), at=now())
        await journal.put_item(LAST, LAST_ROW, snapshot=json.dumps(current), at=now())


    def notice_lines(self, result: SweepResult) -> list[str]:
        """The posture report itself is the notification (and the "not available" line)."""
        return posture_text(result).splitlines()


def _loads(text: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def posture_text(result: SweepResult) -> str:
    """The posture report for the terminal and notifications."""
    data = result.data
    if not data.get("available"):
        return data.get("line") or "Secure Score: not available"
    lines = [f"Secure Score {data['score']:g} of {data['maxScore']:g} ({data['percent']}%) "
             f"on {data['date']}"]
    t = data["trend"]
    if t["direction"] != "unknown":
        sign = "+" if t["change"] > 0 else ""
        lines.append(f"Trend {t['from']} -> {t['to']}: {t['direction']} ({sign}{t['change']:g})"
                     "  " + " ".join(f"{d['score']:g}" for d in t["days"]))
    lines.append("Controls against account compromise:")
    for c in data["controls"]:
        score = "-" if c["score"] is None else f"{c['score']:g}"
        lines.append(f"  [{c['state']:>10}] {score}/{c['maxScore']:g}  {c['title']}")
    lines.append("Since the last sweep:")
    lines += [f"  {line}" for line in data["changes"]["lines"]]
    return "\n".join(lines)
