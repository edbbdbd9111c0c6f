"""Approval links: base64url(JSON claims) "." base64url(HMAC-SHA256(secret, claims)).

The claims name the run, the decision, a random nonce (only its digest is stored) and the
expiry; the token is never logged or journaled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
               expires_at: datetime) -> str:
    claims = _b64(json.dumps({"r": run_id, "d": decision, "n": nonce,
                              "e": int(expires_at.timestamp())},
                             separators=(",", ":")).encode("utf-8"))
    mac = hmac.new(secret, claims.encode("ascii"), hashlib.sha256).digest()
    return f"{claims}.{_b64(mac)}"


def read_token(secret: bytes, token: str, now: datetime | None = None) -> dict[str, Any]:
    """Verify the signature (constant time) and the expiry; return the claims."""
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
        str(claims["n"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenRefused("malformed", "the approval token is malformed") from exc
    if decision not in DECISIONS:
        raise TokenRefused("malformed", "the approval token names no decision")
    if (now or clock.now()) >= expires:
        raise TokenRefused("expired", f"the approval link expired at {expires.isoformat()}",
                           run_id=run_id)
    return {"runId": run_id, "decision": decision, "nonce": str(claims["n"]),
            "expiresAt": expires}


def links(services: Services, run_id: str, nonces: dict[str, str],
          expires_at: datetime) -> list[tuple[str, str]] | None:
    """Approve and deny links; None when no secret is configured."""
    secret = config.secret_of(services)
    if secret is None:
        return None
    host = services.settings.website_hostname
    base = (config.configured_base_url(services)
            or (f"https://{host}/api/approvals" if host else "/api/approvals"))
    # The token rides in the fragment: browsers never send it to the server with the
    # GET (so it is in no access log); the page posts it in the body on confirmation.
    return [(f"{'Approve' if d == 'approve' else 'Deny'} disruptive steps",
             f"{base}#token={make_token(secret, run_id, d, nonces[d], expires_at)}")
            for d in DECISIONS]
