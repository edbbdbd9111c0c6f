"""Shared machinery for Graph handlers: the route table, the per-request context, and
OData collection responses (filter, orderby, top, skiptoken paging, select)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .messages import EmuRequest, EmuResponse, GraphError
from .odata import FilterError, compile_filter
from .tenant import Tenant
from .timefmt import looks_like_dt, parse_dt

Handler = Callable[..., EmuResponse]


@dataclass
class Route:
    method: str
    parts: list[str]
    handler: Handler
    versions: tuple[str, ...]


class Router:
    """Matches decoded path segments; literal segments are case-insensitive."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, versions: tuple[str, ...] = ("v1.0", "beta")):
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method.upper(), pattern.strip("/").split("/"), fn, versions))
            return fn

        return deco

    def resolve(self, method: str, version: str, segs: list[str]) -> tuple[Handler, dict]:
        method_mismatch = version_mismatch = False
        best_depth = 0
        for route in self.routes:
            if len(route.parts) != len(segs):
                best_depth = max(best_depth, _prefix_depth(route.parts, segs))
                continue
            params: dict[str, str] = {}
            ok = True
            for i, (part, seg) in enumerate(zip(route.parts, segs, strict=True)):
                if part.startswith("{"):
                    params[part[1:-1]] = seg
                elif part.lower() != seg.lower():
                    ok = False
                    best_depth = max(best_depth, i)
                    break
            if not ok:
                continue
            if route.method != method.upper():
                method_mismatch = True
                continue
            if version not in route.versions:
                version_mismatch = True
                continue
            return route.handler, params
        if method_mismatch and not version_mismatch:
            raise GraphError(
                405, "Request_BadRequest",
                f"The HTTP method '{method}' is not allowed for the resource.",
            )
        if version_mismatch:
            best_depth = len(segs) - 1
        seg = segs[min(best_depth, len(segs) - 1)] if segs else ""
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{seg}'.")


def _prefix_depth(parts: list[str], segs: list[str]) -> int:
    depth = 0
    for part, seg in zip(parts, segs, strict=False):
        if part.startswith("{") or part.lower() == seg.lower():
            depth += 1
        else:
            break
    return min(depth, len(segs) - 1) if len(parts) < len(segs) else depth


def encode_skiptoken(offset: int) -> str:
    raw = json.dumps({"o": offset}).encode()
    return "RFNwdAIA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        body = token[len("RFNwdAIA"):] if token.startswith("RFNwdAIA") else token
        body += "=" * (-len(body) % 4)
        return int(json.loads(base64.urlsafe_b64decode(body))["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphError(400, "BadRequest", "The $skiptoken is invalid.") from exc


@dataclass
class Ctx:
    """Everything a Graph handler needs; handlers run under tenant.lock."""

    req: EmuRequest
    tenant: Tenant
    config: dict[str, Any]

    # ---------------------------------------------------------------- responses
    def json(self, body: Any, status: int = 200, write: bool = False) -> EmuResponse:
        return EmuResponse(status, body, {"Content-Type": "application/json"}, write=write)

    def no_content(self, write: bool = True, status: int = 204) -> EmuResponse:
        return EmuResponse(status, None, {}, write=write)

    def context_url(self, fragment: str) -> str:
        return f"{self.req.origin}/{self.req.version}/$metadata#{fragment}"

    def entity(self, fragment: str, item: dict) -> EmuResponse:
        body = {"@odata.context": self.context_url(fragment + "/$entity")}
        body.update(self.select([item])[0])
        return self.json(body)

    def body_dict(self) -> dict:
        body = self.req.body
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        return body

    # ---------------------------------------------------------------- lookups
    def user(self, key: str) -> dict:
        user = self.tenant.find_user(key)
        if user is None:
            raise GraphError(
                404, "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return user

    def mailbox(self, user: dict) -> dict:
        if not user.get("mailbox"):
            raise GraphError(
                404, "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        return user["mailbox"]

    # ---------------------------------------------------------------- OData
    def select(self, items: list[dict]) -> list[dict]:
        sel = self.req.query.get("$select")
        if not sel:
            return items
        wanted = {s.strip().lower() for s in sel.split(",") if s.strip()}
        wanted |= {"id", "@odata.type"}
        return [{k: v for k, v in it.items() if k.lower() in wanted} for it in items]

    def collection(
        self,
        items: Iterable[dict],
        fragment: str,
        *,
        filter_fields: Iterable[str] | None = None,
        page_key: str | None = None,
        default_page: int = 100,
        max_top: int = 999,
    ) -> EmuResponse:
        """Filter, order, page and select a list the way Graph does."""
        q = self.req.query
        sizes = self.config.get("page_sizes") or {}
        default_page = int(sizes.get(page_key or fragment, default_page))
        allowed = list(filter_fields) if filter_fields is not None else None
        try:
            pred = compile_filter(q.get("$filter"), allowed)
            data = [it for it in items if pred(it)]
        except FilterError as exc:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {exc}") from exc
        if q.get("$orderby"):
            data = _order(data, q["$orderby"], allowed)
        top = default_page
        if q.get("$top") is not None:
            try:
                top = int(q["$top"])
            except ValueError as exc:
                raise GraphError(400, "BadRequest", f"Invalid $top value '{q['$top']}'.") from exc
            if top < 1 or top > max_top:
                raise GraphError(
                    400, "BadRequest",
                    f"Invalid page size specified: '{top}'. Must be between 1 and {max_top}.",
                )
        offset = decode_skiptoken(q["$skiptoken"]) if q.get("$skiptoken") else 0
        page = data[offset: offset + top]
        body: dict[str, Any] = {"@odata.context": self.context_url(fragment)}
        if str(q.get("$count", "")).lower() == "true":
            body["@odata.count"] = len(data)
        if offset + top < len(data):
            body["@odata.nextLink"] = self.next_link(offset + top)
        body["value"] = self.select(page)
        return self.json(body)

    def next_link(self, offset: int) -> str:
        query = {k: v for k, v in self.req.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = encode_skiptoken(offset)
        path = "/".join(quote(s, safe="@'!$&()*+,;=:~") for s in self.req.segments)
        qs = urlencode(query, quote_via=quote, safe="$'(),:")
        return f"{self.req.origin}/{self.req.version}/{path}?{qs}"


_ORDER_RE = re.compile(r"^\s*([A-Za-z][\w/]*)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def _order(data: list[dict], spec: str, allowed: list[str] | None) -> list[dict]:
    m = _ORDER_RE.match(spec)
    if not m:
        raise GraphError(400, "BadRequest", f"Invalid $orderby expression '{spec}'.")
    field, direction = m.group(1), (m.group(2) or "asc").lower()
    if allowed is not None:
        canon = {a.lower(): a for a in allowed}.get(field.lower())
        if canon is None:
            raise GraphError(400, "BadRequest", f"Unsupported $orderby property '{field}'.")
        field = canon

    def key(item: dict) -> tuple:
        v = item.get(field)
        if v is None:
            return (0, "")
        if looks_like_dt(v):
            return (1, parse_dt(v).isoformat())
        return (1, v if not isinstance(v, str) else v.lower())

    return sorted(data, key=key, reverse=direction == "desc")
