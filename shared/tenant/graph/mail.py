"""Mail folders and inbox rules through Graph.

Outlook allows 4 concurrent requests per mailbox, so these calls are made one after
another per user; rules are disabled (not deleted) so a false positive can be restored.
"""

from __future__ import annotations

from typing import Any

from shared.tenant.graph.client import GraphClient, build_path

PERM_MAILBOX_READ = "MailboxSettings.Read"
PERM_MAILBOX_WRITE = "MailboxSettings.ReadWrite"
PERM_FOLDERS_READ = "Mail.ReadBasic.All"


async def list_folders(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    """Top-level mail folders (id and displayName), to name a rule's target folder."""
    return await graph.list_all(build_path("/users/{}/mailFolders", user_id),
                                params={"$top": "100"}, permission=PERM_FOLDERS_READ)


async def list_rules(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    return await graph.list_all(
        build_path("/users/{}/mailFolders/inbox/messageRules", user_id),
        permission=PERM_MAILBOX_READ,
    )


async def set_rule_enabled(graph: GraphClient, user_id: str, rule_id: str, enabled: bool) -> None:
    """PATCH isEnabled (https://learn.microsoft.com/en-us/graph/api/messagerule-update).
    Not for a rule with isReadOnly true: it "cannot be modified or deleted by the rules REST
    API" (https://developer.microsoft.com/en-us/graph/docs/api-reference/v1.0/resources/messagerule);
    change those through Exchange."""
    await graph.request(
        "PATCH", build_path("/users/{}/mailFolders/inbox/messageRules/{}", user_id, rule_id),
        body={"isEnabled": enabled}, priority=True, permission=PERM_MAILBOX_WRITE,
    )
