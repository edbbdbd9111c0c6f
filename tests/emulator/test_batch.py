"""JSON $batch envelope rules, dependsOn, shuffling, per-item throttling and logging."""

from __future__ import annotations

from .conftest import CA_GROUP, MEGAN, OBRIEN

JSON = {"Content-Type": "application/json"}


def _get(i: int, url: str) -> dict:
    return {"id": str(i), "method": "GET", "url": url}


def test_more_than_20_is_400(client):
    r = client.post("/v1.0/$batch", json={"requests": [_get(i, "/users") for i in range(21)]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"


def test_duplicate_ids_is_400(client):
    r = client.post("/v1.0/$batch", json={"requests": [_get(1, "/users"), _get(1, "/groups")]})
    assert r.status_code == 400


def test_depends_on_failure_gives_424(server, client):
    reqs = [
        {"id": "a", "method": "PATCH", "url": "/users/nobody@contoso.com", "headers": JSON,
         "body": {"accountEnabled": False}},
        {"id": "b", "method": "POST", "url": f"/users/{MEGAN}/revokeSignInSessions",
         "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": f"/users/{MEGAN}", "dependsOn": ["b"]},
        {"id": "d", "method": "GET", "url": f"/users/{OBRIEN}"},
    ]
    r = client.post("/v1.0/$batch", json={"requests": reqs})
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert by_id["a"]["status"] == 404
    assert by_id["b"]["status"] == 424 and by_id["c"]["status"] == 424
    assert by_id["d"]["status"] == 200 and by_id["d"]["body"]["id"] == OBRIEN
    megan = next(u for u in server.state()["users"] if u["id"] == MEGAN)
    assert megan["sessionsRevokedCount"] == 0
    log = server.requests()
    outer = next(e for e in log if e["path"] == "/v1.0/$batch")
    items = [e for e in log if e["batch_id"] == outer["seq"]]
    assert len(items) == 4 and outer["cls"] == "batch"


def test_missing_content_type_fails_only_that_item(client):
    reqs = [
        {"id": "1", "method": "PATCH", "url": f"/users/{MEGAN}", "body": {"jobTitle": "x"}},
        {"id": "2", "method": "PATCH", "url": f"/users/{OBRIEN}", "body": {"jobTitle": "y"},
         "headers": JSON},
    ]
    by_id = {x["id"]: x for x in client.post("/v1.0/$batch", json={"requests": reqs}).json()[
        "responses"]}
    assert by_id["1"]["status"] == 400 and by_id["2"]["status"] == 204
    assert client.get(f"/v1.0/users/{OBRIEN}").json()["jobTitle"] == "y"
    assert client.get(f"/v1.0/users/{MEGAN}").json()["jobTitle"] != "x"


def test_responses_are_shuffled_and_carry_json_bodies(client):
    reqs = [_get(i, f"/users/{MEGAN}") for i in range(12)]
    orders = set()
    for _ in range(3):
        resp = client.post("/v1.0/$batch", json={"requests": reqs}).json()["responses"]
        assert all(x["body"]["id"] == MEGAN for x in resp)
        orders.add(tuple(x["id"] for x in resp))
    assert orders != {tuple(str(i) for i in range(12))}


def test_items_are_throttled_individually_with_retry_after(server, client):
    server.configure(throttle={"directory_write": {"capacity": 3, "refill_per_sec": 0.01}})
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{MEGAN}"}
    reqs = [{"id": str(i), "method": "PATCH", "url": f"/users/{MEGAN}", "headers": JSON,
             "body": {"jobTitle": f"t{i}"}} for i in range(4)]
    reqs.append({"id": "ref", "method": "POST", "url": f"/groups/{CA_GROUP}/members/$ref",
                 "headers": JSON, "body": ref})
    resp = client.post("/v1.0/$batch", json={"requests": reqs}).json()["responses"]
    throttled = [x for x in resp if x["status"] == 429]
    assert len(throttled) == 2
    for x in throttled:
        assert float(x["headers"]["Retry-After"]) > 0
        assert x["body"]["error"]["code"] == "TooManyRequests"
    log = server.requests()
    assert sum(e["throttled"] for e in log) == 2
    assert sum(e["write"] for e in log if e["batch_id"]) == 3


def test_scripted_fault_hits_batch_item(server, client):
    server.add_fault(method="POST", path_regex=r"/revokeSignInSessions$", status=403,
                     code="Authorization_RequestDenied",
                     message="Insufficient privileges to complete the operation.")
    reqs = [{"id": "r", "method": "POST", "url": f"/users/{MEGAN}/revokeSignInSessions"},
            {"id": "g", "method": "GET", "url": "/users?$top=1"}]
    by_id = {x["id"]: x for x in client.post("/v1.0/$batch", json={"requests": reqs}).json()[
        "responses"]}
    assert by_id["r"]["status"] == 403
    assert by_id["r"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert by_id["g"]["status"] == 200 and len(by_id["g"]["body"]["value"]) == 1
    # count=1: the next one goes through
    assert client.post(f"/v1.0/users/{MEGAN}/revokeSignInSessions").status_code == 200
