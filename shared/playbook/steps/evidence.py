"""Evidence first: a snapshot of everything the run may change, before it changes it.

The document is what an investigator reads later and what a release restores from. A part
that cannot be read (no licence, no mailbox, a missing permission) is recorded as
unavailable with the reason; it does not stop the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import ServiceError
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register
from shared.state.clock import now
from shared.tenant import exchange as exo
from shared.tenant.graph import directory
from shared.tenant.graph.auth_methods import PERM_METHODS_READ, PERM_PER_USER_MFA_READ
from shared.tenant.graph.directory import PERM_DOMAIN_READ, PERM_MEMBER_READ, PERM_USER_READ
from shared.tenant.graph.identity_protection import PERM_DETECTIONS_READ, PERM_RISKY_READ
from shared.tenant.graph.mail import PERM_FOLDERS_READ, PERM_MAILBOX_READ


async def _part(name: str, load: Callable[[], Awaitable[Any]], out: dict[str, Any],
                missing: dict[str, str]) -> None:
    try:
        out[name] = await load()
    except ServiceError as exc:
        if exc.retryable:
            raise
        missing[name] = f"{type(exc).__name__}: {exc}"


@register
class CollectEvidence(Step):
    """Snapshot the user, risk, methods, rules, forwarding and audit state before changes."""

    name = "collect_evidence"
    graph_permissions = (PERM_USER_READ, PERM_DOMAIN_READ, PERM_RISKY_READ,
                         PERM_DETECTIONS_READ, PERM_METHODS_READ, PERM_PER_USER_MFA_READ,
                         PERM_MEMBER_READ, PERM_MAILBOX_READ, PERM_FOLDERS_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    reversible = "read only"
    changes_nothing = True
    dry_run_description = "reads the current state (also in a dry run) and stores it"
    after = ()

    async def plan(self, ctx: StepContext) -> Plan:
        return Plan(actions=["snapshot user, risk, methods, rules, forwarding, audit"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        doc: dict[str, Any] = {"runId": ctx.run.run_id, "collectedAt": now().isoformat(),
                               "user": ctx.user.raw}
        missing: dict[str, str] = {}
        uid = ctx.user.id
        await asyncio.gather(
            _part("domains", ctx.domains, doc, missing),
            _part("riskyUser", ctx.risky_user, doc, missing),
            _part("riskDetections", ctx.risk_detections, doc, missing),
            _part("authenticationMethods", ctx.methods, doc, missing),
            _part("perUserMfaState", ctx.per_user_mfa, doc, missing),
            _part("memberOf", lambda: directory.member_of(ctx.graph, uid), doc, missing),
            _part("mailFolders", ctx.folders, doc, missing),
            _part("inboxRules", ctx.rules, doc, missing),
            self._exchange(ctx, doc, missing),
        )
        doc["federated"] = await ctx.federated() if "domains" in doc else None
        doc["unavailable"] = missing
        ref = await ctx.journal.put_evidence(ctx.run.run_id, "evidence", doc)
        ctx.run.evidence_blob = ref
        summary = f"evidence stored at {ref}"
        if missing:
            summary += f"; unavailable: {', '.join(sorted(missing))}"
        return StepResult(step=self.name, status=StepStatus.DONE, summary=summary,
                          data={"evidenceBlob": ref, "unavailable": missing,
                                "memberOf": _roles(doc.get("memberOf") or [])})

    async def _exchange(self, ctx: StepContext, doc: dict[str, Any],
                        missing: dict[str, str]) -> None:
        # Concurrently: each cmdlet costs a few hundred milliseconds, and four reads of one
        # mailbox stay within Exchange's per-mailbox concurrency.
        await asyncio.gather(
            _part("mailbox", ctx.mailbox, doc, missing),
            _part("auditBypass", ctx.audit_bypass, doc, missing),
            _part("exchangeInboxRules", ctx.exchange_rules, doc, missing),
            _part("restrictedSender", ctx.blocked, doc, missing),
        )
        await _part("organizationConfig", ctx.organization_config, doc, missing)


def _roles(member_of: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": m.get("id"), "roleTemplateId": m.get("roleTemplateId"),
             "displayName": m.get("displayName")}
            for m in member_of if str(m.get("@odata.type", "")).endswith("directoryRole")]
