"""infra/ in multi-tenant mode: off by default (today's deployment unchanged), and when on,
one multi-tenant app registration whose only credential is the app's user-assigned managed
identity, requesting exactly infra/permissions.json, with nothing per customer tenant.

Bicep cannot be compiled here: these checks read the text (tests/infra/bicep_checks.py), and
each is shown to fail on a mutated copy. The facts they hold the template to are cited in
docs/multi-tenant.md ("Deployment").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from shared import permissions
from shared.settings import APP_SETTINGS, EXTRA_SETTINGS, CredentialKind
from tests.infra import bicep_checks as bc

INFRA = bc.INFRA
MAIN = INFRA / "main.bicep"
APP_MODULE = INFRA / "modules" / "responder-app.bicep"
STORAGE = INFRA / "modules" / "storage.bicep"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mutate(source: str, old: str, new: str) -> str:
    """Replace exactly one occurrence, so a mutation that no longer applies fails loudly."""
    assert source.count(old) == 1, f"mutation target not found once: {old!r}"
    return source.replace(old, new)


def app_problems(source: str) -> list[str]:
    return bc.check_responder_app(source, permissions.GRAPH_APP_ID, permissions.EXCHANGE_APP_ID)


# ------------------------------------------------------------------------ the template


def test_multi_tenant_mode_is_off_by_default_and_fully_behind_the_switch() -> None:
    assert bc.check_multi_tenant_main(text(MAIN)) == []
    doc = bc.load_json(INFRA / "main.parameters.json")
    assert doc["parameters"]["multiTenant"]["value"] == "${RESPONDER_MULTI_TENANT=false}"


def test_the_app_registration_is_multi_tenant_and_trusts_the_managed_identity() -> None:
    assert app_problems(text(APP_MODULE)) == []
    # the relative path resolves to the generated file
    assert (APP_MODULE.parent / "../permissions.json").resolve() == INFRA / "permissions.json"


def test_the_registry_table_and_its_operator_access_exist_only_in_multi_tenant_mode() -> None:
    assert bc.check_tenants_table(text(STORAGE)) == []
    call = bc.block_after(bc.strip_comments(text(MAIN)), r"^module\s+storage\s+")
    assert call and "multiTenant: multiTenant" in call
    defaults = {s.name: s.default for s in (*APP_SETTINGS, *EXTRA_SETTINGS)}
    assert f"var tenantsTable = '{defaults['RESPONDER_TENANTS_TABLE']}'" in \
        bc.strip_comments(text(MAIN))


def test_settings_of_either_mode_are_known_to_the_code() -> None:
    """The multi-tenant settings are real settings (shared/settings.py), and the credential
    kind the template selects is one the code accepts."""
    code = bc.strip_comments(text(MAIN))
    var = re.search(r"^var\s+multiTenantAppSettings\s*=\s*multiTenant\s*\?\s*", code,
                    re.MULTILINE)
    assert var
    block = bc.block_after(code[var.end():], r"^", openers="{")
    assert block
    entries = bc.object_entries(block)
    assert bc.check_app_settings({**bc.app_settings(text(MAIN)), **entries}, APP_SETTINGS,
                                 EXTRA_SETTINGS) == []
    assert {"federated-app", "managed-identity"} <= set(get_args(CredentialKind))


def test_checkov_skips_only_the_graph_extension_modules() -> None:
    """checkov cannot parse `extension`; the two Graph-only modules are the only skip-paths,
    and no Azure resource hides in them."""
    config = text(INFRA / ".checkov.yaml")
    skipped = re.findall(r"^\s*-\s*(infra/\S+)$", config.split("skip-path:")[1], re.MULTILINE)
    assert skipped == ["infra/modules/graph-permissions.bicep",
                       "infra/modules/responder-app.bicep"]
    for path in skipped:
        types = {r.type for r in bc.resources(text(bc.REPO_ROOT / path))}
        assert types and all(t.startswith("Microsoft.Graph/") or t == "federatedIdentityCredentials"
                             for t in types), types


def test_permissions_json_holds_both_resource_apps() -> None:
    """What requiredResourceAccess reads: the two resource apps and their permission lists."""
    doc = json.loads(text(INFRA / "permissions.json"))
    assert doc["graphResourceAppId"] == permissions.GRAPH_APP_ID
    assert doc["exchangeResourceAppId"] == permissions.EXCHANGE_APP_ID
    assert "Exchange.ManageAsApp" in doc["exchangeApplicationPermissions"]


# ----------------------------------------------------- the checks fail on broken templates


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("param multiTenant bool = false", "param multiTenant bool = true",
     "param multiTenant bool = false is missing"),
    ("  RESPONDER_CREDENTIAL: multiTenant ? 'federated-app' : 'managed-identity'",
     "  RESPONDER_CREDENTIAL: 'federated-app'", "RESPONDER_CREDENTIAL must be"),
    ("  RESPONDER_APP_CLIENT_ID: responderApp.outputs.appId",
     "  RESPONDER_APP_CLIENT_ID: identity.properties.clientId",
     "RESPONDER_APP_CLIENT_ID must be the app registration's appId"),
    ("multiTenantAppSettings, appSettings)", "appSettings)",
     "multiTenantAppSettings must reach the site"),
    ("module responderApp 'modules/responder-app.bicep' = if (multiTenant) {",
     "module responderApp 'modules/responder-app.bicep' = {",
     "module responderApp 'modules/responder-app.bicep' = if (multiTenant) is missing"),
    ("    identityPrincipalId: identity.properties.principalId\n    optionalComponents",
     "    identityPrincipalId: operatorPrincipalId\n    optionalComponents",
     "must trust the user-assigned identity"),
    ("= if (grantApiPermissions && !multiTenant) {", "= if (grantApiPermissions) {",
     "graphPermissions (to the managed identity) must be"),
    ("    principalId: multiTenant ? responderApp.outputs.servicePrincipalId : ''",
     "    principalId: identity.properties.principalId",
     "appPermissions must grant permissions.json to the app's service principal"),
])
def test_a_broken_main_template_is_reported(old: str, new: str, expected: str) -> None:
    problems = bc.check_multi_tenant_main(mutate(text(MAIN), old, new))
    assert any(expected in p for p in problems), problems


def test_an_identity_client_id_override_is_reported() -> None:
    broken = mutate(text(MAIN), "  RESPONDER_TENANTS_TABLE: tenantsTable\n",
                    "  RESPONDER_TENANTS_TABLE: tenantsTable\n"
                    "  AZURE_CLIENT_ID: responderApp.outputs.appId\n")
    assert "AZURE_CLIENT_ID must stay the managed identity in multiTenant" in \
        bc.check_multi_tenant_main(broken)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("signInAudience: 'AzureADMultipleOrgs'", "signInAudience: 'AzureADMyOrg'",
     "must be multi-tenant"),
    ("      'api://AzureADTokenExchange'\n", "      'api://AzureADTokenExchange'\n"
     "      'api://example'\n", "audience must be api://AzureADTokenExchange only"),
    ("    subject: identityPrincipalId", "    subject: uniqueName",
     "subject must be the managed identity"),
    ("var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'",
     "var issuer = '${environment().authentication.loginEndpoint}common/v2.0'",
     "issuer must be"),
    ("contains(exchangePermissions, role.value)", "contains(['Exchange.ManageAsApp'], "
     "role.value)", "hard-codes permission names: ['Exchange.ManageAsApp']"),
    ("contains(requestedGraphPermissions, role.value)), role => { id: role.id, type: 'Role' })",
     "contains(requestedGraphPermissions, role.value)), role => { id: role.id, type: 'Scope' })",
     "Microsoft Graph app roles named in permissions.json as application permissions"),
    ("var requestedGraphPermissions = concat(graphPermissions, optionalPermissions)",
     "var requestedGraphPermissions = optionalPermissions",
     "requestedGraphPermissions must be graphApplicationPermissions plus"),
    ("resource appSp 'Microsoft.Graph/servicePrincipals@v1.0' = {\n  appId: app.appId",
     "resource appSp 'Microsoft.Graph/servicePrincipals@v1.0' = {\n  appId: uniqueName",
     "needs its service principal in this tenant"),
    ("00000002-0000-0ff1-ce00-000000000000", "00000003-0000-0000-c000-000000000000",
     "Office 365 Exchange Online app roles"),
])
def test_a_broken_app_registration_is_reported(old: str, new: str, expected: str) -> None:
    problems = app_problems(mutate(text(APP_MODULE), old, new))
    assert any(expected in p for p in problems), problems


def test_a_missing_federated_credential_is_reported() -> None:
    source = text(APP_MODULE)
    start = source.index("  resource managedIdentityCredential")
    end = source.index("  }\n", start) + len("  }\n")
    assert app_problems(source[:start] + source[end:]) == [
        "the app registration has no federatedIdentityCredentials@v1.0"]


@pytest.mark.parametrize(("old", "new"), [
    ("= if (multiTenant) {\n  parent: tableService", "= {\n  parent: tableService"),
    ("  scope: tenants\n", "  scope: account\n"),
    ("= if (multiTenant && !empty(operatorPrincipalId)) {", "= if (!empty(operatorPrincipalId)) {"),
])
def test_a_broken_registry_table_is_reported(old: str, new: str) -> None:
    assert bc.check_tenants_table(mutate(text(STORAGE), old, new))
