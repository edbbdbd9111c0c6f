"""Entity-group transactions, encoded and decoded here instead of by the Tables SDK.

The SDK builds a transaction's multipart body and parses the answer with the standard
library's `email` package: in a storm that was a sixth of the worker's CPU, more than the
rest of the transaction's work. The wire format is small and documented (one change set in
one batch, each operation an HTTP request of its own; learn.microsoft.com/rest/api/
storageservices/performing-entity-group-transactions), so this module writes it directly
and sends it through the table client's own pipeline: the same authentication, retries,
transport and request hooks as every other Table request.

The answers and the errors keep the SDK's shapes (`submit_transaction`): a list with one
`{"etag": ...}` (or `{}`) per operation, and `TableTransactionError` with the failed
operation's `index`, `status_code` and `error_code`, so callers do not change.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

MAX_OPERATIONS = 100
"""A transaction holds at most 100 operations (the service's limit)."""
DATA_SERVICE_VERSION = "3.0"
INT32 = 2**31

_STATUS = re.compile(rb"(?<=\n)HTTP/1\.1 (\d{3})[^\r\n]*\r\n")
_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError, 403: ClientAuthenticationError,
    404: ResourceNotFoundError, 409: ResourceExistsError, 412: ResourceModifiedError,
}


class TransactionRefused(TableTransactionError):
    """The service refused an operation of the transaction (nothing of it was written)."""

    error_code: str | None


def entity_json(entity: Any) -> dict[str, Any]:
    """An entity's properties as the Table service's JSON, typed like the SDK types them:
    an int is Edm.Int32 (a larger one is refused, as the SDK refuses it), a datetime
    Edm.DateTime in UTC, a float Edm.Double, bytes Edm.Binary; None is left out."""
    out: dict[str, Any] = {}
    for name, value in dict(entity).items():
        if value is None:
            continue
        kind: str | None = None
        if isinstance(value, bool):
            pass
        elif isinstance(value, Enum):
            value = str(value)
        elif isinstance(value, str):
            pass
        elif isinstance(value, int):
            if not -INT32 <= value < INT32:
                raise TypeError(f"{value} is too large to be cast to type Edm.Int32")
        elif isinstance(value, float):
            kind = "Edm.Double"
            if math.isnan(value):
                value = "NaN"
            elif math.isinf(value):
                value = "Infinity" if value > 0 else "-Infinity"
        elif isinstance(value, datetime):
            kind = "Edm.DateTime"
            value = getattr(value, "tables_service_value", "") or _utc(value)
        elif isinstance(value, bytes):
            kind, value = "Edm.Binary", base64.b64encode(value).decode("ascii")
        elif isinstance(value, uuid.UUID):
            kind, value = "Edm.Guid", str(value)
        else:
            raise TypeError(f"a Table property cannot hold {type(value).__name__}")
        out[name] = value
        if kind:
            out[f"{name}@odata.type"] = kind
    return out


def _utc(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(value: Any) -> str:
    """A key inside the entity's address: quotes doubled (OData), then URL-encoded."""
    return quote(str(value).replace("'", "''"), safe="")


def _etag(options: dict[str, Any]) -> str:
    """If-Match for a conditional operation: the ETag when it must be unchanged, else *."""
    if options.get("match_condition") == MatchConditions.IfNotModified:
        etag = options.get("etag")
        if not etag:
            raise ValueError("IfNotModified needs the row's etag")
        return str(etag)
    return "*"


def _operation(table_url: str, op: Sequence[Any]) -> tuple[str, str, dict[str, str], bytes]:
    """One operation of the change set: method, address, headers, body."""
    kind, entity = str(op[0]).lower(), op[1]
    options: dict[str, Any] = dict(op[2]) if len(op) > 2 and op[2] else {}
    address = (f"{table_url}(PartitionKey='{_key(entity['PartitionKey'])}',"
               f"RowKey='{_key(entity['RowKey'])}')")
    json_body = {"Content-Type": "application/json", "Accept": "application/json"}
    if kind == "create":
        body = json.dumps(entity_json(entity)).encode()
        return "POST", table_url, {**json_body, "Prefer": "return-no-content"}, body
    if kind in ("upsert", "update"):
        method = "PUT" if options.get("mode") == UpdateMode.REPLACE else "PATCH"
        headers = dict(json_body)
        if kind == "update":  # an update needs the row; an upsert makes it when missing
            headers["If-Match"] = _etag(options)
        return method, address, headers, json.dumps(entity_json(entity)).encode()
    if kind == "delete":
        return "DELETE", address, {"Accept": "application/json",
                                   "If-Match": _etag(options)}, b""
    raise ValueError(f"unknown transaction operation {op[0]!r}")


def encode(table_url: str, ops: Sequence[Sequence[Any]]) -> tuple[str, bytes]:
    """The batch request's boundary and body for `ops` on the table at `table_url`."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts: list[bytes] = [
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, op in enumerate(ops):
        method, url, headers, body = _operation(table_url, op)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        parts.append(
            f"--{changeset}\r\nContent-Type: application/http\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: {index}\r\n\r\n"
            f"{method} {url} HTTP/1.1\r\n{head}DataServiceVersion: {DATA_SERVICE_VERSION}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body + b"\r\n")
    parts.append(f"--{changeset}--\r\n--{batch}--\r\n".encode())
    return batch, b"".join(parts)


def decode(body: bytes, count: int) -> list[dict[str, Any]]:
    """The answers of a 202 batch response: one `{"etag": ...}` (or `{}`) per operation;
    TableTransactionError for the operation the service refused (a failed change set is
    answered with that one response)."""
    found = list(_STATUS.finditer(body))
    answers: list[dict[str, Any]] = []
    for n, match in enumerate(found):
        end = found[n + 1].start() if n + 1 < len(found) else len(body)
        head, _, rest = body[match.end():end].partition(b"\r\n\r\n")
        status = int(match.group(1))
        headers = _headers(head)
        if not 200 <= status < 300:
            raise _part_error(status, headers, rest)
        answers.append({"etag": headers["etag"]} if "etag" in headers else {})
    if len(answers) != count:
        raise HttpResponseError(message=f"the transaction's answer holds {len(answers)} "
                                        f"responses for {count} operations")
    return answers


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _part_error(status: int, headers: dict[str, str], rest: bytes) -> TransactionRefused:
    """The refused operation as the SDK reports it: its index is the number before the
    first colon of the service's message ("1:The specified entity already exists...")."""
    code, message = headers.get("x-ms-error-code", ""), ""
    text = rest.split(b"\r\n--", 1)[0].strip()
    try:
        detail = json.loads(text.decode("utf-8", "replace")).get("odata.error", {})
        code = str(detail.get("code") or code)
        message = str((detail.get("message") or {}).get("value") or "")
    except (ValueError, AttributeError):
        message = text.decode("utf-8", "replace")[:1000]
    prefix = message.split(":", 1)[0]
    index = int(prefix) if prefix.isdigit() else 0
    exc = TransactionRefused(message=message or f"transaction refused ({status})",
                                index=index)
    exc.status_code = status
    exc.error_code = code or None
    exc.reason = code or str(status)
    return exc


async def submit(table: TableClient, ops: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Send `ops` as one entity-group transaction on `table` (all or nothing)."""
    if not ops:
        return []
    if len(ops) > MAX_OPERATIONS:
        raise ValueError(f"{len(ops)} operations: a transaction holds {MAX_OPERATIONS}")
    account = table.url.split("?", 1)[0].rstrip("/")
    boundary, body = encode(f"{account}/{table.table_name}", ops)
    request = HttpRequest(
        "POST", f"{account}/$batch", content=body,
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}",
                 "Accept": "application/json", "x-ms-version": table.api_version,
                 "DataServiceVersion": DATA_SERVICE_VERSION,
                 "MaxDataServiceVersion": f"{DATA_SERVICE_VERSION};NetFx"})
    # The table client's own pipeline (its generated client's send_request, the call the
    # SDK's submit_transaction makes): authentication, retries, transport and hooks.
    # (streamed: the pipeline's content decoder knows no multipart)
    response = await table._client.send_request(request, stream=True)
    await response.read()
    if response.status_code != 202:
        error = _ERRORS.get(response.status_code, HttpResponseError)
        raise error(response=response)
    return decode(response.content, len(ops))
