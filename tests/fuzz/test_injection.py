"""OData and header injection through UPNs and ids is harmless.

A user string is only ever looked up through an escaped `$filter` literal or a
percent-encoded path segment, so a hostile UPN resolves to nothing (or to the one user whose
UPN or mail it literally is), never to another user; CR/LF never reaches a request header.
Checked against the emulator (demo tenant) over real HTTP, through the Graph helpers, a whole
run, and the alert webhook."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.localhost import LocalHost
from shared.errors import BadRequest, NotFound, ServiceError
from shared.playbook.worker import handle_message
from shared.tenant import exchange as exo
from shared.tenant.graph import directory
from shared.tenant.graph.odata import ODataInputError
from tests.intake.conftest import SHARED_SECRET, queued, user_function

MEGAN = "megan@contoso.com"
HOSTILE = [
    "x' or 1 eq 1 or userPrincipalName eq 'y",
    f"x' or userPrincipalName eq '{MEGAN}",
    f"{MEGAN}' or '1' eq '1",
    "' or startswith(userPrincipalName,'') or 'a' eq 'a",
    "o'brien@contoso.com' or accountEnabled eq true or 'x' eq 'x",
    "*", "%", "%27 or 1 eq 1", "userPrincipalName ne null", "') or (1 eq 1",
    "megan@contoso.com%0d%0aX-Evil: 1", "megan@contoso.com\r\nX-Evil: 1",
]
PIECES = st.sampled_from(["'", "''", " or ", " eq ", " ne ", "1", "userPrincipalName", "mail",
                          "id", "(", ")", MEGAN, "o'brien@contoso.com", "*", "%27", "$filter=",
                          "&", "=", "\r\n", "@contoso.com", "startswith(", ",", "true", " "])
FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
ALL_USERS = ("megan@contoso.com", "o'brien@contoso.com", "diego@contoso.com")


def writes(emulator: Any) -> list[dict[str, Any]]:
    return [e for e in emulator.requests() if e.get("write")]


@FUZZ
@given(st.lists(PIECES, min_size=1, max_size=8).map("".join) | st.sampled_from(HOSTILE))
async def test_hostile_upn_never_resolves_to_another_user(svc: Any, emulator: Any,
                                                          text: str) -> None:
    try:
        user = await directory.resolve_user(svc.graph, text)
    except (NotFound, BadRequest, ODataInputError):
        return
    assert text.strip().lower() in {user.upn.lower(), (user.mail or "").lower()}, \
        f"{text!r} resolved to {user.upn}"


async def test_hostile_upns_in_requests_touch_nobody(svc: Any, emulator: Any) -> None:
    before = writes(emulator)
    for i, text in enumerate(HOSTILE):
        body = json.dumps({"user": text, "requestId": f"hostile-{i}", "riskLevel": "high"})
        outcome = await handle_message(svc, body, message_id=f"m{i}")
        if outcome.status == "invalid":  # refused at the schema (control characters)
            assert "control characters" in outcome.reason or "not valid" in outcome.reason
            continue
        assert outcome.status == "ran"
        assert outcome.run is not None and outcome.run.run.state == "failed"
        assert "unknown user" in outcome.run.run.reason
    assert writes(emulator) == before, "a hostile UPN reached a write"


async def test_crlf_never_reaches_a_request_header(svc: Any, emulator: Any) -> None:
    emulator.clear_log()
    hostile = f"{MEGAN}\r\nX-Evil: 1"
    for call in (lambda: exo.get_mailbox(svc.exchange, hostile),
                 lambda: exo.inbox_rules(svc.exchange, hostile)):
        try:  # X-AnchorMailbox carries the UPN: refused before sending, a typed error
            await call()
        except BadRequest:
            pass
        else:
            raise AssertionError("a UPN with CR/LF was sent in X-AnchorMailbox")
    try:
        await directory.revoke_sessions(svc.graph, hostile)
    except ServiceError as exc:
        assert isinstance(exc, NotFound)  # percent-encoded into one path segment: no user
    log = emulator.requests()
    assert not [e for e in log if e["api"] == "exchange"], "an Exchange call went out"
    assert not [e for e in log if e.get("write")]


async def test_hostile_upn_in_an_alert_resolves_to_nothing(svc: Any, emulator: Any) -> None:
    import function_app

    detection = {"id": "e" * 64, "riskEventType": "passwordSpray", "riskLevel": "high",
                 "riskState": "atRisk", "detectedDateTime": "2026-11-25T03:12:44Z",
                 "userPrincipalName": f"x' or userPrincipalName eq '{MEGAN}"}
    resp = await user_function("risk_alert_http")(func.HttpRequest(
        "POST", "https://responder.example/api/alerts", body=json.dumps(
            {"value": [detection]}).encode(),
        headers={"content-type": "application/json", "x-responder-secret": SHARED_SECRET}))
    assert resp.status_code in (202, 400, 422)
    messages = await queued(svc)
    before = writes(emulator)
    for m in messages:  # whatever was queued, the worker finds nobody
        await svc.storage.enqueue(svc.settings.remediation_queue, json.dumps(m))
    host = LocalHost(function_app.app, svc.storage,
                     {"REMEDIATION_QUEUE": svc.settings.remediation_queue},
                     visibility_timeout=0.2)
    await host.run_until_idle(30)
    for run in await svc.journal.list_runs():
        assert run.state == "failed" and "unknown user" in run.reason, run
    assert writes(emulator) == before
