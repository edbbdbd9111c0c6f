"""Shape detection: which source sent this parsed JSON payload, then dispatch to its normaliser.

`normalise` is the one entry point the HTTP, Event Grid, Event Hub and timer functions call.
It raises only `AlertError` subclasses: `UnknownShape` when nothing matches, `PayloadTooLarge`
for oversized batches. Per-item failures come back as problems, never as exceptions.
Which sources exist, and the order they are tried in, is `shared.intake.sources.catalogue`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.intake.sources.catalogue import BY_ODATA_TYPE, ITEM_ORDER, PAYLOAD_ORDER
from shared.intake.sources.common import MAX_JSON_STRING_CHARS, as_dict, as_list, norm
from shared.intake.sources.errors import AlertError, Ignored, MalformedPayload, UnknownShape
from shared.intake.sources.registry import Source
from shared.intake.sources.result import NormaliseResult
from shared.models import RiskSignal

MAX_DEPTH = 4
"""Envelopes inside envelopes deeper than this are refused (no payload needs more)."""


def normalise(payload: Any) -> NormaliseResult:
    """Recognise the payload's source and turn it into signals, problems and ignores.

    Accepts parsed JSON (dict or list) or JSON text/bytes. Raises `AlertError` only.
    """
    return _dispatch(payload, 0)


@dataclass(frozen=True)
class _Nested:
    """Detection as seen by a source that carries other payloads, at its nesting depth."""

    depth: int

    def payload(self, inner: Any) -> NormaliseResult:
        return _dispatch(inner, self.depth + 1)

    def items(self, pairs: list[tuple[str, Any]]) -> NormaliseResult:
        return _dispatch_items(pairs, self)


def _dispatch(payload: Any, depth: int) -> NormaliseResult:
    if depth > MAX_DEPTH:
        raise MalformedPayload("envelopes are nested too deeply")
    if depth == 0 and isinstance(payload, (str, bytes, bytearray)):
        payload = _parse_text(payload)
    if isinstance(payload, list):
        payload = as_list(payload, "payload array") or []
    elif as_dict(payload) is None:
        raise UnknownShape(f"expected a JSON object or array, got {type(payload).__name__}")
    nested = _Nested(depth)
    for source in PAYLOAD_ORDER:
        if source.recognises(payload):
            return _as_result(source.normalise(payload, nested))
    if isinstance(payload, list):
        return _dispatch_items([(f"[{i}]", item) for i, item in enumerate(payload)], nested)
    if classify(payload) is None:
        raise UnknownShape(f"unrecognised alert payload; top-level keys: {_keys(payload)}")
    return _dispatch_items([("$", payload)], nested)


def _dispatch_items(pairs: list[tuple[str, Any]], nested: _Nested) -> NormaliseResult:
    """Normalise single items (collection members); each failure is that item's problem."""
    result = NormaliseResult()
    for locator, item in pairs:
        source = classify(item)
        if source is None:
            keys = _keys(item) if isinstance(item, dict) else type(item).__name__
            result.problem(locator, UnknownShape(f"unrecognised item: {keys}"), "unknown")
            continue
        name = source.problem_source(item)
        try:
            produced = source.normalise(item, nested)
        except Ignored as exc:
            result.ignore(locator, str(exc))
            continue
        except AlertError as exc:
            result.problem(locator, exc, name)
            continue
        if isinstance(produced, NormaliseResult):
            result.absorb(produced, locator)
        else:
            result.signals.append(produced)
    return result


def classify(item: Any) -> type[Source] | None:
    """The item source for one item, or None when no source matches."""
    data = as_dict(item)
    if data is None:
        return None
    by_type = BY_ODATA_TYPE.get(norm(data.get("@odata.type")))
    if by_type is not None:
        return by_type
    return next((source for source in ITEM_ORDER if source.recognises(data)), None)


def _as_result(produced: RiskSignal | NormaliseResult) -> NormaliseResult:
    if isinstance(produced, NormaliseResult):
        return produced
    return NormaliseResult(signals=[produced])


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
