"""Fixtures for the safety features: services with approvals and notifications configured,
a loopback HTTP receiver that records what it is sent, and the app's HTTP functions."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions import runtime
from tests.conftest import make_settings
from tests.playbook.conftest import build_services

APPROVAL_SECRET = "approval-secret-for-tests-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789abcdef"
APPROVAL_BASE = "https://responder.example/api/approvals"
ADELE = "adele@contoso.com"
ADELE_ID = "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"


class Receiver:
    """A loopback HTTP server that answers 200 and keeps every request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def json(self, path: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests
                if path is None or r["path"] == path]

    def events(self, path: str = "/hook") -> list[str]:
        return [b["event"] for b in self.json(path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def safety_settings(azurite: Any, emulator: Any, **extra: str) -> Any:
    return make_settings(azurite, emulator, RESPONDER_APPROVAL_SECRET=APPROVAL_SECRET,
                         RESPONDER_WEBHOOK_SECRET=WEBHOOK_SECRET,
                         RESPONDER_APPROVAL_BASE_URL=APPROVAL_BASE, **extra)


@pytest.fixture
async def make_services(azurite, emulator) -> AsyncIterator[Any]:
    """Build services with policy overrides; injected into the functions; closed after."""
    made: list[Any] = []

    def make(*, settings: Any = None, **policy: Any) -> Any:
        svc = build_services(settings or safety_settings(azurite, emulator), **policy)
        runtime.use_services(svc)
        made.append(svc)
        return svc

    yield make
    runtime.use_services(None)
    for svc in made:
        await svc.close()


def notify_policy(receiver: Receiver | None = None, *, webhook: str | None = None,
                  teams: str | None = None, mail: bool = True) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if mail:
        cfg.update(socMailbox="soc@contoso.com", sender="responder@contoso.com")
    if webhook or receiver:
        cfg["webhookUrl"] = webhook or f"{receiver.url}/hook"
    if teams:
        cfg["teamsWebhookUrl"] = teams
    return {"notify": cfg}


def app_function(name: str) -> Any:
    """The user function of one of function_app's functions (get_functions is cached)."""
    import function_app
    from devtools.localhost import app_functions

    for fn in app_functions(function_app.app):
        if fn.get_function_name() == name:
            return fn.get_user_function()
    raise KeyError(name)


async def all_journal_rows(services: Any) -> list[dict[str, Any]]:
    await services.journal.ensure()
    return [dict(e) async for e in services.journal.table.list_entities()]
