"""Hostile queue messages: `parse_request` answers a RemediationRequest or a typed
ValidationError with a reason, nothing else, whatever the bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ValidationError
from shared.models import MAX_MESSAGE_BYTES, RemediationRequest
from shared.playbook.worker import parse_request

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
HOSTILE_TEXT = st.sampled_from([
    "", " ", "x' or 1 eq 1 or userPrincipalName eq 'y", "a\r\nX-Injected: 1", "../../users",
    "a/b", "a?b", "a#b", "x#EXT#@contoso.onmicrosoft.com", "\x00", "\u202e", "é" * 300,
    "a" * 1025, "${jndi:ldap://x}", "<script>", "null", "true", "1e309",
]) | st.text(max_size=60)
FIELDS = {
    "schemaVersion": st.sampled_from([1, 2, "1", None, 1.0, True]) | JSON,
    "user": HOSTILE_TEXT | JSON,
    "requestId": HOSTILE_TEXT | JSON,
    "playbook": HOSTILE_TEXT | JSON,
    "actions": st.lists(HOSTILE_TEXT, max_size=3) | JSON,
    "riskLevel": st.sampled_from(["low", "medium", "high", "HIGH", "", "critical"]) | JSON,
    "reason": HOSTILE_TEXT | JSON,
    "dryRun": st.booleans() | JSON,
    "action": st.sampled_from(["remediate", "release", "resume", "drop"]) | JSON,
    "runId": HOSTILE_TEXT | JSON,
    "detectedAt": st.sampled_from(["2026-11-25T03:12:44Z", "yesterday", "", "9999-99-99"])
    | JSON,
}
MESSAGES = st.fixed_dictionaries({}, optional=FIELDS)


def check(body: bytes | str) -> RemediationRequest | None:
    try:
        request = parse_request(body)
    except ValidationError as exc:
        assert str(exc), "a refusal must say why"
        return None
    assert isinstance(request, RemediationRequest)
    # what was accepted is sane and survives the queue round trip unchanged
    assert request.user and request.user == request.user.strip()
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in request.user)
    assert not any(c in request.user for c in "/\\?")
    again = parse_request(request.to_message())
    assert again.model_dump() == request.model_dump()
    return request


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(body: bytes) -> None:
    check(body)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json(value: Any) -> None:
    check(json.dumps(value))


@settings(max_examples=500, deadline=None)
@given(MESSAGES)
def test_request_shaped_messages(message: dict[str, Any]) -> None:
    check(json.dumps(message))


def test_oversized_messages_and_bad_encodings_are_refused_with_a_reason() -> None:
    assert check(json.dumps({"user": "a@b.c", "reason": "x" * MAX_MESSAGE_BYTES})) is None
    assert check("[" * 100_000 + "]" * 100_000) is None
    assert check(b'{"user": "a@b.c", "user": "\xff"}') is None


def test_deeply_nested_json_under_the_size_cap_is_refused_with_a_reason() -> None:
    depth = MAX_MESSAGE_BYTES // 2 - 10
    assert check("[" * depth + "]" * depth) is None
    assert check('{"user": ' * 20_000 + '"a@b.c"' + "}" * 20_000) is None
