"""The queue message schema (a public contract): what is accepted, what is refused."""

from __future__ import annotations

import json

import pytest

from shared.errors import ValidationError
from shared.models import MAX_MESSAGE_BYTES, RemediationRequest
from shared.playbook.worker import parse_request


def test_minimal_and_full_messages_parse_and_keep_unknown_fields():
    r = parse_request(b'{"user": "megan@contoso.com"}')
    assert r.schema_version == 1 and r.action == "remediate" and not r.dry_run
    full = {"schemaVersion": 1, "user": "o'brien@contoso.com", "requestId": "abc",
            "playbook": "standard", "riskLevel": "medium", "reason": "r", "requestedBy": "soc",
            "source": "sentinel", "dryRun": True, "ticket": "INC-1"}
    r = parse_request(json.dumps(full))
    assert (r.user, r.request_id, r.playbook, r.risk_level, r.dry_run) == (
        "o'brien@contoso.com", "abc", "standard", "medium", True)
    assert r.model_extra == {"ticket": "INC-1"}


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe", b"[]", b'"user"', b"{}", b'{"user": ""}', b'{"user": 42}',
    b'{"user": "a/b"}', b'{"user": "x?$filter=1"}', b'{"user": "x\\u0000y"}',
    b'{"user": "x", "schemaVersion": 2}', b'{"user": "x", "riskLevel": "extreme"}',
    b'{"user": "x", "actions": []}', b'{"user": "x", "dryRun": "perhaps"}',
])
def test_invalid_messages_raise_typed_validation_errors(body):
    with pytest.raises(ValidationError):
        parse_request(body)


def test_oversized_message_is_refused_before_parsing():
    body = json.dumps({"user": "x", "reason": "a" * MAX_MESSAGE_BYTES}).encode()
    with pytest.raises(ValidationError, match="over the"):
        parse_request(body)


def test_request_id_is_derived_when_absent_and_stable():
    a = RemediationRequest(user="Megan@contoso.com")
    b = RemediationRequest(user="megan@contoso.com")
    assert a.effective_request_id() == b.effective_request_id()
    assert RemediationRequest(user="x", requestId="given").effective_request_id() == "given"


def test_guest_upn_is_valid_but_other_hashes_are_not():
    assert parse_request(b'{"user": "a_b.com#EXT#@c.onmicrosoft.com"}')
    with pytest.raises(ValidationError):
        parse_request(b'{"user": "a#b@c.com"}')
