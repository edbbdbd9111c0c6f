"""Guards added after an independent review: each test fails without its fix."""

from __future__ import annotations

import azure.functions as func
import pytest

from shared.errors import BadRequest, PolicyError, ValidationError
from shared.models import RemediationRequest
from shared.playbook.release import release_run
from shared.playbook.runner import run_request
from shared.policy import parse_policy
from shared.safety.notify import Notification, teams_card
from shared.tenant.graph.client import build_path
from tests.playbook.conftest import MEGAN, writes
from tests.safety.conftest import app_function


async def test_a_refused_run_cannot_be_released(make_services, emulator):
    svc = make_services(exclusions={"users": [MEGAN], "groups": []})
    out = await run_request(svc, RemediationRequest.model_validate(
        {"user": MEGAN, "requestId": "ref-1"}))
    assert out.run.state == "refused"
    with pytest.raises(ValidationError, match="refused"):
        await release_run(svc, RemediationRequest.model_validate(
            {"user": MEGAN, "action": "release", "runId": "ref-1"}))
    assert writes(emulator) == []


async def test_release_respects_the_global_dry_run(azurite, emulator, make_services):
    from tests.safety.conftest import safety_settings

    real = make_services()
    out = await run_request(real, RemediationRequest.model_validate(
        {"user": MEGAN, "requestId": "gdr", "actions": ["disable_account"]}))
    assert out.run.state == "finished"
    before = len(writes(emulator))
    dry = make_services(settings=safety_settings(
        azurite, emulator, RESPONDER_DRY_RUN="true",
        RESPONDER_JOURNAL_TABLE=real.settings.journal_table,
        RESPONDER_EVIDENCE_CONTAINER=real.settings.evidence_container))
    planned = await release_run(dry, RemediationRequest.model_validate(
        {"user": MEGAN, "action": "release", "runId": "gdr"}))
    assert any(r.status == "planned" for r in planned.results.values())
    assert len(writes(emulator)) == before


async def test_hostile_json_nesting_is_a_4xx_on_the_anonymous_endpoint(make_services):
    make_services()
    handler = app_function("approvals")
    req = func.HttpRequest("POST", "http://localhost/api/approvals",
                           headers={"content-type": "application/json"},
                           body=b"[" * 8000)
    resp = await handler(req)
    assert 400 <= resp.status_code < 500


def test_teams_cards_do_not_render_attacker_markdown():
    card = teams_card(Notification(event="x", title="rule [click](http://evil.test)",
                                   lines=["forward to *boss* [here](http://evil.test)"]))
    text = str(card)
    assert "](http" not in text and "*boss*" not in text


def test_webhook_secret_setting_cannot_borrow_another_secret():
    with pytest.raises(PolicyError):
        from shared.policy import parse_policy as parse

        parse({"notify": {"webhookSecretSetting": "RESPONDER_APPROVAL_SECRET"}})
    assert parse_policy({"notify": {"webhookSecretSetting": "RESPONDER_HOOK_KEY"}})


@pytest.mark.parametrize("segment", [".", "..", "", " "])
def test_dot_segments_never_reach_a_graph_path(segment):
    with pytest.raises(BadRequest):
        build_path("/users/{}/checkMemberGroups", segment)
