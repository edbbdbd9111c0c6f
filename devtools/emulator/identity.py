"""The Microsoft identity platform token endpoint, for the client credentials grant with a
federated credential: `POST /{tenant}/oauth2/v2.0/token`.

The request (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow,
"Third case: Access token request with a federated credential") is form-encoded:
`grant_type=client_credentials`, `client_id`, `scope` (one resource's `/.default`),
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
`client_assertion`. azure-identity's ClientAssertionCredential sends exactly these five
fields (azure/identity/_internal/aad_client_base.py, `_get_jwt_assertion_request`); it adds
`claims` only when asked for CAE or a claims challenge.

Here the assertion is the app's user-assigned managed identity token: Entra checks its
`iss`, `sub` and `aud` against the app's federated identity credential (issuer
`https://login.microsoftonline.com/{tenant}/v2.0`, subject = the identity's principal id,
audience `api://AzureADTokenExchange`), exactly and case-sensitively.
https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity

Success is `{"token_type": "Bearer", "expires_in": ..., "access_token": ...}`; an error is
`{"error", "error_description" (starts with the AADSTS code), "error_codes", "timestamp",
"trace_id", "correlation_id"}` plus `error_uri` (the error code reference page shows it).
https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
The flow page shows 400 for an error; for a failed client authentication (`invalid_client`)
the emulator answers 401, as RFC 6749 section 5.2 allows. The pages do not say which
status each AADSTS code comes with."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import authz

if TYPE_CHECKING:
    from .pipeline import Emulator
    from .tenancy import Hosted

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 (an audience URI)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
RESOURCES = {authz.GRAPH_AUDIENCE: "graph", authz.EXCHANGE_AUDIENCE: "exchange"}
EXCHANGE_ROLES = frozenset({"Exchange.ManageAsApp", "full_access_as_app"})
"""App roles of the Office 365 Exchange Online resource; every other role is Graph's."""


class TokenError(Exception):
    """An Entra error answer: OAuth `error`, the AADSTS number and its description."""

    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(f"AADSTS{code}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}\r\n"
                                 f"Trace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                                 f"Timestamp: {now}",
            "error_codes": [self.code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


def _missing(name: str) -> TokenError:
    # AADSTS900144 (reference-error-codes): a required body parameter is missing.
    return TokenError(400, "invalid_request", 900144,
                      f"The request body must contain the following parameter: '{name}'.")


def resource_roles(roles: Iterable[str], resource: str) -> list[str]:
    """The app roles a token for this resource carries: a token is for one resource and
    holds that resource's roles only."""
    if resource == "exchange":
        return sorted(r for r in roles if r in EXCHANGE_ROLES or r.startswith("Exchange."))
    return sorted(r for r in roles if r not in EXCHANGE_ROLES and not r.startswith("Exchange."))


def _resource_of(scope: str) -> str:
    scopes = scope.split()
    if len(scopes) > 1:
        # AADSTS700022 InvalidMultipleResourcesScope; the flow page: "All scopes included
        # must be for a single resource".
        resources = {s.rsplit("/", 1)[0].lower() for s in scopes}
        if len(resources) > 1:
            raise TokenError(400, "invalid_scope", 700022,
                             "The provided value for the input parameter scope isn't valid "
                             "because it contains more than one resource.")
    first = scopes[0]
    resource, _, leaf = first.rpartition("/")
    if leaf != ".default" or resource.lower() not in RESOURCES:
        # AADSTS70011 InvalidScope (the flow page's own error example); the client
        # credentials grant takes `{resource}/.default` only.
        raise TokenError(400, "invalid_scope", 70011,
                         f"The provided value for the input parameter 'scope' is not valid. "
                         f"The scope {first} is not valid.")
    return RESOURCES[resource.lower()]


def _check_assertion(assertion: str, federated: dict[str, Any] | None) -> None:
    """Entra's checks of a federated credential's assertion: JWT, in its valid time range,
    and iss / sub / aud equal to one federated identity credential of the app."""
    payload = authz.read_jwt(assertion)
    if payload is None:
        # AADSTS50027 InvalidJwtToken: "token format isn't proper".
        raise TokenError(401, "invalid_client", 50027,
                         "Invalid JWT token. The client assertion is not a well-formed JWT.")
    exp = payload.get("exp")
    if isinstance(exp, int | float) and exp <= time.time():
        # AADSTS700024 is what Entra answers for an expired client assertion; the error code
        # reference does not list it.
        raise TokenError(401, "invalid_client", 700024,
                         "Client assertion is not within its valid time range.")
    if not federated:
        raise TokenError(401, "invalid_client", 70021,
                         "No matching federated identity record found for presented "
                         "assertion.")
    audiences = federated.get("audiences") or federated.get("audience") or \
        [TOKEN_EXCHANGE_AUDIENCE]
    if isinstance(audiences, str):
        audiences = [audiences]
    aud = payload.get("aud")
    presented = aud if isinstance(aud, list) else [aud]
    # AADSTS700211/700212/700213 name the claim that matched no federated identity
    # credential (issuer, audience, subject). The code reference does not list them; the
    # workload identity pages say a mismatch fails the token exchange.
    if payload.get("iss") != federated.get("issuer"):
        raise TokenError(401, "invalid_client", 700211,
                         f"No matching federated identity record found for presented "
                         f"assertion issuer '{payload.get('iss')}'.")
    if not any(a in audiences for a in presented):
        raise TokenError(401, "invalid_client", 700212,
                         f"No matching federated identity record found for presented "
                         f"assertion audience '{aud}'.")
    if payload.get("sub") != federated.get("subject"):
        raise TokenError(401, "invalid_client", 700213,
                         f"No matching federated identity record found for presented "
                         f"assertion subject '{payload.get('sub')}'.")


def _form_value(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise _missing(name)
    return value


def token_request(emu: Emulator, tenant_name: str, form: dict[str, str]
                  ) -> tuple[Hosted | None, int, dict[str, Any]]:
    """Answer one token request: (the tenant, HTTP status, JSON body)."""
    hosted = emu.tenancy.find_by_name(tenant_name)
    try:
        if hosted is None:
            # AADSTS90002 InvalidTenantName: the tenant is not found.
            raise TokenError(400, "invalid_request", 90002,
                             f"Tenant '{tenant_name}' not found. Check to make sure you have "
                             "the correct tenant ID and are signing into the correct cloud.")
        grant_type = _form_value(form, "grant_type")
        if grant_type != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{grant_type}'.")
        client_id = _form_value(form, "client_id")
        resource = _resource_of(_form_value(form, "scope"))
        with emu.lock:
            federated = emu.config.get("federated")
            app_client_id = emu.config.get("app_client_id")
        with hosted.lock:
            consented, permissions, generation = (hosted.consented, hosted.permissions,
                                                  hosted.generation)
        if client_id != app_client_id or not consented:
            # AADSTS700016: the app has no service principal in this tenant: never
            # consented, consent withdrawn (enterprise app deleted), or a wrong client id.
            # The OAuth error is unauthorized_client ("isn't added to the ... tenant").
            raise TokenError(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in "
                             f"the directory '{hosted.tenant.display_name}'. The app is not "
                             "installed in this tenant (no admin consent, or it was removed)"
                             ", or the request went to the wrong tenant.")
        if form.get("client_secret"):
            # AADSTS7000215: the app has no secret; its credential is federated.
            raise TokenError(401, "invalid_client", 7000215,
                             "Invalid client secret provided.")
        if not form.get("client_assertion"):
            raise TokenError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise TokenError(400, "invalid_request", 90023,
                             "The authentication service request isn't valid: "
                             f"client_assertion_type must be '{JWT_BEARER}'.")
        _check_assertion(form["client_assertion"], federated)
    except TokenError as exc:
        return hosted, exc.status, exc.body()
    if permissions is None:
        full = emu.authority.app_grant()
        roles = set(full[0] if full else ()) | emu.authority.consented
    else:
        roles = set(permissions)
    token = emu.authority.issue(
        hosted.tenant, resource_roles(roles, resource), audience=resource,
        generation=generation, app_id=client_id, lifetime=TOKEN_LIFETIME,
        strict_audience=True)
    return hosted, 200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                         "access_token": token}
