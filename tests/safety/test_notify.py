"""Notifications reach loopback receivers signed; a dead receiver never fails a run."""

from __future__ import annotations

import json
import time

import pytest

from shared.safety import notify
from shared.safety.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.playbook.conftest import MEGAN, run_via_queue
from tests.safety.conftest import WEBHOOK_SECRET, closed_port_url, notify_policy


async def test_run_summary_reaches_webhook_teams_and_mail(make_services, emulator, receiver):
    svc = make_services(**notify_policy(receiver, teams=f"{receiver.url}/teams?sig=SECRETSIG"))
    await run_via_queue(svc, {"user": MEGAN, "requestId": "n-1"})
    run = await svc.journal.get_run("n-1")
    assert run.state == "finished", run.reason

    hooks = [r for r in receiver.requests if r["path"] == "/hook"]
    assert len(hooks) == 1
    hook = hooks[0]
    assert verify_signature(WEBHOOK_SECRET, hook["headers"][TIMESTAMP_HEADER], hook["body"],
                            hook["headers"][SIGNATURE_HEADER])
    assert hook["headers"]["X-Responder-Event"] == "run.finished"
    body = json.loads(hook["body"])
    assert body["runId"] == "n-1" and any("reset_password: done" in x for x in body["lines"])
    # a tampered body or a replayed (old) timestamp does not verify
    assert not verify_signature(WEBHOOK_SECRET, hook["headers"][TIMESTAMP_HEADER],
                                hook["body"] + b" ", hook["headers"][SIGNATURE_HEADER])
    assert not verify_signature(WEBHOOK_SECRET, hook["headers"][TIMESTAMP_HEADER],
                                hook["body"], hook["headers"][SIGNATURE_HEADER],
                                now_epoch=time.time() + 3600)

    teams = receiver.json("/teams?sig=SECRETSIG")
    assert len(teams) == 1
    card = teams[0]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert MEGAN in card["content"]["body"][0]["text"]

    mails = [m for m in emulator.state()["sentMail"]
             if m["message"]["toRecipients"][0]["emailAddress"]["address"] == "soc@contoso.com"]
    assert len(mails) == 1 and "reset_password: done" in mails[0]["message"]["body"]["content"]

    events = [e for e in await svc.journal.events("n-1") if e["kind"] == "notification"]
    assert {e["data"]["channel"] for e in events} == {"mail", "teams", "webhook"}
    # the Teams URL's sig is a credential: only the host is ever recorded
    assert "SECRETSIG" not in json.dumps(events, default=str)


async def test_a_dead_receiver_leaves_the_run_successful_and_is_recorded(make_services,
                                                                        emulator):
    svc = make_services(**notify_policy(webhook=closed_port_url(), mail=True))
    started = time.monotonic()
    await run_via_queue(svc, {"user": MEGAN, "requestId": "n-dead"})
    assert time.monotonic() - started < 60
    run = await svc.journal.get_run("n-dead")
    assert run.state == "finished", run.reason
    step = (await svc.journal.step_results("n-dead"))["notify"]
    assert step.status == "partial" and "webhook: failed" in step.summary
    assert "mail: delivered" in step.summary
    failed = [e for e in await svc.journal.events("n-dead")
              if e["kind"] == "notification-failed"]
    assert len(failed) == 1 and failed[0]["data"]["channel"] == "webhook"
    assert "unreachable" in failed[0]["data"]["detail"]


async def test_a_failing_receiver_status_is_recorded_not_raised(make_services, emulator,
                                                                receiver):
    receiver.status = 500
    svc = make_services(**notify_policy(receiver, mail=False))
    await run_via_queue(svc, {"user": MEGAN, "requestId": "n-500",
                              "actions": ["revoke_sessions", "notify"]})
    assert (await svc.journal.get_run("n-500")).state == "finished"
    failed = [e for e in await svc.journal.events("n-500")
              if e["kind"] == "notification-failed"]
    assert failed and failed[0]["data"]["status"] == 500


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://127.0.0.1/x",
                                 "https://user:pw@example.com/hook", "not a url"])
async def test_unsafe_receiver_urls_are_refused_without_a_request(make_services, emulator,
                                                                  url):
    svc = make_services(**notify_policy(webhook=url, mail=False))
    deliveries = await notify.send(svc, notify.Notification(
        event="sweep.findings", title="t", lines=["x"]))
    assert len(deliveries) == 1 and not deliveries[0].ok
    assert deliveries[0].detail.startswith("refused")
    rows = await svc.journal.events(notify.NOTIFICATIONS_PARTITION)
    assert rows and "pw" not in json.dumps(rows, default=str).replace("password", "")


async def test_webhook_without_its_secret_is_not_sent_unsigned(make_services, azurite,
                                                               emulator, receiver):
    from tests.conftest import make_settings

    svc = make_services(settings=make_settings(azurite, emulator),
                        **notify_policy(receiver, mail=False))
    deliveries = await notify.sweep_findings(svc, "audit", ["mailbox x: auditing off"])
    assert not deliveries[0].ok and "RESPONDER_WEBHOOK_SECRET" in deliveries[0].detail
    assert receiver.requests == []


async def test_a_failed_run_is_announced_even_without_a_notify_step(make_services, emulator,
                                                                   receiver):
    svc = make_services(**notify_policy(receiver, mail=False))
    await run_via_queue(svc, {"user": "ghost@contoso.com", "requestId": "n-ghost"})
    assert (await svc.journal.get_run("n-ghost")).state == "failed"
    assert receiver.events() == ["run.failed"]


async def test_policy_named_secret_signs_through_the_injected_transport(make_services,
                                                                        azurite, emulator):
    import httpx

    from tests.conftest import make_settings

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    policy = notify_policy(webhook="https://hooks.example/in", mail=False)
    policy["notify"]["webhookSecretSetting"] = "RESPONDER_HOOK_KEY"
    svc = make_services(settings=make_settings(azurite, emulator, RESPONDER_HOOK_KEY="own-key"),
                        **policy)
    svc.notify_transport = httpx.MockTransport(answer)
    deliveries = await notify.sweep_findings(svc, "audit", ["mailbox x: auditing off"])
    assert [d.ok for d in deliveries] == [True] and len(seen) == 1
    headers = seen[0].headers
    assert verify_signature("own-key", headers[TIMESTAMP_HEADER], seen[0].content,
                            headers[SIGNATURE_HEADER])
