"""The two lanes: from the remediation queue a run contains its account and queues its
clean-up steps; the clean-up lane finishes the same run. Through Azurite, the local host
and the emulator."""

from __future__ import annotations

import json

from azure.core.exceptions import ResourceNotFoundError

import function_app
from devtools.localhost import LocalHost
from functions import runtime
from shared.policy import parse_policy
from shared.services import Services
from shared.state.storage import poison_queue_name
from shared.tenant.credentials import StaticTokenCredential
from tests.conftest import TOKEN
from tests.playbook.conftest import DEMO_POLICY, MEGAN, writes

CONTAINMENT_WRITES = ("/revokeSignInSessions",)


def _host(services, *, only: str | None = None, **kw) -> LocalHost:
    """The local host over this test's queues; `only` keeps one queue function."""
    host = LocalHost(function_app.app, services.storage,
                     {"REMEDIATION_QUEUE": services.settings.remediation_queue},
                     visibility_timeout=kw.pop("visibility_timeout", 0.2), **kw)
    if only is not None:
        host.functions = [f for f in host.functions if f.name == only]
    return host


async def _count(services, queue: str) -> int:
    try:
        props = await services.storage.queue(queue).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def _password_writes(log: list[dict]) -> list[dict]:
    return [e for e in log if e["method"] == "PATCH"
            and "passwordProfile" in json.dumps(e.get("body") or {})]


def _mailbox_writes(log: list[dict]) -> list[dict]:
    return [e for e in log if e.get("cmdlet") or "/mailFolders/" in e["path"]
            or "/messageRules" in e["path"] or "/authentication/" in e["path"]]


async def test_contain_lane_contains_then_queues_the_rest(services, emulator):
    await services.storage.ensure_queue(services.settings.cleanup_queue)
    await services.storage.enqueue(services.settings.remediation_queue,
                                   json.dumps({"user": MEGAN, "requestId": "lane-1"}))
    await _host(services, only="remediation_worker").run_until_idle(30)

    run = await services.journal.get_run("lane-1")
    assert run is not None and run.state == "running"
    assert run.reason.startswith("contained (reset_password, revoke_sessions)")
    results = await services.journal.step_results("lane-1")
    assert {n for n, r in results.items() if r.status == "done"} == {
        "reset_password", "revoke_sessions"}
    log = writes(emulator)
    assert len(_password_writes(log)) == 1
    assert len([e for e in log if e["path"].endswith("/revokeSignInSessions")]) == 1
    assert _mailbox_writes(log) == [], "no clean-up step acted in the contain lane"
    assert await _count(services, services.settings.cleanup_queue) == 1
    kinds = [e["kind"] for e in await services.journal.events("lane-1")]
    assert "contained" in kinds

    # the clean-up lane finishes the same run, without repeating containment
    await _host(services, only="remediation_cleanup").run_until_idle(60)
    run = await services.journal.get_run("lane-1")
    assert run is not None and run.state == "finished", run and run.reason
    results = await services.journal.step_results("lane-1")
    assert set(results) == set(run.steps)
    log = writes(emulator)
    assert len(_password_writes(log)) == 1
    assert len([e for e in log if e["path"].endswith("/revokeSignInSessions")]) == 1
    assert any(e.get("cmdlet") == "Set-Mailbox" for e in log)
    assert await _count(services, services.settings.cleanup_queue) == 0


async def test_every_queued_account_is_contained_before_any_clean_up(services, emulator):
    """Five requests at once: every account is contained before the clean-up is done."""
    users = ["megan@contoso.com", "o'brien@contoso.com", "diego@contoso.com",
             "adele@contoso.com", "pradeep@contoso.com"]
    for i, upn in enumerate(users):
        await services.storage.enqueue(services.settings.remediation_queue, json.dumps(
            {"user": upn, "requestId": f"storm-{i}", "actions": [
                "reset_password", "revoke_sessions", "enable_mailbox_audit"]}))
    await _host(services).run_until_idle(90)
    log = writes(emulator)
    revokes = [e for e in log if e["path"].endswith("/revokeSignInSessions")]
    audits = [e for e in log if e.get("cmdlet") == "Set-Mailbox"]
    assert len(revokes) == len(users)
    for i, upn in enumerate(users):
        run = await services.journal.get_run(f"storm-{i}")
        assert run is not None
        if upn.startswith("adele"):  # a privileged user: her reset waits for approval,
            # her sessions are revoked (always safe) and the clean-up lane still ran
            assert run.state == "waiting_approval", run.reason
            results = await services.journal.step_results(run.run_id)
            assert results["revoke_sessions"].status == "done"
            assert results["enable_mailbox_audit"].status in ("done", "nothing_to_do")
        else:
            assert run.state == "finished", run.reason
    # every containment write came before the last clean-up write, and the lanes ran in
    # their order for each user
    assert max(e["t"] for e in revokes) < max(e["t"] for e in audits)
    assert await _count(services, poison_queue_name(services.settings.cleanup_queue)) == 0


async def test_redelivered_contain_message_after_hand_off_repeats_nothing(services, emulator):
    body = json.dumps({"user": MEGAN, "requestId": "lane-2"})
    await services.storage.enqueue(services.settings.remediation_queue, body)
    await _host(services, only="remediation_worker").run_until_idle(30)
    # the same message again (a host that lost the delete): containment is done, so this
    # delivery runs the rest; the clean-up copy then finds the run finished
    await services.storage.enqueue(services.settings.remediation_queue, body)
    await _host(services).run_until_idle(60)
    run = await services.journal.get_run("lane-2")
    assert run is not None and run.state == "finished", run and run.reason
    log = writes(emulator)
    assert len(_password_writes(log)) == 1
    assert len([e for e in log if e["path"].endswith("/revokeSignInSessions")]) == 1
    assert len([e for e in log if e.get("cmdlet") == "Set-Mailbox"
                and "AuditEnabled" in json.dumps(e.get("body") or {})]) <= 1


async def test_dry_run_across_lanes_plans_everything_and_writes_nothing(services, emulator):
    before = writes(emulator)
    await services.storage.enqueue(services.settings.remediation_queue, json.dumps(
        {"user": MEGAN, "requestId": "lane-dry", "dryRun": True}))
    await _host(services).run_until_idle(60)
    run = await services.journal.get_run("dry-lane-dry")
    assert run is not None and run.state == "finished", run and run.reason
    results = await services.journal.step_results("dry-lane-dry")
    assert results["reset_password"].status == "planned"
    assert set(results) == set(run.steps)
    assert writes(emulator) == before
    kinds = [e["kind"] for e in await services.journal.events("dry-lane-dry")]
    assert "contained" in kinds and "deferred" not in kinds


async def test_a_run_without_containment_steps_is_not_split(services, emulator):
    await services.storage.ensure_queue(services.settings.cleanup_queue)
    await services.storage.enqueue(services.settings.remediation_queue, json.dumps(
        {"user": MEGAN, "requestId": "lane-3", "actions": ["enable_mailbox_audit"]}))
    await _host(services, only="remediation_worker").run_until_idle(30)
    run = await services.journal.get_run("lane-3")
    assert run is not None and run.state == "finished", run and run.reason
    assert await _count(services, services.settings.cleanup_queue) == 0


async def test_the_local_host_takes_a_batch_in_one_get_messages_call(settings):
    """The host receives up to its batch size in one Get Messages call; fetching a batch
    one message per call would slow every storm's drain (and every figure measured)."""
    from devtools.localhost import QueueFunction
    from shared.policy import Policy
    from shared.services import Services
    from shared.tenant.credentials import StaticTokenCredential
    from tests.conftest import TOKEN

    gets: list[str] = []

    def hook(request) -> None:
        req = request.http_request
        if req.method == "GET" and req.url.split("?")[0].endswith("/messages"):
            gets.append(req.url)

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy(),
                          storage_hooks={"queue": hook})
    try:
        queue = settings.remediation_queue
        client = await svc.storage.ensure_queue(queue)
        for i in range(10):
            await client.send_message(json.dumps({"n": i}))
        seen: list[str] = []

        async def take(msg) -> None:
            seen.append(msg.get_body().decode())

        host = _host(svc, batch_size=16)
        host.functions = [QueueFunction("probe", queue, take, "msg")]
        gets.clear()
        started = await host.poll_once()
        calls = list(gets)
        await host.run_until_idle(limit_seconds=30)
        assert started == 10 and sorted(seen) == sorted(json.dumps({"n": i}) for i in
                                                         range(10))
        assert len(calls) == 1 and "numofmessages=16" in calls[0], calls
    finally:
        await svc.close()


async def test_the_run_lease_rides_in_the_runs_own_writes(settings, emulator):
    """Across both lanes the run's lease is never written on its own: the contain lane
    takes it in the run's creating transaction and gives it back with the hand-off, the
    clean-up lane gives its own back with the final save. The run's first read is one query
    (record and steps)."""
    calls: list[str] = []
    services = Services.create(
        settings, credential=StaticTokenCredential(TOKEN), policy=parse_policy(DEMO_POLICY),
        confirm_window=0.05,
        storage_hooks={"table": lambda r: calls.append(
            r.http_request.method + " " + r.http_request.url)})
    runtime.use_services(services)
    try:
        await services.storage.ensure_queue(services.settings.cleanup_queue)
        await services.storage.enqueue(services.settings.remediation_queue,
                                       json.dumps({"user": MEGAN, "requestId": "lane-lease"}))
        await _host(services).run_until_idle(60)
        mine = [c for c in calls if "lane-lease" in c]
        run = await services.journal.get_run("lane-lease")
        assert run is not None and run.state == "finished", run and run.reason
        assert await services.journal.read_row("lane-lease", "lease") is None
        assert not [c for c in mine if "RowKey='lease'" in c], mine
        reads = [c for c in mine if c.startswith("GET")]
        assert len(reads) == 1, reads  # the clean-up lane's one query
        kinds = [e["kind"] for e in await services.journal.events("lane-lease")]
        assert kinds.count("contained") == 1 and kinds[-1] == "run-finished"
    finally:
        runtime.use_services(None)
        await services.close()
