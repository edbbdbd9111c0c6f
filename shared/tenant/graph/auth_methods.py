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

TYPED_PATHS: dict[str, str] = {
    "#microsoft.graph.phoneAuthenticationMethod": "phoneMethods",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticatorMethods",
    "#microsoft.graph.fido2AuthenticationMethod": "fido2Methods",
    "#microsoft.graph.softwareOathAuthenticationMethod": "softwareOathMethods",
    "#microsoft.graph.emailAuthenticationMethod": "emailMethods",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporaryAccessPassMethods",
}


def method_kind(method: dict[str, Any]) -> str:
    """A short kind name: `microsoftAuthenticator`, `phone`, `password`, ..."""
    odata = str(method.get("@odata.type") or "")
    return odata.rsplit(".", 1)[-1].replace("AuthenticationMethod", "") or "unknown"


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
                               version="beta", permission=PERM_PER_USER_MFA)
    return (body or {}).get("perUserMfaState")


async def enforce_per_user_mfa(graph: GraphClient, user_id: str, state: str = "enforced") -> None:
    await graph.request("PATCH", build_path("/users/{}/authentication/requirements", user_id),
                        body={"perUserMfaState": state}, version="beta", priority=True,
                        permission=PERM_PER_USER_MFA)
