"""Mailbox audit sweep against an emulated tenant of 2,000 mailboxes with a few offenders.

The generated `audit_disabled` offenders have AuditEnabled false and no Audit (Premium)
licence: their events do not reach audit search, which is what the sweep fixes for them."""

from __future__ import annotations

import json
from typing import Any

from shared.sweeps import run_sweep
from shared.sweeps.base import CHECKPOINTS, event_partition
from tests.sweeps.conftest import exchange_calls, exchange_writes


def _boxes(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["userPrincipalName"]: u["mailbox"] for u in state["users"] if u.get("mailbox")}


def _offenders(seed: dict[str, Any]) -> set[str]:
    return set(seed["offenders"]["audit_disabled"]) | set(seed["offenders"]["audit_bypass"])


async def test_fixes_exactly_the_offenders_in_calls_bounded_by_offenders_and_pages(
        tenant_emulator, big_tenant, make_services):
    svc = make_services(tenant_emulator)
    before = _boxes(tenant_emulator.state())
    assert len(before) == 2000
    tenant_emulator.clear_log()

    result = await run_sweep(svc, "audit")

    assert result.status == "ok" and result.complete
    after = _boxes(tenant_emulator.state())
    changed = {upn for upn in after if after[upn] != before[upn]}
    assert changed == _offenders(big_tenant)
    assert all(b["auditEnabled"] and not b.get("auditBypassEnabled") for b in after.values())
    writes = exchange_writes(tenant_emulator)
    assert len(writes) == 8  # 5 Set-Mailbox + 3 Set-MailboxAuditBypassAssociation
    assert {w["cmdlet"] for w in writes} == {"Set-Mailbox", "Set-MailboxAuditBypassAssociation"}
    # calls: 1 org config + 2 mailbox pages + 2 bypass pages (1000 rows each) + 8 fixes
    calls = exchange_calls(tenant_emulator)
    offenders, pages = 8, 2 + 2
    assert len(calls) <= offenders + pages + 2, [c["cmdlet"] for c in calls]
    listed = [c for c in calls if c["cmdlet"] == "Get-Mailbox"]
    assert len(listed) == 2 and all("Identity" not in c["params"] for c in listed)
    # the report says what it found and did, and the journal has it
    assert {a["identity"] for a in result.actions} >= set(big_tenant["offenders"]
                                                          ["audit_disabled"])
    events = await svc.journal.events(event_partition("audit"))
    assert events[-1]["kind"] == "sweep-ok" and len(events[-1]["data"]["actions"]) == 8
    mails = [e for e in tenant_emulator.requests() if e["path"].endswith("/sendMail")]
    assert len(mails) == 1 and "AuditEnabled set to true" in json.dumps(mails[0]["body"])


async def test_a_second_run_finds_nothing(tenant_emulator, make_services):
    svc = make_services(tenant_emulator)
    await run_sweep(svc, "audit")
    tenant_emulator.clear_log()
    again = await run_sweep(svc, "audit")
    assert again.found == [] and again.actions == []
    assert exchange_writes(tenant_emulator) == []


async def test_report_only_and_organisation_switch(tenant_emulator, big_tenant, make_services):
    with tenant_emulator.tenant.lock:
        tenant_emulator.tenant.organization["auditDisabled"] = True
    svc = make_services(tenant_emulator,
                        sweeps={"audit": {"mailboxes": "report", "bypass": "report"}})
    result = await run_sweep(svc, "audit")
    assert exchange_writes(tenant_emulator) == []
    assert {f["kind"] for f in result.found} == {
        "organisation-audit-off", "mailbox-audit-not-searchable", "audit-bypass"}
    assert len(result.skipped) == 9 and result.actions == []
    assert tenant_emulator.state()["organization"]["auditDisabled"] is True

    fixing = make_services(tenant_emulator, sweeps={"audit": {"organization": "fix"}})
    await run_sweep(fixing, "audit")
    assert tenant_emulator.state()["organization"]["auditDisabled"] is False


async def test_excluded_accounts_are_never_touched(tenant_emulator, big_tenant, make_services):
    protected = sorted(big_tenant["offenders"]["audit_disabled"])[0]
    svc = make_services(tenant_emulator, exclusions={"users": [protected]})
    result = await run_sweep(svc, "audit")
    assert _boxes(tenant_emulator.state())[protected]["auditEnabled"] is False
    assert any(s["identity"] == protected and "excluded" in s["why"] for s in result.skipped)
    assert len(exchange_writes(tenant_emulator)) == 7


async def test_dry_run_changes_nothing(tenant_emulator, make_services):
    svc = make_services(tenant_emulator, env={"RESPONDER_SWEEPS_DRY_RUN": "true"})
    result = await run_sweep(svc, "audit")
    assert result.dry_run and len(result.actions) == 8
    assert exchange_writes(tenant_emulator) == []
    assert await svc.journal.get_item(CHECKPOINTS, "audit") is None


async def test_interrupted_by_a_fault_resumes_without_skipping_or_repeating(
        tenant_emulator, big_tenant, make_services):
    svc = make_services(tenant_emulator,
                        sweeps={"audit": {"mailboxes": "report", "bypass": "report"}})
    # report mode: offenders stay offenders, so only the checkpoint prevents repeats
    first = await run_sweep(svc, "audit", budget=3)
    assert not first.complete and len(first.found) == 3
    tenant_emulator.add_fault(cmdlet="Get-Mailbox", status=400, code="BadRequest",
                              message="injected", count=1)
    broken = await run_sweep(svc, "audit", budget=3)
    assert broken.status == "failed" and broken.found == []
    second = await run_sweep(svc, "audit", budget=3)
    third = await run_sweep(svc, "audit", budget=3)
    assert third.complete
    seen = [f.get("user") or f["identity"] for r in (first, second, third) for f in r.found]
    assert len(seen) == len(set(seen)) == 8
    assert set(seen) == _offenders(big_tenant)
    # the next pass starts again from the beginning
    fourth = await run_sweep(svc, "audit", budget=3)
    assert [f["identity"] for f in fourth.found] == [f["identity"] for f in first.found]
    assert all(f["kind"] == "mailbox-audit-not-searchable" for f in first.found)


async def test_interrupted_mid_fix_resumes_and_fixes_each_offender_once(
        tenant_emulator, big_tenant, make_services):
    svc = make_services(tenant_emulator)
    tenant_emulator.clear_log()
    tenant_emulator.add_fault(cmdlet="Set-MailboxAuditBypassAssociation", status=400,
                              code="BadRequest", message="injected", count=1)
    first = await run_sweep(svc, "audit")
    assert first.status == "failed" and not first.complete
    second = await run_sweep(svc, "audit")
    assert second.status == "ok" and second.complete
    writes = exchange_writes(tenant_emulator)
    targets = [w["params"]["Identity"] for w in writes]
    assert len(targets) == len(set(targets)) == 8
    after = _boxes(tenant_emulator.state())
    assert all(b["auditEnabled"] and not b.get("auditBypassEnabled") for b in after.values())


def _mailbox(emulator: Any, upn: str) -> dict[str, Any]:
    user = emulator.tenant.find_user(upn)
    assert user is not None
    return dict(user["mailbox"])


async def test_on_by_default_audit_enabled_alone_is_not_a_finding(
        tenant_emulator, big_tenant, make_services):
    """Organisation on, Audit (Premium), default actions: AuditEnabled false changes
    nothing that is logged or searched, so the sweep leaves the mailbox alone."""
    premium = sorted(big_tenant["offenders"]["audit_disabled"])[0]
    with tenant_emulator.tenant.lock:
        tenant_emulator.tenant.find_user(premium)["mailbox"]["auditPremium"] = True
    svc = make_services(tenant_emulator)
    result = await run_sweep(svc, "audit")
    assert premium not in {f["identity"] for f in result.found}
    assert _mailbox(tenant_emulator, premium)["auditEnabled"] is False
    assert len(exchange_writes(tenant_emulator)) == 7


async def test_customised_actions_are_restored_and_bypass_removed(
        tenant_emulator, big_tenant, make_services):
    """Owner actions customised to drop rule changes and deletes: restored to Microsoft's
    defaults (a pure reduction); a list with extras gets the missing actions added."""
    clean = [u["userPrincipalName"] for u in big_tenant["users"] if u.get("mailbox")
             and u["userPrincipalName"] not in _offenders(big_tenant)]
    reduced, extra = clean[0], clean[1]
    with tenant_emulator.tenant.lock:
        tenant_emulator.tenant.find_user(reduced)["mailbox"]["auditOwner"] = ["Update"]
        tenant_emulator.tenant.find_user(extra)["mailbox"]["auditDelegate"] = [
            "FolderBind", "SendAs"]
    svc = make_services(tenant_emulator, sweeps={"audit": {"mailboxes": "fix"}})
    tenant_emulator.clear_log()
    result = await run_sweep(svc, "audit")
    found = {f["identity"]: f for f in result.found}
    assert found[reduced]["kind"] == "mailbox-audit-actions-off"
    assert "UpdateInboxRules" in found[reduced]["why"]
    r = _mailbox(tenant_emulator, reduced)
    assert "auditOwner" not in r  # back on Microsoft's defaults (DefaultAuditSet has Owner)
    e = _mailbox(tenant_emulator, extra)
    assert {"FolderBind", "SendAs", "SendOnBehalf", "UpdateInboxRules", "SoftDelete",
            "HardDelete", "MoveToDeletedItems"} == set(e["auditDelegate"])
    sets = [w["params"] for w in exchange_writes(tenant_emulator)
            if w["params"].get("Identity") in (reduced, extra)]
    assert {"Identity": reduced, "DefaultAuditSet": ["Owner"]} in sets
    assert all("AuditEnabled" not in p for p in sets)  # AuditEnabled was already true
    again = await run_sweep(svc, "audit")
    assert again.found == []
