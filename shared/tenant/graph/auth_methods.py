"""Authentication methods and per-user MFA.

Deletion must use the typed path of each method kind (the generic delete is delegated
only); the password method can never be deleted.
"""

from __future__ import annotations

from typing import Any

from shared.tenant.graph.client import GraphClient, build_path

PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"  # noqa: S105 - a fixed id
PERM_METHODS_READ = "UserAuthenticationMethod.Read.All"
PERM_METHODS_WRITE = "UserAuthenticationMethod.ReadWrite.All"
PERM_PER_USER_MFA = "Policy.ReadWrite.AuthenticationMethod"
# reading per-user MFA needs less than writing it: https://learn.microsoft.com/graph/api/authentication-get
PERM_PER_USER_MFA_READ = "Policy.Read.All"

TYPED_PATHS: dict[str, str] = {
    "#microsoft.graph.phoneAuthenticationMethod": "phoneMethods",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticatorMethods",
    "#microsoft.graph.fido2AuthenticationMethod": "fido2Methods",
    "#microsoft.graph.softwareOathAuthenticationMethod": "softwareOathMethods",
    "#microsoft.graph.emailAuthenticationMethod": "emailMethods",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporaryAccessPassMethods",
}


UNDATED_KINDS = frozenset({"phone", "email", "softwareOath"})
"""Kinds whose `createdDateTime` may be absent or null: the base authenticationMethod type
now has the property, but the docs do not say it is filled for these (older copies of the
phone, email and software OATH pages do not list it at all), so their registration is
dated from the directory audit log instead.
https://learn.microsoft.com/en-us/graph/api/resources/authenticationMethod"""

PHONE_DELETE_ORDER = {"alternateMobile": 0, "office": 1, "mobile": 2}
"""A user can't have an alternateMobile number without a mobile number, so the alternate
goes first; a phone that is the default MFA method can't be deleted while it is default.
https://learn.microsoft.com/graph/api/phoneauthenticationmethod-delete
The error Graph returns for either refusal is not documented."""


def method_kind(method: dict[str, Any]) -> str:
    """A short kind name: `microsoftAuthenticator`, `phone`, `password`, ..."""
    odata = str(method.get("@odata.type") or "")
    return odata.rsplit(".", 1)[-1].replace("AuthenticationMethod", "") or "unknown"


def known(method: dict[str, Any]) -> bool:
    """A kind this code can judge: the password or one with a typed delete path."""
    return method.get("id") == PASSWORD_METHOD_ID or \
        str(method.get("@odata.type")) in TYPED_PATHS


def delete_order(method: dict[str, Any]) -> int:
    """Sort key for deletions: non-phones, then alternate mobile, office, mobile."""
    if method_kind(method) != "phone":
        return -1
    return PHONE_DELETE_ORDER.get(str(method.get("phoneType")), 1)


def deletable(method: dict[str, Any]) -> bool:
    return method.get("id") != PASSWORD_METHOD_ID and \
        str(method.get("@odata.type")) in TYPED_PATHS


async def list_methods(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    return await graph.list_all(build_path("/users/{}/authentication/methods", user_id),
                                permission=PERM_METHODS_READ)


async def delete_method(graph: GraphClient, user_id: str, method: dict[str, Any]) -> None:
    """Delete one method through its typed path. Raises ValueError for the password."""
    if not deletable(method):
        raise ValueError("this authentication method cannot be deleted")
    segment = TYPED_PATHS[str(method["@odata.type"])]
    await graph.request(
        "DELETE",
        build_path("/users/{}/authentication/" + segment + "/{}", user_id, str(method["id"])),
        priority=True, permission=PERM_METHODS_WRITE,
        role="Privileged Authentication Administrator (for admins)",
    )


async def get_per_user_mfa(graph: GraphClient, user_id: str) -> str | None:
    body = await graph.request("GET", build_path("/users/{}/authentication/requirements",
                                                 user_id),
                               version="beta", permission=PERM_PER_USER_MFA_READ)
    return (body or {}).get("perUserMfaState")


async def enforce_per_user_mfa(graph: GraphClient, user_id: str, state: str = "enforced") -> None:
    await graph.request("PATCH", build_path("/users/{}/authentication/requirements", user_id),
                        body={"perUserMfaState": state}, version="beta", priority=True,
                        permission=PERM_PER_USER_MFA)
