"""enable_mailbox_audit through the real path (queue -> local host -> emulator over HTTP),
judged by mailbox auditing on by default: AuditEnabled alone is never the finding."""

from __future__ import annotations

from typing import Any

from tests.playbook.conftest import MEGAN, run_via_queue, writes

AUDIT_ONLY = {"user": MEGAN, "actions": ["enable_mailbox_audit"]}


def _megan(emulator: Any) -> dict[str, Any]:
    user = emulator.tenant.find_user(MEGAN)
    assert user is not None
    return user["mailbox"]


def _set(emulator: Any, **fields: Any) -> None:
    with emulator.tenant.lock:
        _megan(emulator).update(fields)


async def _run(services: Any, emulator: Any, request_id: str) -> Any:
    emulator.clear_log()
    stats = await run_via_queue(services, {**AUDIT_ONLY, "requestId": request_id})
    assert stats.succeeded == 1
    return (await services.journal.step_results(request_id))["enable_mailbox_audit"]


async def test_audit_enabled_false_with_organisation_on_and_defaults_is_nothing_to_do(
        services, emulator):
    # Audit (Premium) licence, Microsoft's default actions, no bypass, organisation on
    _set(emulator, auditEnabled=False, auditPremium=True)
    result = await _run(services, emulator, "audit-nothing")
    assert result.status == "nothing_to_do", result.summary
    assert [w for w in writes(emulator) if w.get("cmdlet")] == []
    assert _megan(emulator)["auditEnabled"] is False


async def test_owner_actions_without_rules_and_deletes_are_restored(services, emulator):
    _set(emulator, auditEnabled=True, auditOwner=["Update", "ApplyRecord"])
    result = await _run(services, emulator, "audit-restore")
    assert result.status == "done", result.summary
    sent = [w["params"] for w in writes(emulator) if w.get("cmdlet") == "Set-Mailbox"]
    assert sent == [{"Identity": sent[0]["Identity"], "DefaultAuditSet": ["Owner"]}]
    assert "auditOwner" not in _megan(emulator)  # Microsoft's defaults again
    assert result.changes[0]["missing"] == ["UpdateInboxRules", "HardDelete",
                                            "MoveToDeletedItems", "SoftDelete"]


async def test_customised_list_with_extras_keeps_them_and_adds_what_is_missing(
        services, emulator):
    _set(emulator, auditEnabled=True, auditOwner=["MailboxLogin", "HardDelete"])
    result = await _run(services, emulator, "audit-add")
    assert result.status == "done", result.summary
    assert set(_megan(emulator)["auditOwner"]) == {"MailboxLogin", "HardDelete",
                                                    "UpdateInboxRules", "SoftDelete",
                                                    "MoveToDeletedItems"}


async def test_bypass_is_removed_and_non_premium_mailbox_made_searchable(services, emulator):
    # the demo's Megan: AuditEnabled false, no Audit (Premium): the documented workaround
    # (AuditEnabled $true) is what gets her events into audit search
    _set(emulator, auditBypassEnabled=True)
    result = await _run(services, emulator, "audit-bypass")
    assert result.status == "done", result.summary
    box = _megan(emulator)
    assert box["auditBypassEnabled"] is False and box["auditEnabled"] is True
    assert {c["what"] for c in result.changes} == {"AuditEnabled", "AuditBypassEnabled"}


async def test_organisation_switch_off_is_reported_not_changed(services, emulator):
    _set(emulator, auditEnabled=True)
    with emulator.tenant.lock:
        emulator.tenant.organization["auditDisabled"] = True
    result = await _run(services, emulator, "audit-org")
    assert result.status == "partial"
    assert "Set-OrganizationConfig -AuditDisabled $false" in result.summary
    assert emulator.tenant.organization["auditDisabled"] is True
    assert not [w for w in writes(emulator) if w.get("cmdlet") == "Set-OrganizationConfig"]
