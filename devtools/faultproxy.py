"""A fault-injecting HTTP proxy in front of Azurite, for soaks that must survive storage faults.

One listener per storage service (blob, queue, table) on 127.0.0.1; `connection_string`
points the app at them. Each request is forwarded to Azurite on a persistent upstream
connection, or, with the configured probability (seeded, so a run can be repeated), one fault
is injected instead:

- `503`: `ServerBusy`, not forwarded (the service refused it, nothing changed);
- `500`: forwarded, then Azurite's answer is replaced by `OperationTimedOut` (the operation
  "may or may not have succeeded on the server side": here it did);
- `drop`: the connection is closed before the request is forwarded;
- `drop_after`: forwarded, then the connection is closed before the answer (applied, the
  client never hears so);
- `reset`: the connection is reset (TCP RST), not forwarded;
- `slow`: forwarded, the answer held back `slow_seconds`.

Error bodies have Azure Storage's shapes. Blob and Queue: an XML `<Error><Code>` /
`<Message>` document and the `x-ms-error-code` header ("Status and error codes",
https://learn.microsoft.com/rest/api/storageservices/status-and-error-codes2). Table: the
JSON `{"odata.error": {"code": ..., "message": {"lang": ..., "value": ...}}}` of
"Payload format for Table service operations"
(https://learn.microsoft.com/rest/api/storageservices/payload-format-for-table-service-operations;
the `lang`/`value` message object is MS-ODATAJSON 2.1.28). The codes and statuses are the
common ones: `ServerBusy` 503, `OperationTimedOut` 500, `InternalError` 500
(https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes).

Scripted faults (`script(...)`) hit the next matching requests, for targeted tests.
Every injected fault is logged with its `time.monotonic()` (shared by every process on
Linux), so a soak can tell which repeats a fault explains.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

SERVICES = ("blob", "queue", "table")
KINDS = ("503", "500", "drop", "drop_after", "reset", "slow")
_PARTITION = re.compile(r"PartitionKey='([^']*)'")


@dataclass
class Fault:
    """A scripted fault: the next `count` requests matching service/method/path get `kind`."""

    kind: str
    service: str | None = None
    method: str | None = None
    path_regex: str | None = None
    count: int = 1
    hits: int = 0

    def matches(self, service: str, method: str, path: str) -> bool:
        return (self.hits < self.count
                and (self.service is None or self.service == service)
                and (self.method is None or self.method.upper() == method.upper())
                and (self.path_regex is None or re.search(self.path_regex, path) is not None))


@dataclass
class FaultConfig:
    """Probability of a fault per request, per service, and the weights of the kinds."""

    rates: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0.0))
    kinds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 1.0))
    slow_seconds: float = 1.0


class _Request:
    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        self.method = parts[0] if parts else ""
        self.path = parts[1] if len(parts) > 1 else ""

    @property
    def partition(self) -> str | None:
        """A Table request's PartitionKey (from the entity's URL, or a new entity's body),
        so a soak can tell which run a fault touched."""
        found = _PARTITION.search(unquote(self.path))
        if found:
            return found.group(1)
        if self.method == "POST" and self.body[:1] == b"{":
            try:
                value = json.loads(self.body).get("PartitionKey")
            except ValueError:
                return None
            return value if isinstance(value, str) else None
        return None


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in head.split(b"\r\n")[1:]:
        if b":" in raw:
            k, v = raw.split(b":", 1)
            out[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return out


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    return head


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str],
                     *, no_body: bool = False) -> bytes:
    """The body after a head: by Content-Length, chunked, or (for an answer) none."""
    if no_body:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunks.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            data = await reader.readexactly(size + 2)
            chunks.append(data)
            if size == 0:
                return b"".join(chunks)  # no trailers from Azurite
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


def error_answer(service: str, status: int, code: str, message: str) -> bytes:
    """An Azure Storage error answer: XML for blob/queue, JSON odata.error for table."""
    request_id = str(uuid.uuid4())
    text = f"{message}\nRequestId:{request_id}\nTime:{formatdate(usegmt=True)}"
    if service == "table":
        body = json.dumps({"odata.error": {"code": code, "message": {
            "lang": "en-US", "value": text}}}).encode()
        ctype = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
    else:
        esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>{esc}</Message></Error>").encode()
        ctype = "application/xml"
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nx-ms-error-code: {code}\r\n"
            f"x-ms-request-id: {request_id}\r\nx-ms-version: 2021-12-02\r\n"
            f"Date: {formatdate(usegmt=True)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode("latin-1") + body


class FaultProxy:
    """Three loopback listeners (blob, queue, table) forwarding to Azurite's ports, with
    seeded fault injection. Runs its own event loop in a thread: `start()` / `stop()`."""

    def __init__(self, upstream: dict[str, int], account: str, key: str, *, seed: int = 0,
                 config: FaultConfig | None = None) -> None:
        self.upstream = upstream
        self.account = account
        self.key = key
        self.config = config or FaultConfig()
        self.enabled = False
        self.ports: dict[str, int] = {}
        self.faults: list[dict[str, Any]] = []
        """Injected faults: {"t": monotonic, "service", "kind", "method", "path",
        "partition" (Table only)}."""
        self.requests = Counter[str]()
        self._rng = random.Random(seed)
        self._script: list[Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []

    @classmethod
    def for_azurite(cls, azurite: Any, **kw: Any) -> FaultProxy:
        from devtools.azurite import ACCOUNT, DEV_KEY

        return cls({"blob": azurite.blob_port, "queue": azurite.queue_port,
                    "table": azurite.table_port}, ACCOUNT, DEV_KEY, **kw)

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={self.key};"
                f"BlobEndpoint={host}:{self.ports['blob']}/{self.account};"
                f"QueueEndpoint={host}:{self.ports['queue']}/{self.account};"
                f"TableEndpoint={host}:{self.ports['table']}/{self.account};")

    # control (any thread) -------------------------------------------------------------------
    def configure(self, *, enabled: bool | None = None, rates: dict[str, float] | None = None,
                  kinds: dict[str, float] | None = None,
                  slow_seconds: float | None = None) -> None:
        with self._lock:
            if enabled is not None:
                self.enabled = enabled
            if rates is not None:
                self.config.rates = {**self.config.rates, **rates}
            if kinds is not None:
                unknown = set(kinds) - set(KINDS)
                if unknown:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
                self.config.kinds = dict(kinds)
            if slow_seconds is not None:
                self.config.slow_seconds = slow_seconds

    def script(self, kind: str, *, service: str | None = None, method: str | None = None,
               path_regex: str | None = None, count: int = 1) -> Fault:
        """Inject `kind` into the next `count` matching requests (even while disabled)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {KINDS}")
        fault = Fault(kind, service, method, path_regex, count)
        with self._lock:
            self._script.append(fault)
        return fault

    def fault_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f"{f['service']}:{f['kind']}" for f in self.faults))

    def _draw(self, service: str, req: _Request) -> str | None:
        with self._lock:
            self.requests[service] += 1
            for fault in self._script:
                if fault.matches(service, req.method, req.path):
                    fault.hits += 1
                    kind: str | None = fault.kind
                    break
            else:
                kind = None
                rate = self.config.rates.get(service, 0.0)
                if self.enabled and rate > 0 and self._rng.random() < rate:
                    names = [k for k, w in self.config.kinds.items() if w > 0]
                    weights = [self.config.kinds[k] for k in names]
                    kind = self._rng.choices(names, weights)[0] if names else None
            if kind is not None:
                self.faults.append({"t": time.monotonic(), "service": service, "kind": kind,
                                    "method": req.method, "path": req.path.split("?")[0],
                                    "partition": req.partition if service == "table" else None})
            return kind

    # serving ----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            for service in SERVICES:
                server = loop.run_until_complete(asyncio.start_server(
                    functools.partial(self._client, service), "127.0.0.1", 0))
                self._servers.append(server)
                self.ports[service] = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            for server in self._servers:
                server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _client(self, service: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        up_reader: asyncio.StreamReader | None = None
        up_writer: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                body = await _read_body(reader, _headers(head))
                req = _Request(head, body)
                kind = self._draw(service, req)
                if kind == "503":
                    writer.write(error_answer(service, 503, "ServerBusy",
                                              "The server is busy."))
                    await writer.drain()
                    continue
                if kind == "drop":
                    return
                if kind == "reset":
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if up_writer is None or up_writer.is_closing():
                    up_reader, up_writer = await asyncio.open_connection(
                        "127.0.0.1", self.upstream[service])
                assert up_reader is not None
                up_writer.write(req.head + req.body)
                await up_writer.drain()
                answer_head = await _read_head(up_reader)
                if answer_head is None:
                    return
                status = int(answer_head.split(b" ", 2)[1])
                no_body = req.method == "HEAD" or status in (204, 304) or status < 200
                answer = answer_head + await _read_body(up_reader, _headers(answer_head),
                                                        no_body=no_body)
                if kind == "drop_after":
                    return
                if kind == "500":
                    answer = error_answer(service, 500, "OperationTimedOut",
                                          "Operation could not be completed within the "
                                          "specified time.")
                if kind == "slow":
                    await asyncio.sleep(self.config.slow_seconds)
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None and not w.is_closing():
                    w.close()
