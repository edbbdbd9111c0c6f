"""Hostile HTTP requests to the alert webhook (`risk_alert_http`), invoked in-process with
real `func.HttpRequest` objects: every answer is a typed 2xx/4xx with a JSON reason (or the
documented text/plain validation echo), never a 5xx or an exception, and no response header
carries a CR or LF."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import azure.functions as func
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.intake.conftest import CLIENT_STATE, SHARED_SECRET, user_function

URL = "https://responder.example/api/alerts"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
PAYLOADS = [json.loads(p.read_text(encoding="utf-8"))["payload"]
            for p in sorted(FIXTURES.glob("*.json"))]
ALLOWED = {200, 202, 400, 401, 403, 413, 422}
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=15,
)
NASTY = st.sampled_from([
    "", "x' or 1 eq 1 or userPrincipalName eq 'y", "a\r\nSet-Cookie: x=1", "\n", "\x00",
    "../../etc/passwd", "%0d%0aX: y", "9" * 30, "-1", "1e9", "${jndi:x}", "é", "a" * 5000,
]) | st.text(max_size=40)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    payload = copy.deepcopy(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(payload)))
        value = draw(JSON | NASTY)
        if not path:
            payload = value
            continue
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = value
    return json.dumps(payload).encode()


BODIES = st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()) | mutated_fixture()
HEADERS = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "text/plain", "", "application/xml"]),
    "content-length": st.sampled_from(["0", "12", "-5", "99999999999", "abc", " 7 "]),
    "x-responder-secret": st.sampled_from([SHARED_SECRET, "wrong", "", SHARED_SECRET + "\n"]),
    "webhook-request-origin": NASTY,
    "aeg-event-type": st.sampled_from(["Notification", "SubscriptionValidation"]) | NASTY,
})
PARAMS = st.fixed_dictionaries({}, optional={"validationToken": NASTY, "code": NASTY})


def request(method: str, body: bytes, headers: dict[str, str],
            params: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest(method, URL, headers=headers, params=params, body=body)


def assert_typed(resp: func.HttpResponse) -> None:
    assert resp.status_code in ALLOWED, (resp.status_code, resp.get_body()[:300])
    if resp.mimetype == "application/json":
        body = json.loads(resp.get_body())
        if resp.status_code >= 400:
            assert body.get("error"), "a refusal says why"


def assert_clean_headers(resp: func.HttpResponse) -> None:
    for name, value in resp.headers.items():
        assert "\r" not in value and "\n" not in value, (name, value)


@FUZZ
@given(method=st.sampled_from(["POST", "POST", "POST", "OPTIONS"]), body=BODIES,
       headers=HEADERS, params=PARAMS)
async def test_any_request_gets_a_typed_answer(svc: Any, method: str, body: bytes,
                                               headers: dict[str, str],
                                               params: dict[str, str]) -> None:
    headers = {k: v for k, v in headers.items() if k != "webhook-request-origin"}
    resp = await user_function("risk_alert_http")(request(method, body, headers, params))
    assert_typed(resp)
    assert_clean_headers(resp)


@FUZZ
@given(body=mutated_fixture())
async def test_authenticated_mutated_alerts_get_a_typed_answer(svc: Any, body: bytes) -> None:
    text = body.replace(b"secretClientState", CLIENT_STATE.encode())
    resp = await user_function("risk_alert_http")(
        request("POST", text, {"content-type": "application/json",
                               "x-responder-secret": SHARED_SECRET}, {}))
    assert_typed(resp)


async def test_cloudevents_origin_with_crlf_never_reaches_a_header(svc: Any) -> None:
    resp = await user_function("risk_alert_http")(request(
        "OPTIONS", b"", {"webhook-request-origin": "eventgrid.azure.net\r\nSet-Cookie: a=1"}, {}))
    assert resp.status_code in ALLOWED
    assert_clean_headers(resp)
