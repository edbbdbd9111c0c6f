"""JSON $batch: up to 20 requests, unique ids, dependsOn (424 on a failed dependency),
each item through the same pipeline as a direct call, answers shuffled (seeded)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .messages import DROP, EmuRequest, EmuResponse, graph_error_response

if TYPE_CHECKING:
    from .pipeline import Emulator


def normalise_query(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Graph accepts $filter, $FILTER and (in v1.0) filter; store them as $filter."""
    known = {"filter", "top", "select", "skiptoken", "orderby", "count", "expand", "search",
             "skip"}
    out: dict[str, str] = {}
    for key, value in pairs:
        low = key.lower()
        if low.lstrip("$") in known:
            low = "$" + low.lstrip("$")
            out[low] = value
        else:
            out[key] = value
    return out


def _bad(req: EmuRequest, message: str) -> EmuResponse:
    return graph_error_response(400, "BadRequest", message, req)


def _item_request(outer: EmuRequest, item: dict, batch_id: int) -> EmuRequest:
    url = str(item.get("url", ""))
    parts = urlsplit(url)
    segs = [unquote(s) for s in parts.path.split("/") if s]
    headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    headers.setdefault("authorization", outer.header("authorization") or "")
    return EmuRequest(
        method=str(item.get("method", "GET")).upper(),
        path=f"/{outer.version}/" + "/".join(segs),
        segments=segs,
        query=normalise_query(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=item.get("body"),
        origin=outer.origin,
        api="graph",
        version=outer.version,
        batch_id=batch_id,
        raw_body_present=item.get("body") is not None,
        hosted=outer.hosted,  # an item acts on the batch's tenant, never another
    )


def _validate(req: EmuRequest, items: Any, max_items: int) -> EmuResponse | None:
    if not isinstance(items, list) or not items:
        return _bad(req, "Invalid batch payload format.")
    if len(items) > max_items:
        return _bad(req, f"The number of requests in a batch exceeds the maximum of "
                    f"{max_items}.")
    ids: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("method") \
                or not isinstance(item.get("url"), str):
            return _bad(req, "Each batch request needs id, method and url.")
        ids.append(str(item["id"]))
    if len(set(ids)) != len(ids):
        return _bad(req, "Batch request Ids must be unique.")
    deps = {str(i["id"]): [str(d) for d in i.get("dependsOn") or []] for i in items}
    for rid, ds in deps.items():
        for d in ds:
            if d not in deps:
                return _bad(req, f"Request {rid} depends on unknown request {d}.")
    # reject cycles
    state: dict[str, int] = {}

    def cyclic(n: str) -> bool:
        if state.get(n) == 1:
            return True
        if state.get(n) == 2:
            return False
        state[n] = 1
        if any(cyclic(d) for d in deps[n]):
            return True
        state[n] = 2
        return False

    if any(cyclic(n) for n in deps):
        return _bad(req, "The dependsOn graph of the batch contains a cycle.")
    return None


async def run_batch(emu: Emulator, req: EmuRequest, entry: dict) -> EmuResponse | object:
    """Run a batch; returns 200 with shuffled responses, 400 for a bad envelope, or DROP."""
    body = req.body if isinstance(req.body, dict) else {}
    items = body.get("requests")
    bad = _validate(req, items, int(emu.config.get("batch_max_requests", 20)))
    if bad is not None:
        return bad
    batch_id = entry["seq"]
    results: dict[str, asyncio.Future] = {
        str(i["id"]): asyncio.get_running_loop().create_future() for i in items
    }

    async def run_item(item: dict) -> None:
        rid = str(item["id"])
        sub = _item_request(req, item, batch_id)
        try:
            deps = [str(d) for d in item.get("dependsOn") or []]
            failed = []
            for d in deps:
                r = await results[d]
                if r is DROP or r.status >= 400:
                    failed.append(d)
            if failed:
                e = emu.log.start(sub, emu.classify(sub)[0])
                resp: Any = graph_error_response(
                    424, "FailedDependency",
                    f"The request depends on a request that failed: {', '.join(failed)}.", sub)
                emu.log.finish(e, 424)
            elif sub.raw_body_present and "content-type" not in sub.headers:
                e = emu.log.start(sub, emu.classify(sub)[0])
                resp = _bad(sub, f"Write request id : {rid} does not contain Content-Type "
                            "header or body.")
                emu.log.finish(e, 400)
            elif sub.segments and sub.segments[0].lower() == "$batch":
                e = emu.log.start(sub, "batch")
                resp = _bad(sub, "Nested $batch requests are not supported.")
                emu.log.finish(e, 400)
            else:
                resp = await emu.execute(sub)
        except Exception as exc:  # never leave dependents waiting
            results[rid].set_exception(exc)
            raise
        results[rid].set_result(resp)

    tasks = [asyncio.ensure_future(run_item(i)) for i in items]
    await asyncio.gather(*tasks)
    answers = []
    wrote = False
    for item in items:
        resp = results[str(item["id"])].result()
        if resp is DROP:
            return DROP
        wrote = wrote or (resp.write and resp.status < 400)
        answer: dict[str, Any] = {"id": str(item["id"]), "status": resp.status,
                                  "headers": dict(resp.headers)}
        if resp.body is not None:
            answer["body"] = resp.body
        answers.append(answer)
    with emu.lock:
        emu.shuffle_rng.shuffle(answers)
    return EmuResponse(200, {"responses": answers}, {"Content-Type": "application/json"},
                       write=wrote)
