"""Transport-neutral request/response objects.

Direct HTTP calls and $batch items both become an EmuRequest so that they share one
routing, throttling and fault pipeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .timefmt import iso_seconds

DROP = object()
"""Sentinel response: close the connection without answering."""


@dataclass
class EmuRequest:
    """One logical request (a direct call or one $batch item)."""

    method: str
    path: str  # full path incl. version prefix, e.g. /v1.0/users/abc (decoded per segment)
    segments: list[str]  # decoded segments, version removed for Graph
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any
    origin: str  # http://127.0.0.1:PORT
    api: str = "graph"  # graph | exchange | control
    version: str = "v1.0"
    batch_id: int | None = None
    cmdlet: str | None = None
    params: dict[str, Any] | None = None
    raw_body_present: bool = False
    grant: Any = None  # authz.Grant of the bearer token, set where the token is checked
    hosted: Any = None  # tenancy.Hosted: the tenant the token is for (set with `grant`)
    auth_error: str | None = None  # why the token was refused (the 401's message)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class EmuResponse:
    """A response before it is written to HTTP or embedded in a $batch answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    write: bool = False  # the request changed tenant state

    @property
    def is_json(self) -> bool:
        return self.body is not None


class GraphError(Exception):
    """Raised by Graph handlers; becomes a Graph-shaped error response."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ExchangeError(Exception):
    """Raised by cmdlet handlers; becomes an Exchange admin API error response."""

    def __init__(
        self, status: int, code: str, message: str, exc_type: str = "", headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.exc_type = exc_type or f"Microsoft.Exchange.Management.{code}Exception"
        self.headers = headers or {}


def graph_error_response(
    status: int,
    code: str,
    message: str,
    req: EmuRequest | None = None,
    headers: dict | None = None,
    extra_inner: dict | None = None,
) -> EmuResponse:
    """Build an error exactly in Graph's shape, with request-id headers."""
    request_id = str(uuid.uuid4())
    client_request_id = (req.header("client-request-id") if req else None) or request_id
    inner = {
        "date": iso_seconds(),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    if extra_inner:
        inner.update(extra_inner)
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    hdrs = {
        "request-id": request_id,
        "client-request-id": client_request_id,
        "Content-Type": "application/json",
    }
    hdrs.update(headers or {})
    return EmuResponse(status, body, hdrs)


def exchange_error_response(
    status: int,
    code: str,
    message: str,
    exc_type: str = "",
    headers: dict | None = None,
) -> EmuResponse:
    """Build an Exchange admin API error: the message sits in details[] and innererror."""
    exc_type = exc_type or f"Microsoft.Exchange.Management.{code}Exception"
    body = {
        "error": {
            "code": code,
            "message": f"|{exc_type}|{message}",
            "details": [{"code": code, "target": "", "message": message}],
            "innererror": {
                "message": message,
                "type": exc_type,
                "internalException": {"message": message, "type": exc_type},
            },
        }
    }
    hdrs = {"Content-Type": "application/json", "request-id": str(uuid.uuid4())}
    hdrs.update(headers or {})
    return EmuResponse(status, body, hdrs)
