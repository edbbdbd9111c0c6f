"""Approvals: privileged users' disruptive steps wait for a person to say yes.

- **Who is privileged** (`roles`): a user holding a directory role (found in Graph's
  `/users/{id}/transitiveMemberOf`, so roles held through role-assignable groups count) whose
  roleTemplateId is in `policy.privileged.roleTemplateIds`. A directoryRole whose template
  cannot be read counts as privileged (fail safe), and so does a user whose memberships
  cannot be read at all.
- **What waits** (`gating`): steps marked disruptive that are not in
  `policy.privileged.alwaysSafeSteps`. The rest of the run goes ahead at once (revoking
  sessions cannot make things worse).
- **The links** (`tokens`) carry a token: base64url(JSON claims) "." base64url(HMAC-SHA256(
  secret, claims)), secret from the app setting `RESPONDER_APPROVAL_SECRET` (`config`).
  Claims name the run, the decision, a random nonce (only its digest is stored) and the
  expiry; for a tenant other than the default, also the tenant, which the link names too
  (`?tenant=`): the approval is read only in that tenant's journal, and a token signed for
  another tenant is refused before any read (`decisions.services_for_link`). A token is
  single-use (`decisions`, `store`): deciding moves the approval row from `pending` with an
  ETag-conditional update, so a second use (or a concurrent double click) is refused.
  Tokens are never logged or journaled; they exist only in the notification that carries
  the links. The endpoint is anonymous, so a refused request is logged and
  counted (`refusal_counts`), never stored, and no request queries a partition (at most one
  point read of the approval row).
- **Expiry** (`escalation`) never drops an approval silently: `escalate_expired` (a timer,
  in every tenant: `escalate_every_tenant`) marks it expired, journals it, notifies
  everyone again, and resumes the run, which records the waiting steps as skipped and the
  run as failed. A click on an expired link escalates
  a still-pending approval at once (once per approval: the move out of `pending` is
  ETag-conditional).
- **The page** (`pages`): what functions/approvals_http.py serves.

This package re-exports what the runner, release, reports and the trigger adapters use.
"""

from __future__ import annotations

from shared.safety.approvals.config import (
    BASE_URL_SETTING,
    MIN_SECRET_CHARS,
    SECRET_SETTING,
    TRUST_HEADER_SETTING,
    secret_of,
)
from shared.safety.approvals.decisions import (
    cancel,
    decide,
    preview,
    refusal_counts,
    services_for_link,
)
from shared.safety.approvals.escalation import (
    TenantsEscalated,
    escalate_every_tenant,
    escalate_expired,
)
from shared.safety.approvals.gating import Gate, candidates, gate, open_approval
from shared.safety.approvals.pages import (
    PAGE_HEADERS,
    SELF_ASSERTED,
    TRUSTED,
    confirmation_page,
    describe_token,
    escape,
    page,
    who,
)
from shared.safety.approvals.roles import privileged_roles
from shared.safety.approvals.store import PARTITION, REFUSALS, Approval, get_approval
from shared.safety.approvals.tokens import DECISIONS, TokenRefused, links, make_token, read_token

__all__ = [
    "BASE_URL_SETTING", "DECISIONS", "MIN_SECRET_CHARS", "PAGE_HEADERS", "PARTITION",
    "REFUSALS", "SECRET_SETTING", "SELF_ASSERTED", "TRUSTED", "TRUST_HEADER_SETTING",
    "Approval", "Gate", "TenantsEscalated", "TokenRefused", "cancel", "candidates",
    "confirmation_page", "decide", "describe_token", "escalate_every_tenant",
    "escalate_expired", "escape", "gate", "get_approval", "links", "make_token",
    "open_approval", "page", "preview", "privileged_roles", "read_token", "refusal_counts",
    "secret_of", "services_for_link", "who",
]
