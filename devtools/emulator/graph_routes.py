"""Graph dispatch: one route table built from the per-area routers; handler errors become
Graph-shaped error bodies."""

from __future__ import annotations

import uuid

from . import (
    graph_audit,
    graph_audit_query,
    graph_consents,
    graph_directory,
    graph_identity,
    graph_mail,
    graph_rbac,
    graph_security,
)
from .graph_common import Ctx, Router
from .messages import EmuRequest, EmuResponse, GraphError, graph_error_response
from .tenant import Tenant

ROUTER = Router()
for _r in (graph_directory.router, graph_mail.router, graph_identity.router,
           graph_security.router, graph_audit.router, graph_audit_query.router):
    ROUTER.routes.extend(_r.routes)
ROUTER.routes.extend(graph_rbac.router.routes)  # role management, service principals
ROUTER.routes.extend(graph_consents.router.routes)  # consents: grants, app role assignments


def dispatch_graph(req: EmuRequest, tenant: Tenant, config: dict) -> EmuResponse:
    """Route and run one Graph request (caller holds tenant.lock)."""
    ctx = Ctx(req, tenant, config)
    try:
        handler, params = ROUTER.resolve(req.method, req.version, req.segments)
        resp = handler(ctx, **params)
    except GraphError as exc:
        return graph_error_response(exc.status, exc.code, exc.message, req, exc.headers)
    request_id = str(uuid.uuid4())
    resp.headers.setdefault("request-id", request_id)
    resp.headers.setdefault("client-request-id", req.header("client-request-id") or request_id)
    if resp.status >= 400:
        resp.write = False
    if req.method.upper() != "GET" and resp.status < 300 and resp.write is False:
        # non-GET 2xx counts as a write unless the handler said it is a pure read
        resp.write = handler.__name__ not in _READ_ONLY_POSTS
    return resp


_READ_ONLY_POSTS = {"check_member_groups", "get_member_groups"}
