"""Exchange cmdlets for mailbox delegation, mobile devices and client protocols.

All go through the one Exchange client (shared.tenant.exchange) and need the same
application permission, Exchange.ManageAsApp, plus an Entra role holding the cmdlets
(Exchange Administrator; Exchange Recipient Administrator holds them too). Parameters travel
as JSON values, never pasted into a command line. Pages (learn.microsoft.com/powershell/
module/exchange/<cmdlet>):
- Get-MailboxPermission: -Identity is required; -User only filters that one mailbox, so
  what a user holds on *other* mailboxes costs one call per mailbox (not listed here).
  Rows: Identity, User, AccessRights, IsInherited, Deny.
- Get-RecipientPermission: -Identity and/or -Trustee; `-Trustee x` alone lists every
  recipient x may send as (the page's Example 1): one call.
- Remove-MailboxPermission / Remove-RecipientPermission: -Confirm:$false for unattended use.
- Set-Mailbox -GrantSendOnBehalfTo and Set-CASMailbox -ActiveSyncBlockedDeviceIDs are
  multi-valued: @{Add=...; Remove=...} changes entries without touching the others; a JSON
  object is how the REST endpoint takes a hashtable (not documented; exchange.py does the
  same for the audited actions).
- Get-MobileDevice -Mailbox, Clear-MobileDevice -Identity, Get-/Set-CASMailbox.
"""

from __future__ import annotations

from typing import Any

from shared.errors import NotFound
from shared.tenant.exchange import ExchangeClient

PROTOCOL_PARAMETERS = {
    "imap": "ImapEnabled", "pop": "PopEnabled", "ews": "EwsEnabled",
    "activesync": "ActiveSyncEnabled", "mapi": "MAPIEnabled", "owa": "OWAEnabled",
}
"""Policy names of the client protocols and the Set-CASMailbox parameter of each."""


async def mailbox_permissions(ex: ExchangeClient, mailbox: str) -> list[dict[str, Any]]:
    """Every permission entry on the mailbox (inherited and system ones included)."""
    return (await ex.invoke("Get-MailboxPermission", {"Identity": mailbox},
                            anchor_mailbox=mailbox)).value


async def add_mailbox_permission(ex: ExchangeClient, mailbox: str, user: str,
                                 rights: list[str]) -> None:
    await ex.invoke("Add-MailboxPermission", {"Identity": mailbox, "User": user,
                                              "AccessRights": list(rights),
                                              "InheritanceType": "All"},
                    anchor_mailbox=mailbox)


async def remove_mailbox_permission(ex: ExchangeClient, mailbox: str, user: str,
                                    rights: list[str]) -> None:
    await ex.invoke("Remove-MailboxPermission", {"Identity": mailbox, "User": user,
                                                 "AccessRights": list(rights),
                                                 "InheritanceType": "All",
                                                 "Confirm": False},
                    anchor_mailbox=mailbox)


async def send_as_on(ex: ExchangeClient, mailbox: str) -> list[dict[str, Any]]:
    """Who may send as this mailbox."""
    return (await ex.invoke("Get-RecipientPermission", {"Identity": mailbox})).value


async def send_as_held_by(ex: ExchangeClient, trustee: str) -> list[dict[str, Any]]:
    """Every recipient `trustee` may send as (one call, every recipient)."""
    return (await ex.invoke("Get-RecipientPermission", {"Trustee": trustee,
                                                        "ResultSize": "Unlimited"})).value


async def add_send_as(ex: ExchangeClient, mailbox: str, trustee: str) -> None:
    await ex.invoke("Add-RecipientPermission", {"Identity": mailbox, "Trustee": trustee,
                                                "AccessRights": ["SendAs"],
                                                "Confirm": False})


async def remove_send_as(ex: ExchangeClient, mailbox: str, trustee: str) -> None:
    await ex.invoke("Remove-RecipientPermission", {"Identity": mailbox, "Trustee": trustee,
                                                   "AccessRights": ["SendAs"],
                                                   "Confirm": False})


async def change_send_on_behalf(ex: ExchangeClient, mailbox: str, *,
                                add: list[str] | None = None,
                                remove: list[str] | None = None) -> None:
    change: dict[str, list[str]] = {}
    if add:
        change["Add"] = list(add)
    if remove:
        change["Remove"] = list(remove)
    if change:
        await ex.invoke("Set-Mailbox", {"Identity": mailbox, "GrantSendOnBehalfTo": change},
                        anchor_mailbox=mailbox)


async def recipient(ex: ExchangeClient, identity: str) -> dict[str, Any] | None:
    """What a principal is (RecipientTypeDetails, PrimarySmtpAddress), or None when it is
    not a recipient (a plain security group, a deleted user)."""
    try:
        rows = (await ex.invoke("Get-Recipient", {"Identity": identity})).value
    except NotFound:
        return None
    return rows[0] if rows else None


async def mobile_devices(ex: ExchangeClient, mailbox: str) -> list[dict[str, Any]]:
    return (await ex.invoke("Get-MobileDevice", {"Mailbox": mailbox},
                            anchor_mailbox=mailbox)).value


async def wipe_mobile_device(ex: ExchangeClient, identity: str, *,
                             account_only: bool) -> None:
    """Clear-MobileDevice: a remote wipe at the device's next sync (-AccountOnly removes
    only the mailbox data). It cannot be taken back once the device has synced."""
    params: dict[str, Any] = {"Identity": identity, "Confirm": False}
    if account_only:
        params["AccountOnly"] = True
    await ex.invoke("Clear-MobileDevice", params)


async def cas_mailbox(ex: ExchangeClient, mailbox: str) -> dict[str, Any] | None:
    try:
        rows = (await ex.invoke("Get-CASMailbox", {"Identity": mailbox},
                                anchor_mailbox=mailbox)).value
    except NotFound:
        return None
    return rows[0] if rows else None


async def set_cas_mailbox(ex: ExchangeClient, mailbox: str, **params: Any) -> None:
    await ex.invoke("Set-CASMailbox", {"Identity": mailbox, **params},
                    anchor_mailbox=mailbox)


async def change_blocked_devices(ex: ExchangeClient, mailbox: str, *,
                                 add: list[str] | None = None,
                                 remove: list[str] | None = None) -> None:
    """Add/remove entries of the mailbox's ActiveSyncBlockedDeviceIDs, others untouched."""
    change: dict[str, list[str]] = {}
    if add:
        change["Add"] = list(add)
    if remove:
        change["Remove"] = list(remove)
    if change:
        await set_cas_mailbox(ex, mailbox, ActiveSyncBlockedDeviceIDs=change)
