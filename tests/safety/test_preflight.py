"""The preflight against the emulator over HTTP, with JWT-shaped tokens the emulator
enforces: the full grant is all OK (exit 0); a missing permission, directory role, policy
group or break-glass account, or Identity Protection licence is named with its fix and the
exit code is 1; `--json` keeps its field names; the token never appears in any output; the
timer runs in-process with a real TimerRequest and notifies when something is missing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.functions.timer import TimerRequest

import function_app
from devtools.emulator import EmulatorServer, load_tenant
from devtools.emulator.authz import app_grant_from_file, make_jwt
from devtools.localhost import app_functions
from functions import runtime
from shared.cli import main_async
from shared.policy import parse_policy
from shared.preflight import Report, run_preflight, token_claims
from shared.services import Services
from shared.settings import EXTRA_SETTINGS
from tests.conftest import make_settings
from tests.playbook.conftest import DEMO_POLICY

ROLES, DIRECTORY_ROLES = app_grant_from_file()
GRAPH_ROLES = sorted(r for r in ROLES if r != "Exchange.ManageAsApp")


class ScopedTokens:
    """A credential that answers each scope with its own token, as Entra does."""

    def __init__(self, graph: str, exchange: str) -> None:
        self._tokens = {"graph": graph, "exchange": exchange}

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        key = "exchange" if "outlook.office365.com" in scopes[0] else "graph"
        return AccessToken(self._tokens[key], int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> ScopedTokens:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def demo_seed(**extra: Any) -> dict[str, Any]:
    seed = load_tenant("devtools/tenants/demo.json").dump()
    seed.update(extra)
    return seed


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """The demo tenant, or the seed a test passes by indirect parametrisation."""
    seed = getattr(request, "param", None) or demo_seed()
    with EmulatorServer(seed, token="fixed-emulator-token", seed=1) as server:
        yield server


@pytest.fixture
async def make(azurite: Any, tenant: EmulatorServer) -> AsyncIterator[Any]:
    built: list[Services] = []

    def build(*, roles: list[str] | None = None, directory_roles: list[str] | None = None,
              env: dict[str, str] | None = None, **policy: Any) -> Services:
        graph = tenant.issue_token(GRAPH_ROLES if roles is None else roles,
                                   directory_roles=directory_roles)
        exchange = tenant.issue_token(["Exchange.ManageAsApp"],
                                      directory_roles=directory_roles, audience="exchange")
        svc = Services.create(make_settings(azurite, tenant, **(env or {})),
                              credential=ScopedTokens(graph, exchange),
                              policy=parse_policy({**DEMO_POLICY, **policy}))
        built.append(svc)
        return svc

    yield build
    for svc in built:
        await svc.close()


def by_name(report: Report) -> dict[str, Any]:
    return {c.check: c for c in report.checks}


async def test_the_full_grant_is_all_ok(make: Any) -> None:
    report = await run_preflight(make(), env={})
    assert [c.check for c in report.checks if c.status != "ok"] == []
    assert report.ok and report.exit_code == 0
    names = by_name(report)
    assert names["graph-permission:IdentityRiskyUser.ReadWrite.All"].status == "ok"
    assert names["directory-role:Privileged Authentication Administrator"].status == "ok"
    assert names["exchange:admin-api"].status == "ok"
    assert names["licence:identity-protection"].status == "ok"


async def test_a_missing_permission_is_named_with_its_fix(make: Any) -> None:
    roles = [r for r in GRAPH_ROLES if r != "IdentityRiskyUser.ReadWrite.All"]
    report = await run_preflight(make(roles=roles), env={})
    check = by_name(report)["graph-permission:IdentityRiskyUser.ReadWrite.All"]
    assert check.status == "missing"
    assert "step:confirm_compromised" in check.features
    assert "grant the application permission IdentityRiskyUser.ReadWrite.All" in check.fix
    assert report.exit_code == 1
    assert [c.check for c in report.missing] == [check.check]


async def test_a_permission_only_a_disabled_feature_needs_is_a_warning(make: Any) -> None:
    """User-PasswordProfile.ReadWrite.All is needed by reset_password only; a policy whose
    playbooks do not name it does not need it."""
    perm = "User-PasswordProfile.ReadWrite.All"
    standard = ["collect_evidence", "revoke_sessions", "notify"]
    svc = make(roles=[r for r in GRAPH_ROLES if r != perm], playbooks={"standard": standard},
               riskLevelPlaybooks={"high": "standard", "medium": "standard", "low": "standard"})
    report = await run_preflight(svc, env={})
    check = by_name(report)[f"graph-permission:{perm}"]
    assert check.status == "warning" and "disabled" in check.detail
    assert check.features == ["step:reset_password"]
    assert report.exit_code == 0


async def test_an_optional_permission_is_checked_only_when_a_playbook_uses_its_step(
        make: Any) -> None:
    """RoleManagement.ReadWrite.Directory (remove_admin_roles) is requested only when the
    policy enables the step: not checked at all without it, missing with it."""
    perm = "RoleManagement.ReadWrite.Directory"
    assert perm not in GRAPH_ROLES  # not in the granted union of permissions.json
    report = await run_preflight(make(), env={})
    assert f"graph-permission:{perm}" not in by_name(report) and report.exit_code == 0

    with_step = {"full": ["collect_evidence", "remove_admin_roles", "notify"]}
    levels = {"high": "full", "medium": "full", "low": "full"}
    report = await run_preflight(make(playbooks=with_step, riskLevelPlaybooks=levels), env={})
    check = by_name(report)[f"graph-permission:{perm}"]
    assert check.status == "missing" and check.features == ["step:remove_admin_roles"]
    assert "enableRoleRemoval" in check.fix and report.exit_code == 1

    granted = make(roles=[*GRAPH_ROLES, perm], playbooks=with_step, riskLevelPlaybooks=levels)
    assert by_name(await run_preflight(granted, env={}))[f"graph-permission:{perm}"].status \
        == "ok"


async def test_a_missing_directory_role_is_named_with_its_fix(make: Any) -> None:
    held = [r for r in DIRECTORY_ROLES if r != "User Administrator"]
    report = await run_preflight(make(directory_roles=held), env={})
    check = by_name(report)["directory-role:User Administrator"]
    assert check.status == "missing"
    assert "step:reset_password" in check.features
    assert "assign the directory role" in check.fix and "object id" in check.fix
    assert by_name(report)["directory-role:Exchange Administrator"].status == "ok"
    assert report.exit_code == 1


async def test_without_the_exchange_role_the_admin_api_is_missing(make: Any) -> None:
    held = [r for r in DIRECTORY_ROLES if r != "Exchange Administrator"]
    report = await run_preflight(make(directory_roles=held), env={})
    names = by_name(report)
    assert names["exchange:admin-api"].status == "missing"
    assert "HTTP 401" in names["exchange:admin-api"].detail
    assert "Exchange Administrator" in names["exchange:admin-api"].fix
    assert names["directory-role:Exchange Administrator"].status == "missing"


async def test_missing_policy_group_and_break_glass_account(make: Any) -> None:
    svc = make(exclusions={"users": ["breakglass-typo@contoso.onmicrosoft.com"],
                           "groups": ["6a1d9b4f-3c8e-4d52-8f66-1b2c3d4e5f60"]},
               mfa={"conditionalAccessGroupId": "00000000-1111-2222-3333-444444444444"})
    report = await run_preflight(svc, env={})
    names = by_name(report)
    user = names["policy:exclusions.users:breakglass-typo@contoso.onmicrosoft.com"]
    assert user.status == "missing" and "protects nobody" in user.detail
    assert "correct the UPN" in user.fix
    group = names["policy:mfa.conditionalAccessGroupId"]
    assert group.status == "missing" and "00000000-1111" in group.detail
    assert names["policy:exclusions.groups:6a1d9b4f-3c8e-4d52-8f66-1b2c3d4e5f60"].status == "ok"
    assert report.exit_code == 1


@pytest.mark.parametrize("tenant", [demo_seed(licences={"identityProtection": False})],
                         indirect=True)
async def test_no_identity_protection_licence(make: Any) -> None:
    report = await run_preflight(make(), env={})
    check = by_name(report)["licence:identity-protection"]
    assert check.status == "missing"
    assert check.detail == ("Identity Protection (Entra ID P2) not available: risk-based "
                            "intake and confirm_compromised cannot run")
    assert "license Microsoft Entra ID P2" in check.fix
    assert report.exit_code == 1
    # the same tenant with the poller off and no confirm_compromised: only a warning
    playbooks = {"standard": ["collect_evidence", "revoke_sessions", "notify"]}
    calm = await run_preflight(make(playbooks=playbooks,
                                    riskLevelPlaybooks={"high": "standard",
                                                        "medium": "standard",
                                                        "low": "standard"},
                                    sweeps={"riskyUsers": {"mode": "report"}}),
                               env={"AzureWebJobs.risk_poller.Disabled": "true"})
    licence = by_name(calm)["licence:identity-protection"]
    # the risky-users sweep still reads riskyUsers: the only feature left that needs P2
    assert licence.status == "missing" and licence.features == ["sweep:risky_users"]


async def test_dry_run_says_what_turning_it_off_would_write(make: Any) -> None:
    report = await run_preflight(make(env={"RESPONDER_DRY_RUN": "true"}), env={})
    check = by_name(report)["dry-run"]
    assert check.status == "warning" and "reset_password" in check.detail
    assert "RESPONDER_DRY_RUN=false" in check.fix
    assert report.exit_code == 0  # warnings are allowed
    assert "collect_evidence" not in report.writing_steps["full-containment"]


async def test_a_users_token_gives_warnings_not_verdicts(azurite: Any,
                                                        tenant: EmulatorServer) -> None:
    """`RESPONDER_CREDENTIAL=default` on a laptop: a person's delegated token says nothing
    about the app's rights; refusals become warnings, the exit code stays 0."""
    user_token = make_jwt({"tid": tenant.tenant.tenant_id, "idtyp": "user",
                           "scp": "User.Read", "oid": "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"})
    svc = Services.create(make_settings(azurite, tenant),
                          credential=ScopedTokens(user_token, user_token),
                          policy=parse_policy(DEMO_POLICY))
    try:
        report = await run_preflight(svc, env={})
    finally:
        await svc.close()
    names = by_name(report)
    assert "user's token" in names["token:graph"].detail
    assert names["graph-permission:User.Read.All"].status == "warning"
    assert report.missing == [] and report.exit_code == 0


def test_token_claims_reads_the_payload_only() -> None:
    assert token_claims("not-a-jwt") is None
    assert token_claims("a.%%%.c") is None
    with EmulatorServer(demo_seed(), token="x") as server:
        claims = token_claims(server.issue_token(["User.Read.All"]))
    assert claims is not None and claims["roles"] == ["User.Read.All"] and claims["oid"]


# ---------------------------------------------------------------- the command line
def _env(monkeypatch: pytest.MonkeyPatch, azurite: Any, emulator: EmulatorServer,
         token: str) -> None:
    settings = make_settings(azurite, emulator)
    for key, value in {
        "AzureWebJobsStorage": settings.storage_connection,
        "RESPONDER_TENANT_ID": settings.tenant_id, "GRAPH_BASE_URL": emulator.base_url,
        "EXCHANGE_BASE_URL": emulator.base_url, "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": token, "RESPONDER_JOURNAL_TABLE": settings.journal_table,
        "REMEDIATION_QUEUE": settings.remediation_queue,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
    }.items():
        monkeypatch.setenv(key, value)


async def test_cli_json_shape_exit_code_and_no_token_anywhere(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, azurite: Any, tenant: EmulatorServer) -> None:
    caplog.set_level(logging.DEBUG)
    token = tenant.issue_token(ROLES)  # one static token for both audiences
    _env(monkeypatch, azurite, tenant, token)
    assert await main_async(["preflight", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc) == {"schemaVersion", "tenant", "ok", "exitCode", "dryRun", "summary",
                        "enabledFeatures", "dryRunOff", "checks"}
    assert doc["schemaVersion"] == 1 and doc["ok"] is True and doc["exitCode"] == 0
    assert set(doc["summary"]) == {"ok", "missing", "warning"}
    assert all(set(c) == {"check", "area", "status", "detail", "fix", "features"}
               for c in doc["checks"])
    assert {c["status"] for c in doc["checks"]} <= {"ok", "missing", "warning"}
    # the table, and a tenant that lacks a permission: exit 1
    partial = tenant.issue_token([r for r in ROLES if r != "SecurityEvents.Read.All"])
    monkeypatch.setenv("RESPONDER_STATIC_TOKEN", partial)
    assert await main_async(["preflight"]) == 1
    table_out, table_err = capsys.readouterr()
    assert "graph-permission:SecurityEvents.Read.All" in table_out
    assert "MISSING" in table_out and "fix: grant the application permission" in table_out
    for text in (out, err, table_out, table_err, caplog.text):
        assert token not in text and partial not in text
        assert token.split(".")[1] not in text  # not even the claims segment


async def test_cli_bad_settings_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESPONDER_TENANT_ID", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    assert await main_async(["preflight"]) == 2


# ---------------------------------------------------------------- the timer
def test_the_timer_binds_its_schedule_setting_and_runs_on_startup() -> None:
    fn = next(f for f in app_functions(function_app.app) if f.get_function_name() == "preflight")
    binding = fn.get_bindings()[0]
    assert binding.type == "timerTrigger"
    assert binding.schedule == "%RESPONDER_PREFLIGHT_SCHEDULE%"
    assert binding.run_on_startup is True
    defaults = {s.name: s.default for s in EXTRA_SETTINGS}
    assert len(defaults["RESPONDER_PREFLIGHT_SCHEDULE"].split()) == 6


@pytest.mark.parametrize("tenant", [demo_seed(licences={"identityProtection": False})],
                         indirect=True)
async def test_the_timer_notifies_when_something_is_missing(
        make: Any, tenant: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    svc = make()
    fn = next(f for f in app_functions(function_app.app)
              if f.get_function_name() == "preflight").get_user_function()
    runtime.use_services(svc)
    try:
        before = len(tenant.state()["sentMail"])
        await fn(TimerRequest(past_due=False))
        sent = tenant.state()["sentMail"][before:]
        assert len(sent) == 1
        text = json.dumps(sent[0])
        assert "preflight" in text and "licence:identity-protection" in text
        assert "Entra ID P2" in text
        assert "preflight: 1 missing" in caplog.text
    finally:
        runtime.use_services(None)


async def test_the_timer_is_quiet_when_all_is_ok(make: Any, tenant: EmulatorServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    runtime.use_services(make())
    fn = next(f for f in app_functions(function_app.app)
              if f.get_function_name() == "preflight").get_user_function()
    try:
        await fn(TimerRequest())
    finally:
        runtime.use_services(None)
    assert tenant.state()["sentMail"] == demo_seed()["sentMail"]
    assert "preflight OK" in caplog.text
