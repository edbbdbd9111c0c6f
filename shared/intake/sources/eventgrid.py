"""Event Grid envelopes (Event Grid schema and CloudEvents 1.0), single or an array.

Webhooks receive an array; each event's `data` (or CloudEvents `data_base64`) is unwrapped
and handed back to shape detection, so the inner source name is kept. One bad event is one
problem; the rest of the array still counts.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from shared.intake.sources.common import (
    MAX_JSON_STRING_CHARS,
    as_dict,
    as_list,
    clean_tenant,
    decode_json,
    norm,
    routed,
    signal_tenant,
)
from shared.intake.sources.errors import AlertError, Ignored, MalformedPayload
from shared.intake.sources.registry import Nested, Source, register
from shared.intake.sources.result import NormaliseResult, join_locator

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_HANDSHAKE_EVENTS = frozenset(
    {norm(VALIDATION_EVENT), norm("Microsoft.EventGrid.SubscriptionDeletedEvent")}
)
ENVELOPE_SOURCE = "eventgrid"
_TENANT_SOURCE = re.compile(r"/tenants/([^/]+)(?:/|$)", re.IGNORECASE)
"""Microsoft Graph partner events name their tenant in the CloudEvents `source`:
`/tenants/<tenant-id>/applications/<application-id>`
(https://learn.microsoft.com/azure/event-grid/security-alert-events,
https://learn.microsoft.com/azure/event-grid/partner-events-graph-api)."""


def is_event(value: Any) -> bool:
    """True for one Event Grid schema or CloudEvents 1.0 event object."""
    data = as_dict(value)
    if data is None:
        return False
    if "specversion" in data and "type" in data:
        return True
    return "eventType" in data and any(
        key in data for key in ("data", "dataVersion", "eventTime", "metadataVersion")
    )


def is_envelope(payload: Any) -> bool:
    """True for one event, or an array whose objects are events."""
    if isinstance(payload, list):
        objects = [item for item in payload if isinstance(item, dict)]
        return bool(objects) and all(is_event(item) for item in objects)
    return is_event(payload)


def _event_type(event: dict[str, Any]) -> str:
    value = event.get("eventType") if "eventType" in event else event.get("type")
    return value if isinstance(value, str) else ""


def is_eventgrid_validation(payload: Any) -> str | None:
    """The validationCode of a SubscriptionValidationEvent (single or in an array), else None.

    The HTTP layer answers `{"validationResponse": code}`; this never raises.
    """
    events = payload if isinstance(payload, list) else [payload]
    for event in events[:100]:
        data = as_dict(event)
        if data is None or norm(_event_type(data)) != norm(VALIDATION_EVENT):
            continue
        code = (as_dict(data.get("data")) or {}).get("validationCode")
        if isinstance(code, str) and code:
            return code
    return None


def unwrap_event(event: Any) -> Any:
    """The event's inner payload; `Ignored` for handshakes, `MalformedPayload` for bad data."""
    data = as_dict(event)
    if data is None or not is_event(data):
        raise MalformedPayload("Event Grid array item is not an event")
    if norm(_event_type(data)) in _HANDSHAKE_EVENTS:
        raise Ignored(f"Event Grid handshake event {_event_type(data)!r}")
    if data.get("data_base64") is not None:
        return _decode_base64(data.get("data_base64"))
    inner = data.get("data")
    if isinstance(inner, str):
        decoded = decode_json(inner)
        if not isinstance(decoded, (dict, list)):
            raise MalformedPayload("event data is a string that is not a JSON object or array")
        return decoded
    if not isinstance(inner, (dict, list)):
        raise MalformedPayload("event carries no data object")
    return inner


def _decode_base64(value: Any) -> Any:
    """CloudEvents `data_base64`: base64 of UTF-8 JSON."""
    if not isinstance(value, str) or len(value) > MAX_JSON_STRING_CHARS * 2:
        raise MalformedPayload("data_base64 is not a string of a sane size")
    try:
        raw = base64.b64decode(value, validate=True)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayload("data_base64 is not base64-encoded UTF-8 JSON") from None


def event_tenant(event: dict[str, Any]) -> str | None:
    """The tenant an event's envelope names (a Graph partner event's CloudEvents `source`);
    None for events whose source is an Azure resource or says nothing of a tenant."""
    source = event.get("source")
    match = _TENANT_SOURCE.match(source.strip()) if isinstance(source, str) else None
    return clean_tenant(match.group(1), "event source tenant") if match else None


def with_envelope_tenant(result: NormaliseResult, tenant: str | None) -> NormaliseResult:
    """Give the envelope's tenant to what its data produced without naming one; data that
    names another tenant than its envelope is refused (one event, one tenant)."""
    if tenant is None:
        return result
    named = {t for t in [*(signal_tenant(s) for s in result.signals),
                         *(c.tenant for c in result.user_changes)] if t}
    if named - {tenant}:
        raise MalformedPayload(f"the event's source names tenant {tenant} but its data names "
                               f"{', '.join(sorted(named - {tenant}))}")
    result.signals = [s if signal_tenant(s) else routed(s, tenant) for s in result.signals]
    result.user_changes = [c if c.tenant else dataclasses.replace(c, tenant=tenant)
                           for c in result.user_changes]
    return result


def from_eventgrid(payload: Any, dispatch: Callable[[Any], NormaliseResult]) -> NormaliseResult:
    """Unwrap each event and normalise its data with `dispatch` (shape detection)."""
    if isinstance(payload, list):
        events = as_list(payload, "Event Grid array") or []
        pairs = [(f"[{i}]", event) for i, event in enumerate(events)]
    else:
        pairs = [("$", payload)]
    result = NormaliseResult()
    for locator, event in pairs:
        try:
            inner = unwrap_event(event)
            tenant = event_tenant(event)
        except Ignored as exc:
            result.ignore(locator, str(exc))
            continue
        except AlertError as exc:
            result.problem(locator, exc, ENVELOPE_SOURCE)
            continue
        data_locator = join_locator(locator, "data")
        try:
            result.absorb(with_envelope_tenant(dispatch(inner), tenant), data_locator)
        except Ignored as exc:
            result.ignore(data_locator, str(exc))
        except AlertError as exc:
            result.problem(data_locator, exc, "unknown")
    return result


@register
class EventGridEnvelope(Source):
    """An Event Grid or CloudEvents envelope (one event or an array): each event's data is
    unwrapped and handed back to detection, so any source can arrive this way."""

    name = ENVELOPE_SOURCE
    level = "payload"

    @staticmethod
    def recognises(data: Any) -> bool:
        return is_envelope(data)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return from_eventgrid(data, nested.payload)
