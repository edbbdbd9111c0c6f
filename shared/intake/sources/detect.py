"""Shape detection: which source sent this parsed JSON payload, then dispatch to its normaliser.

`normalise` is the one entry point the HTTP, Event Grid, Event Hub and timer functions call.
It raises only `AlertError` subclasses: `UnknownShape` when nothing matches, `PayloadTooLarge`
for oversized batches. Per-item failures come back as problems, never as exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shared.intake.sources import diagnostics, monitor, sentinel
from shared.intake.sources import graph_detections as graph
from shared.intake.sources.common import MAX_JSON_STRING_CHARS, as_dict, as_list, norm
from shared.intake.sources.errors import AlertError, Ignored, MalformedPayload, UnknownShape
from shared.intake.sources.eventgrid import from_eventgrid, is_envelope
from shared.intake.sources.result import NormaliseResult
from shared.models import RiskSignal

MAX_DEPTH = 4
"""Envelopes inside envelopes deeper than this are refused (no payload needs more)."""

Converter = Callable[[Any], RiskSignal | NormaliseResult]

_ODATA_TYPES: dict[str, tuple[str, Converter]] = {
    "microsoftgraphriskdetection": (graph.SOURCE_DETECTION, graph.from_risk_detection),
    "microsoftgraphriskyuser": (graph.SOURCE_RISKY_USER, graph.from_risky_user),
    "microsoftgraphsecurityalert": (graph.SOURCE_ALERT, graph.from_security_alert),
}


def normalise(payload: Any) -> NormaliseResult:
    """Recognise the payload's source and turn it into signals, problems and ignores.

    Accepts parsed JSON (dict or list) or JSON text/bytes. Raises `AlertError` only.
    """
    return _dispatch(payload, 0)


def _dispatch(payload: Any, depth: int) -> NormaliseResult:
    if depth > MAX_DEPTH:
        raise MalformedPayload("envelopes are nested too deeply")
    if depth == 0 and isinstance(payload, (str, bytes, bytearray)):
        payload = _parse_text(payload)
    if isinstance(payload, list):
        return _dispatch_list(payload, depth)
    data = as_dict(payload)
    if data is None:
        raise UnknownShape(f"expected a JSON object or array, got {type(payload).__name__}")
    if isinstance(data.get("records"), list):
        return diagnostics.from_records(data)
    if is_envelope(data):
        return from_eventgrid(data, lambda inner: _dispatch(inner, depth + 1))
    if monitor.is_common_alert(data):
        return monitor.from_log_alert(data)
    if sentinel.incident_of(data) is not None:
        return sentinel.from_sentinel_incident(data)
    items = as_list(data.get("value"), "value")
    if items is not None:
        return _dispatch_items([(f"value[{i}]", item) for i, item in enumerate(items)])
    if classify(data) is None:
        raise UnknownShape(f"unrecognised alert payload; top-level keys: {_keys(data)}")
    return _dispatch_items([("$", data)])


def _dispatch_list(payload: list[Any], depth: int) -> NormaliseResult:
    items = as_list(payload, "payload array") or []
    if is_envelope(items):
        return from_eventgrid(items, lambda inner: _dispatch(inner, depth + 1))
    return _dispatch_items([(f"[{i}]", item) for i, item in enumerate(items)])


def _dispatch_items(pairs: list[tuple[str, Any]]) -> NormaliseResult:
    """Normalise single items (collection members); each failure is that item's problem."""
    result = NormaliseResult()
    for locator, item in pairs:
        found = classify(item)
        if found is None:
            keys = _keys(item) if isinstance(item, dict) else type(item).__name__
            result.problem(locator, UnknownShape(f"unrecognised item: {keys}"), "unknown")
            continue
        source, convert = found
        try:
            produced = convert(item)
        except Ignored as exc:
            result.ignore(locator, str(exc))
            continue
        except AlertError as exc:
            result.problem(locator, exc, source)
            continue
        if isinstance(produced, NormaliseResult):
            result.absorb(produced, locator)
        else:
            result.signals.append(produced)
    return result


def classify(item: Any) -> tuple[str, Converter] | None:
    """The (source name, converter) for one item, or None when no source matches."""
    data = as_dict(item)
    if data is None:
        return None
    odata = _ODATA_TYPES.get(norm(data.get("@odata.type")))
    if odata is not None:
        return odata
    if "category" in data and "properties" in data:
        return diagnostics.record_source(data), diagnostics.from_record
    if "lifecycleEvent" in data or (
        "subscriptionId" in data and ("changeType" in data or "resource" in data)
    ):
        return graph.SOURCE_NOTIFICATION, graph.from_change_notification
    if "riskEventType" in data or (
        "userId" in data and ("riskLevel" in data or "detectedDateTime" in data)
    ):
        return graph.SOURCE_DETECTION, graph.from_risk_detection
    if "riskLastUpdatedDateTime" in data or (
        "riskState" in data and "riskLevel" in data and "userId" not in data
    ):
        return graph.SOURCE_RISKY_USER, graph.from_risky_user
    if "evidence" in data or ("serviceSource" in data and "severity" in data):
        return graph.SOURCE_ALERT, graph.from_security_alert
    return None


def _parse_text(payload: str | bytes | bytearray) -> Any:
    """JSON text (an Event Hub body, an HTTP body) to a value; bad text is MalformedPayload."""
    if len(payload) > MAX_JSON_STRING_CHARS * 64:
        raise MalformedPayload("payload text is too large to parse")
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayload("payload is not valid JSON") from None


def _keys(data: dict[Any, Any]) -> str:
    names = [str(key)[:40] for key in list(data)[:10]]
    return ", ".join(names) or "(none)"
