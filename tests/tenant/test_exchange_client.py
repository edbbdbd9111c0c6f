"""The Exchange admin client against the emulator's InvokeCommand endpoint."""

from __future__ import annotations

import pytest

from shared.errors import Forbidden, NotFound, ReadOnlyViolation, Throttled
from shared.tenant import exchange as exo
from shared.tenant.credentials import StaticTokenCredential
from shared.tenant.exchange import ExchangeClient, _error_message
from shared.tenant.retry import RetryPolicy
from tests.conftest import TOKEN


@pytest.fixture
async def ex(settings):
    client = ExchangeClient(settings, StaticTokenCredential(TOKEN))
    yield client
    await client.close()


async def test_get_mailbox_and_paging_with_prefer_header(ex, emulator):
    rows = (await ex.invoke("Get-Mailbox", {"ResultSize": "Unlimited"}, page_size=2)).value
    mailboxes = [u for u in emulator.state()["users"] if u.get("mailbox")]
    assert len(rows) == len(mailboxes)
    calls = [e for e in emulator.requests() if e.get("cmdlet") == "Get-Mailbox"]
    assert len(calls) == -(-len(mailboxes) // 2)


async def test_unknown_mailbox_is_not_found(ex):
    assert await exo.get_mailbox(ex, "nobody@contoso.com") is None
    with pytest.raises(NotFound):
        await ex.invoke("Get-Mailbox", {"Identity": "nobody@contoso.com"})


async def test_error_message_is_read_from_both_documented_places():
    code, msg = _error_message({"error": {"code": "x", "details": [{"message": "A"}]}})
    assert (code, msg) == ("x", "A")
    _, msg = _error_message({"error": {"innererror": {"internalException": {"message": "B"}}}})
    assert msg == "B"


async def test_missing_role_is_forbidden_with_a_hint(ex, emulator):
    emulator.add_fault(cmdlet="Set-Mailbox", status=401, code="Unauthorized",
                       message="The role assigned to application isn't supported in this "
                               "scenario. is not allowed to call Set-Mailbox", count=1)
    with pytest.raises(Forbidden) as info:
        await exo.set_mailbox(ex, "megan@contoso.com", AuditEnabled=True)
    assert "Exchange Administrator" in str(info.value)


async def test_exchange_uses_the_same_retry_policy(settings, emulator):
    client = ExchangeClient(settings, StaticTokenCredential(TOKEN),
                            policy=RetryPolicy(max_attempts=3, base_delay=0.05))
    emulator.add_fault(cmdlet="Get-OrganizationConfig", status=429, retry_after="0.1", count=1)
    try:
        assert isinstance(await exo.organization_config(client), dict)
        assert client.stats.throttled == 1
        emulator.add_fault(cmdlet="Get-OrganizationConfig", status=429, retry_after="0.05",
                           count=None)
        with pytest.raises(Throttled):
            await exo.organization_config(client)
    finally:
        await client.close()


async def test_read_only_view_refuses_writes(ex, emulator):
    view = ex.view(read_only=True)
    with pytest.raises(ReadOnlyViolation):
        await exo.set_mailbox(view, "megan@contoso.com", AuditEnabled=True)
    assert await exo.get_mailbox(view, "megan@contoso.com")
    assert not [e for e in emulator.requests() if e.get("cmdlet") == "Set-Mailbox"]
