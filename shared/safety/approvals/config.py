"""The three app settings approvals read (typed fields of Settings), each behind one small
function that says what it means for approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.services import Services

SECRET_SETTING = "RESPONDER_APPROVAL_SECRET"  # noqa: S105 - a setting name
BASE_URL_SETTING = "RESPONDER_APPROVAL_BASE_URL"
TRUST_HEADER_SETTING = "RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER"
MIN_SECRET_CHARS = 32


def secret_of(services: Services) -> bytes | None:
    """The key that signs approval links; None when unset or too short to be safe."""
    value = services.settings.approval_secret
    return value.encode("utf-8") if len(value) >= MIN_SECRET_CHARS else None


def configured_base_url(services: Services) -> str:
    """The approvals endpoint's public URL as configured; "" when not set."""
    return services.settings.approval_base_url


def trusts_principal_header(services: Services) -> bool:
    """Whether App Service Authentication fronts the app, so its principal header is true."""
    return services.settings.approval_trust_principal_header
