"""Approval links: base64url(JSON claims) "." base64url(HMAC-SHA256(secret, claims)).

The claims name the run, the decision, a random nonce (only its digest is stored), the
expiry and, for a tenant other than the default, the tenant whose journal holds the run;
the token is never logged or journaled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shared.errors import ResponderError
from shared.safety.approvals import config
from shared.state import clock

if TYPE_CHECKING:
    from shared.services import Services

DECISIONS = ("approve", "deny")


class TokenRefused(ResponderError):
    """An approval token that is malformed, forged, expired, already used or unknown."""

    def __init__(self, reason: str, message: str, *, run_id: str | None = None,
                 status: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.run_id = run_id
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def nonce_digest(nonce: str) -> str:
    """What the approval row keeps of a nonce: enough to match a token, useless to forge one."""
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def make_token(secret: bytes, run_id: str, decision: str, nonce: str,
               expires_at: datetime, tenant: str | None = None) -> str:
    """`tenant`: the tenant whose journal holds the run (None: the default tenant). It is
    signed with the rest, so a link of one tenant cannot be presented as another's."""
    body: dict[str, Any] = {"r": run_id, "d": decision, "n": nonce,
                            "e": int(expires_at.timestamp())}
    if tenant:
        body["t"] = tenant
    claims = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
    mac = hmac.new(secret, claims.encode("ascii"), hashlib.sha256).digest()
    return f"{claims}.{_b64(mac)}"


def signed_claims(secret: bytes, token: str) -> dict[str, Any]:
    """Verify the signature (constant time) and return the claims; the expiry is not
    checked here (an expired link still names its run and tenant)."""
    if not token or len(token) > 2000 or token.count(".") != 1:
        raise TokenRefused("malformed", "the approval token is malformed")
    claims_text, mac_text = token.split(".")
    try:
        mac = _unb64(mac_text)
    except ValueError as exc:
        raise TokenRefused("malformed", "the approval token is malformed") from exc
    expected = hmac.new(secret, claims_text.encode("ascii", "replace"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise TokenRefused("forged", "the approval token's signature is not valid")
    try:
        claims = json.loads(_unb64(claims_text))
        run_id, decision = str(claims["r"]), str(claims["d"])
        expires = datetime.fromtimestamp(int(claims["e"]), UTC)
        nonce = str(claims["n"])
        tenant = claims.get("t")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenRefused("malformed", "the approval token is malformed") from exc
    if decision not in DECISIONS:
        raise TokenRefused("malformed", "the approval token names no decision")
    if tenant is not None and not isinstance(tenant, str):
        raise TokenRefused("malformed", "the approval token is malformed")
    return {"runId": run_id, "decision": decision, "nonce": nonce, "expiresAt": expires,
            "tenant": tenant or None}


def same_tenant(signed: str | None, presented: str | None) -> bool:
    """Whether the tenant a link presents is the one its token was signed for (no tenant on
    either side: the default tenant)."""
    return (signed or "").strip().lower() == (presented or "").strip().lower()


def read_token(secret: bytes, token: str, now: datetime | None = None, *,
               tenant: str | None = None) -> dict[str, Any]:
    """Verify the signature, that the token was made for `tenant` (the tenant whose journal
    is about to be read; None: the default) and the expiry; return the claims."""
    claims = signed_claims(secret, token)
    if not same_tenant(claims["tenant"], tenant):
        # checked before the expiry: another tenant's expired link escalates nothing here
        raise TokenRefused("wrong-tenant", "the approval token was not made for this tenant")
    expires: datetime = claims["expiresAt"]
    if (now or clock.now()) >= expires:
        raise TokenRefused("expired", f"the approval link expired at {expires.isoformat()}",
                           run_id=claims["runId"])
    return claims


def links(services: Services, run_id: str, nonces: dict[str, str],
          expires_at: datetime, tenant: str | None = None) -> list[tuple[str, str]] | None:
    """Approve and deny links; None when no secret is configured. A link of a tenant other
    than the default carries `tenant=<id>` (the page posts it back) and the same tenant in
    its signed token: the endpoint reads the approval in that tenant's journal only."""
    secret = config.secret_of(services)
    if secret is None:
        return None
    host = services.settings.website_hostname
    base = (config.configured_base_url(services)
            or (f"https://{host}/api/approvals" if host else "/api/approvals"))
    if tenant:
        base += ("&" if "?" in base else "?") + urlencode({"tenant": tenant})
    # The token rides in the fragment: browsers never send it to the server with the
    # GET (so it is in no access log); the page posts it in the body on confirmation.
    return [(f"{'Approve' if d == 'approve' else 'Deny'} disruptive steps",
             f"{base}#token={make_token(secret, run_id, d, nonces[d], expires_at, tenant)}")
            for d in DECISIONS]
