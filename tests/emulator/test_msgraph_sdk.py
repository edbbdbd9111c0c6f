"""The real msgraph-sdk (kiota + httpx) against the emulator over 127.0.0.1."""

from __future__ import annotations

import time

from azure.core.credentials import AccessToken
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient

from .conftest import MEGAN, OBRIEN


class StaticTokenCredential:
    """Async credential returning a fixed token (never touches a real identity endpoint)."""

    def __init__(self, token: str):
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def _client(base_url: str) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(
        StaticTokenCredential("test-token"), scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = base_url + "/v1.0"
    return GraphServiceClient(request_adapter=adapter)


async def test_sdk_reads_users_methods_and_rules(server):
    client = _client(server.base_url)
    user = await client.users.by_user_id("o'brien@contoso.com").get()
    assert user.id == OBRIEN and user.user_principal_name == "o'brien@contoso.com"
    megan = await client.users.by_user_id(MEGAN).get()
    assert megan.display_name == "Megan Bowen" and megan.account_enabled is True
    methods = await client.users.by_user_id(MEGAN).authentication.methods.get()
    kinds = {type(m).__name__ for m in methods.value}
    assert "MicrosoftAuthenticatorAuthenticationMethod" in kinds
    assert "PhoneAuthenticationMethod" in kinds
    rules = await client.users.by_user_id(MEGAN).mail_folders.by_mail_folder_id(
        "inbox").message_rules.get()
    assert len(rules.value) == 5  # the demo's visible rules (hidden ones are Exchange-only)
    assert any(r.actions.forward_to for r in rules.value)
    paths = [e["path"] for e in server.requests()]
    assert f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules" in paths


async def test_sdk_error_maps_to_odata_error(server):
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    client = _client(server.base_url)
    try:
        await client.users.by_user_id("ghost@contoso.com").get()
    except ODataError as exc:
        assert exc.response_status_code == 404
        assert exc.error.code == "Request_ResourceNotFound"
    else:
        raise AssertionError("expected ODataError")


async def test_sdk_writes(server):
    from msgraph.generated.identity_protection.risky_users.confirm_compromised import (
        confirm_compromised_post_request_body as ccb,
    )
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.password_profile import PasswordProfile
    from msgraph.generated.models.reference_create import ReferenceCreate
    from msgraph.generated.models.user import User

    client = _client(server.base_url)
    user = client.users.by_user_id(MEGAN)
    await user.patch(User(account_enabled=False, password_profile=PasswordProfile(
        password="Sdk!Pass-w0rd-xyz", force_change_password_next_sign_in=True)))
    revoked = await user.revoke_sign_in_sessions.post()
    assert revoked.value is True
    await user.authentication.microsoft_authenticator_methods.by_microsoft_authenticator_authentication_method_id(  # noqa: E501
        "9f2b8e41-c7d3-4a65-b0e9-7d4c3a2b1e06").delete()
    await client.identity_protection.risky_users.confirm_compromised.post(
        ccb.ConfirmCompromisedPostRequestBody(user_ids=[MEGAN]))
    ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{MEGAN}")
    group = client.groups.by_group_id("5f0c8a3e-2b7d-4c41-9e55-0a1b2c3d4e5f")
    await group.members.ref.post(ref)
    try:
        await group.members.ref.post(ref)
    except ODataError as exc:
        assert exc.response_status_code == 400
        assert "already exist" in exc.error.message
    else:
        raise AssertionError("expected a 400 for an existing member")
    state = server.state()
    megan = next(u for u in state["users"] if u["id"] == MEGAN)
    assert megan["accountEnabled"] is False and megan["passwordChangeCount"] == 1
    assert megan["sessionsRevokedCount"] == 1
    assert "5f0c8a3e-2b7d-4c41-9e55-0a1b2c3d4e5f" in megan["memberOf"]
    assert server.tenant.check_password(MEGAN, "Sdk!Pass-w0rd-xyz")
    assert [e["status"] for e in server.requests()] == [204, 200, 204, 204, 204, 400]
