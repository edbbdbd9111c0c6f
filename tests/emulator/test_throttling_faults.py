"""Each throttling model, seeded random faults, dropped connections, scripted faults."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from devtools.emulator import EmulatorServer, load_tenant

from .conftest import AUTH, DEMO, MEGAN, OBRIEN, invoke


def test_identity_protection_one_rps_without_retry_after(server, client):
    server.configure(throttle={"identity_protection": {"rps": 1.0}})
    url = "/v1.0/identityProtection/riskyUsers"
    assert client.get(url).status_code == 200
    r = client.get(url)
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    err = r.json()["error"]
    assert err["code"] == "TooManyRequests" and err["innerError"]["status"] == "429"
    r = client.post(url + "/confirmCompromised", json={"userIds": [OBRIEN]})
    assert r.status_code == 429
    assert server.state()["riskyUsers"][1]["riskState"] == "remediated"  # no state change
    assert client.get("/v1.0/users").status_code == 200  # other classes unaffected
    time.sleep(1.05)
    assert client.get(url).status_code == 200


def test_directory_write_token_bucket_with_retry_after(server, client):
    server.configure(throttle={"directory_write": {"capacity": 2, "refill_per_sec": 2}})
    codes = [client.patch(f"/v1.0/users/{MEGAN}", json={"jobTitle": f"j{i}"}).status_code
             for i in range(3)]
    assert codes == [204, 204, 429]
    r = client.patch(f"/v1.0/users/{MEGAN}", json={"jobTitle": "late"})
    assert r.status_code == 429
    assert 0 < float(r.headers["Retry-After"]) <= 0.5
    assert client.get(f"/v1.0/users/{MEGAN}").json()["jobTitle"] == "j1"
    time.sleep(float(r.headers["Retry-After"]) + 0.05)
    assert client.patch(f"/v1.0/users/{MEGAN}", json={"jobTitle": "ok"}).status_code == 204
    log = server.requests()
    assert [e["throttled"] for e in log if e["method"] == "PATCH"] == [
        False, False, True, True, False]


def test_retry_after_as_http_date(server, client):
    server.configure(throttle={"directory_write": {"capacity": 1, "refill_per_sec": 0.5,
                                                   "retry_after_http_date": True}})
    client.patch(f"/v1.0/users/{MEGAN}", json={"jobTitle": "a"})
    r = client.patch(f"/v1.0/users/{MEGAN}", json={"jobTitle": "b"})
    assert r.status_code == 429
    assert parsedate_to_datetime(r.headers["Retry-After"]).year >= 2024


async def test_mailbox_concurrency_limit_per_mailbox(server):
    server.configure(throttle={"mailbox": {"concurrency": 4}}, latency_ms={"mailbox": 400})
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=10) as c:
        megan = [c.get(f"/v1.0/users/{MEGAN}/mailFolders/inbox/messageRules") for _ in range(7)]
        other = [c.get(f"/v1.0/users/{OBRIEN}/mailFolders") for _ in range(2)]
        results = await asyncio.gather(*megan, *other)
    megan_codes = sorted(r.status_code for r in results[:7])
    assert megan_codes.count(200) == 4 and megan_codes.count(429) == 3
    assert all(r.status_code == 200 for r in results[7:])
    refused = next(r for r in results[:7] if r.status_code == 429)
    assert refused.json()["error"]["code"] == "ApplicationThrottled"
    assert "MailboxConcurrency" in refused.json()["error"]["message"]
    assert refused.headers["Retry-After"]


def test_exchange_rps(server, client):
    server.configure(throttle={"exchange": {"rps": 2}})
    codes = [invoke(client, "Get-OrganizationConfig").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = invoke(client, "Get-OrganizationConfig")
    assert r.status_code == 429 and float(r.headers["Retry-After"]) > 0
    assert r.json()["error"]["details"][0]["message"]


def _fault_sequence(seed: int, n: int = 40) -> list[int]:
    cfg = {"faults": {"rate": 0.4, "kinds": {"429": 1, "503": 1, "504": 1,
                                             "429_no_retry_after": 1}}}
    with EmulatorServer(load_tenant(DEMO), seed=seed, config=cfg) as srv, \
            httpx.Client(base_url=srv.base_url, headers=AUTH, timeout=10) as c:
        codes = [c.get(f"/v1.0/users/{MEGAN}").status_code for _ in range(n)]
        faults = [e["fault"] for e in srv.requests()]
        assert [f is not None for f in faults] == [code != 200 for code in codes]
        return codes


def test_random_faults_repeat_with_same_seed():
    first = _fault_sequence(11)
    assert first == _fault_sequence(11)
    assert {429, 503, 504} & set(first) and 200 in first
    assert first != _fault_sequence(12)


def test_faults_limited_to_classes(server, client):
    server.configure(faults={"rate": 1.0, "kinds": {"503": 1}, "classes": ["exchange"]})
    assert client.get("/v1.0/users").status_code == 200
    assert invoke(client, "Get-OrganizationConfig").status_code == 503


def test_drop_closes_connection(server, client):
    server.add_fault(method="GET", path_regex=r"/v1\.0/users$", status="drop", count=1)
    with pytest.raises(httpx.TransportError):
        client.get("/v1.0/users")
    assert client.get("/v1.0/users").status_code == 200
    assert server.requests()[0]["fault"] == "scripted:drop"


def test_random_drop_kind(server, client):
    server.configure(faults={"rate": 1.0, "kinds": {"drop": 1}})
    with pytest.raises(httpx.TransportError):
        client.get("/v1.0/users")
    server.configure(faults={"rate": 0.0})
    assert client.get("/v1.0/users").status_code == 200


def test_scripted_403_and_forever_count(server, client):
    f = server.add_fault(method="POST", path_regex=r"/revokeSignInSessions$", status=403,
                         code="Authorization_RequestDenied",
                         message="Insufficient privileges to complete the operation.",
                         count=None)
    assert f["id"] >= 1
    for _ in range(3):
        r = client.post(f"/v1.0/users/{MEGAN}/revokeSignInSessions")
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "Authorization_RequestDenied"
        assert r.headers["request-id"]
    assert not any(e["write"] for e in server.requests())
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)
    assert megan["sessionsRevokedCount"] == 0
    server.clear_faults()
    assert client.post(f"/v1.0/users/{MEGAN}/revokeSignInSessions").status_code == 200


def test_scripted_429_with_fractional_retry_after_and_delay(server, client):
    server.add_fault(path_regex="/users/", status=429, retry_after="1.5", delay_ms=50)
    t0 = time.monotonic()
    r = client.get(f"/v1.0/users/{MEGAN}")
    assert time.monotonic() - t0 >= 0.05
    assert r.status_code == 429 and r.headers["Retry-After"] == "1.5"


def test_scripted_exchange_fault_by_cmdlet(server, client):
    server.add_fault(cmdlet="Set-Mailbox", status=500, message="Transient Exchange failure")
    r = invoke(client, "Set-Mailbox", {"Identity": "megan@contoso.com", "AuditEnabled": True})
    assert r.status_code == 500
    assert r.json()["error"]["innererror"]["internalException"]["message"] == \
        "Transient Exchange failure"
    assert invoke(client, "Get-OrganizationConfig").status_code == 200
