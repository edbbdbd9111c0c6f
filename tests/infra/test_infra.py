"""infra/ agrees with the code: app settings, no keys, Flex Consumption Python 3.11, the
identity and its storage roles, and the Graph/Exchange permissions generated from the code.

Bicep cannot be compiled here; these tests read its text (tests/infra/bicep_checks.py), and
each check is shown to fail on a mutated copy so that a green run means something.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import permissions as generator
from shared import permissions
from shared.settings import APP_SETTINGS, EXTRA_SETTINGS
from tests.infra import bicep_checks as bc

INFRA = bc.INFRA
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
STORAGE = INFRA / "modules" / "storage.bicep"
GRAPH_MODULE = INFRA / "modules" / "graph-permissions.bicep"
PERMISSIONS_JSON = INFRA / "permissions.json"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mutate(source: str, old: str, new: str) -> str:
    """Replace exactly one occurrence, so a mutation that no longer applies fails loudly."""
    assert source.count(old) == 1, f"mutation target not found once: {old!r}"
    return source.replace(old, new)


# ------------------------------------------------------------------ (a) app settings


def test_every_contract_setting_is_set_identity_based() -> None:
    settings = bc.app_settings(text(MAIN))
    assert bc.check_app_settings(settings, APP_SETTINGS, EXTRA_SETTINGS) == []
    assert bc.string_value(settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    # the managed identity, unless the deployment is multi-tenant (test_multi_tenant_infra.py)
    assert settings["RESPONDER_CREDENTIAL"] == bc.MULTI_TENANT_CREDENTIAL
    assert "AzureWebJobsStorage" not in settings
    assert "RESPONDER_STATIC_TOKEN" not in settings


def test_app_settings_reach_the_site() -> None:
    """main.bicep passes appSettings (last, so the contract wins) and the site maps them all."""
    main = bc.strip_comments(text(MAIN))
    assert re.search(r"appSettings:\s*union\([^)]*\bappSettings\)", main)
    site = next(r for r in bc.resources(text(FUNCTION_APP)) if r.type == "Microsoft.Web/sites")
    assert re.search(r"appSettings:\s*\[\s*for\s+(\w+)\s+in\s+items\(appSettings\)", site.body)
    assert "@secure()\n@description('App settings" in text(FUNCTION_APP)


def test_dry_run_defaults_to_true_and_names_match_the_code() -> None:
    main_params = bc.params(text(MAIN))
    assert main_params["responderDryRun"].endswith("= 'true'")
    defaults = {s.name: s.default for s in (*APP_SETTINGS, *EXTRA_SETTINGS)}
    assert f"= '{defaults['REMEDIATION_QUEUE']}'" in main_params["remediationQueue"]
    assert f"= '{defaults['RESPONDER_POLICY']}'" in main_params["responderPolicy"]
    assert f"= '{defaults['GRAPH_BASE_URL']}'" in main_params["graphBaseUrl"]
    assert f"= '{defaults['EXCHANGE_BASE_URL']}'" in main_params["exchangeBaseUrl"]
    main = bc.strip_comments(text(MAIN))
    assert f"var journalTable = '{defaults['RESPONDER_JOURNAL_TABLE']}'" in main
    assert f"var evidenceContainer = '{defaults['RESPONDER_EVIDENCE_CONTAINER']}'" in main


def test_storage_has_the_queues_table_and_containers() -> None:
    storage = bc.strip_comments(text(STORAGE))
    queue_names = bc.block_after(storage, r"^\s*var\s+queueNames\s*=", openers="{[(")
    assert queue_names is not None
    for expected in ("remediationQueue", "'${remediationQueue}-poison'",
                     "'remediation-requests-poison'"):
        assert expected in queue_names
    types = {r.type for r in bc.resources(text(STORAGE))}
    assert {"Microsoft.Storage/storageAccounts/queueServices/queues",
            "Microsoft.Storage/storageAccounts/tableServices/tables",
            "Microsoft.Storage/storageAccounts/blobServices/containers"} <= types
    assert len([r for r in bc.resources(text(STORAGE))
                if r.type.endswith("/containers")]) == 2  # evidence + deployment package


def test_no_keys_or_connection_strings_anywhere() -> None:
    assert bc.check_no_storage_secrets(bc.read_infra()) == []


def test_flex_consumption_python_311() -> None:
    assert bc.check_flex_python(text(FUNCTION_APP)) == []


def test_identity_is_user_assigned() -> None:
    assert bc.check_user_assigned_identity(text(MAIN), text(FUNCTION_APP)) == []


def test_storage_is_hardened_and_roles_are_assigned() -> None:
    assert bc.check_storage(text(STORAGE)) == []


def test_parameters_file_matches_main_bicep() -> None:
    doc = bc.load_json(INFRA / "main.parameters.json")
    declared = bc.params(text(MAIN))
    unknown = set(doc["parameters"]) - set(declared)
    assert not unknown, f"main.parameters.json sets undeclared parameters: {unknown}"
    required = {name for name, rest in declared.items() if "=" not in rest}
    assert required <= set(doc["parameters"])
    raw = text(INFRA / "main.parameters.json")
    for var in ("${AZURE_ENV_NAME}", "${AZURE_LOCATION}", "${RESPONDER_TENANT_ID}"):
        assert var in raw


def test_azure_yaml_declares_the_function_service() -> None:
    azure_yaml = text(bc.REPO_ROOT / "azure.yaml")
    service = re.search(r"^services:\n  api:\n((?:    .*\n)+)", azure_yaml, re.MULTILINE)
    assert service, "azure.yaml must declare service `api`"
    body = service.group(1)
    for line in ("project: .", "language: python", "host: function"):
        assert f"    {line}\n" in body
    assert "'azd-service-name': 'api'" in text(FUNCTION_APP)


# -------------------------------------------------- the checks fail on broken templates


def test_misspelled_setting_is_reported() -> None:
    broken = mutate(text(MAIN), "  RESPONDER_DRY_RUN: responderDryRun",
                    "  RESPONDER_DRYRUN: responderDryRun")
    problems = bc.check_app_settings(bc.app_settings(broken), APP_SETTINGS, EXTRA_SETTINGS)
    assert any("RESPONDER_DRY_RUN" in p and "not set" in p for p in problems)
    assert any("RESPONDER_DRYRUN" in p and "misspelled" in p for p in problems)


def test_key_based_storage_setting_is_reported() -> None:
    broken = mutate(
        text(MAIN), "  AzureWebJobsStorage__accountName: storage.outputs.accountName",
        "  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=x;"
        "AccountKey=${stg.listKeys().keys[0].value}'")
    problems = bc.check_app_settings(bc.app_settings(broken), APP_SETTINGS, EXTRA_SETTINGS)
    assert any("AzureWebJobsStorage must not be set" in p for p in problems)
    assert any("AzureWebJobsStorage__accountName is not set" in p for p in problems)
    secrets = bc.check_no_storage_secrets({"infra/main.bicep": broken})
    assert {"AccountKey=", "listKeys(", "DefaultEndpointsProtocol="} <= {
        label for label in bc.SECRET_PATTERNS if any(label in p for p in secrets)}


def test_static_token_and_storage_connection_string_are_reported() -> None:
    broken = mutate(text(MAIN),
                    "  RESPONDER_CREDENTIAL: multiTenant ? 'federated-app' : 'managed-identity'",
                    "  RESPONDER_CREDENTIAL: 'static-token'\n  RESPONDER_STATIC_TOKEN: 'x'")
    problems = bc.check_app_settings(bc.app_settings(broken), APP_SETTINGS, EXTRA_SETTINGS)
    assert any("RESPONDER_STATIC_TOKEN must not be set" in p for p in problems)
    assert any("RESPONDER_CREDENTIAL must be 'managed-identity'" in p for p in problems)
    leak = "output storageConnectionString string = storage.outputs.connectionString\n"
    assert bc.check_no_storage_secrets({"infra/main.bicep": text(MAIN) + leak})


def test_comments_do_not_hide_or_fake_settings() -> None:
    commented = mutate(text(MAIN), "  GRAPH_BASE_URL: graphBaseUrl",
                       "  // GRAPH_BASE_URL: graphBaseUrl")
    problems = bc.check_app_settings(bc.app_settings(commented), APP_SETTINGS, EXTRA_SETTINGS)
    assert problems == ["app setting GRAPH_BASE_URL (shared/settings.py APP_SETTINGS) is not set"]
    # a URL inside a string is not a comment
    assert bc.strip_comments("x: 'https://a//b' // c") == "x: 'https://a//b' "


def test_wrong_runtime_or_plan_is_reported() -> None:
    source = text(FUNCTION_APP)
    assert bc.check_flex_python(mutate(source, "version: '3.11'", "version: '3.12'")) == [
        "functionAppConfig.runtime.version must be '3.11'"]
    assert "plan sku must be FC1 (Flex Consumption)" in bc.check_flex_python(
        mutate(source, "name: 'FC1'", "name: 'Y1'"))
    assert "deployment storage must authenticate with the UserAssignedIdentity" in \
        bc.check_flex_python(mutate(source, "type: 'UserAssignedIdentity'",
                                    "type: 'StorageAccountConnectionString'"))


def test_system_assigned_identity_is_reported() -> None:
    broken = mutate(text(FUNCTION_APP), "type: 'UserAssigned'\n",
                    "type: 'SystemAssigned, UserAssigned'\n")
    assert bc.check_user_assigned_identity(text(MAIN), broken)


def test_missing_storage_role_or_weak_account_is_reported() -> None:
    source = text(STORAGE)
    problems = bc.check_storage(mutate(source, "  roles.tableDataContributor\n]", "]"))
    assert problems == ["Storage Table Data Contributor (0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3) "
                        "is not assigned to the identity"]
    problems = bc.check_storage(mutate(source, "allowSharedKeyAccess: false",
                                       "allowSharedKeyAccess: true"))
    assert any("allowSharedKeyAccess" in p for p in problems)


# --------------------------------------------------- (b) permissions.json is up to date


def test_permissions_json_is_generated_from_the_code() -> None:
    expected = generator.render()
    current = text(PERMISSIONS_JSON)
    assert current == expected, (
        "infra/permissions.json is out of date: run `python -m devtools.permissions`\n"
        + generator.diff(current, expected, PERMISSIONS_JSON))


def test_permissions_json_shape() -> None:
    doc = bc.load_json(PERMISSIONS_JSON)
    assert list(doc) == ["generatedBy", "graphResourceAppId", "exchangeResourceAppId",
                         "graphApplicationPermissions", "exchangeApplicationPermissions",
                         "directoryRoles", "components", "optionalGraphApplicationPermissions"]
    # requested only when the policy enables the component: never in the granted union
    optional = doc["optionalGraphApplicationPermissions"]
    assert optional == permissions.optional_summary()
    assert set(optional) <= set(doc["components"])
    assert "RoleManagement.ReadWrite.Directory" in optional["step:remove_admin_roles"]
    assert "RoleManagement.ReadWrite.Directory" not in doc["graphApplicationPermissions"]
    assert "devtools.permissions" in doc["generatedBy"]
    for key in ("graphApplicationPermissions", "exchangeApplicationPermissions",
                "directoryRoles"):
        assert doc[key] == sorted(set(doc[key]))
    assert list(doc["components"]) == sorted(doc["components"])
    for entry in doc["components"].values():
        assert set(entry) == {"graph", "exchange", "roles", "why"}
    assert doc["graphApplicationPermissions"] == permissions.summary()[
        "graphApplicationPermissions"]


def test_a_new_declaration_makes_the_file_stale(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "permissions.json"
    assert generator.main(["--output", str(out)]) == 0
    assert generator.main(["--check", "--output", str(out)]) == 0
    monkeypatch.setitem(
        permissions._CATALOGUE.entries, "zz_test_step",
        permissions.Requirement("zz_test_step", graph=("Zz.Test.Graph.All",),
                                exchange=("Zz.Test.Exchange",),
                                roles=("Zz Test Role",), why="test"))
    capsys.readouterr()
    assert generator.render() != text(out)
    assert generator.main(["--check", "--output", str(out)]) == 1
    shown = capsys.readouterr().out
    assert '+    "Zz.Test.Graph.All"' in shown
    assert '+    "Zz.Test.Exchange"' in shown
    assert generator.main(["--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["components"]["zz_test_step"] == {
        "graph": ["Zz.Test.Graph.All"], "exchange": ["Zz.Test.Exchange"],
        "roles": ["Zz Test Role"], "why": "test"}
    assert "Zz Test Role" in doc["directoryRoles"]


def test_check_cli_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "devtools.permissions", "--check"],
                            cwd=bc.REPO_ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------- (c) the Graph module consumes permissions.json


def test_graph_module_consumes_permissions_json() -> None:
    problems = bc.check_graph_module(text(GRAPH_MODULE), permissions.GRAPH_APP_ID,
                                     permissions.EXCHANGE_APP_ID)
    assert problems == []
    # the relative path in loadJsonContent resolves to the generated file
    assert (GRAPH_MODULE.parent / "../permissions.json").resolve() == PERMISSIONS_JSON
    main = bc.strip_comments(text(MAIN))
    module = bc.block_after(main, r"^module\s+\w+\s+'modules/graph-permissions\.bicep'")
    assert module and "principalId: identity.properties.principalId" in module
    config = bc.load_json(INFRA / "bicepconfig.json")
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")


def test_optional_permissions_are_granted_only_when_enabled() -> None:
    """graph-permissions.bicep grants permissions.json's optional map only for the
    components main.bicep enables; role removal is off unless the deployer turns it on."""
    module = bc.strip_comments(text(GRAPH_MODULE))
    assert re.search(r"param\s+optionalComponents\s+array\s*=\s*\[\]", module)
    assert "permissions.optionalGraphApplicationPermissions[component]" in module
    assert re.search(r"!contains\(graphPermissions, permission\)", module)
    loop = bc.block_after(module, r"^resource\s+optionalGraphAssignments\s+'Microsoft\.Graph/"
                                  r"appRoleAssignedTo@v1\.0'\s*=")
    assert loop and re.search(r"for\s+permission\s+in\s+optionalPermissions\s*:", loop)
    assert "resourceId: graphSp.id" in loop
    main = bc.strip_comments(text(MAIN))
    assert bc.params(main)["enableRoleRemoval"].endswith("= false")
    call = bc.block_after(main, r"^module\s+\w+\s+'modules/graph-permissions\.bicep'")
    assert call and "optionalComponents: enableRoleRemoval ? ['step:remove_admin_roles'] : []" \
        in call
    assert set(permissions.optional_summary()) == {"step:remove_admin_roles"}, \
        "a new optional component needs its own deployment parameter in main.bicep"
    params = bc.load_json(INFRA / "main.parameters.json")["parameters"]
    assert params["enableRoleRemoval"]["value"] == "${RESPONDER_ENABLE_ROLE_REMOVAL=false}"


def test_hard_coded_permission_list_is_reported() -> None:
    broken = mutate(text(GRAPH_MODULE), "loadJsonContent('../permissions.json')",
                    "{ graphApplicationPermissions: [ 'User.Read.All' ], "
                    "exchangeApplicationPermissions: [] }")
    problems = bc.check_graph_module(broken, permissions.GRAPH_APP_ID,
                                     permissions.EXCHANGE_APP_ID)
    assert any("loadJsonContent" in p for p in problems)
    assert any("hard-codes permission names: ['User.Read.All']" in p for p in problems)
    wrong_sp = mutate(text(GRAPH_MODULE), "00000002-0000-0ff1-ce00-000000000000",
                      "00000003-0000-0000-c000-000000000000")
    assert any("Office 365 Exchange Online" in p for p in bc.check_graph_module(
        wrong_sp, permissions.GRAPH_APP_ID, permissions.EXCHANGE_APP_ID))


# -------------------------------------------------------------------- (d) checkov


def checkov_command() -> list[str] | None:
    """CHECKOV_BIN, else `checkov` on PATH, else the importable module."""
    if os.environ.get("CHECKOV_BIN"):
        return [os.environ["CHECKOV_BIN"]]
    found = shutil.which("checkov")
    if found:
        return [found]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    return None


def test_every_checkov_skip_has_a_reason() -> None:
    files = bc.read_infra()
    assert bc.check_skip_comments(files) == []
    assert bc.check_skip_comments({"x.bicep": "// checkov:skip=CKV_AZURE_35"})
    assert any("checkov:skip=" in t for t in files.values())


def test_checkov_passes_offline() -> None:
    command = checkov_command()
    if command is None:
        pytest.skip("checkov is not installed (pip install checkov==3.3.30, or set CHECKOV_BIN)")
    result = subprocess.run([*command, "--config-file", "infra/.checkov.yaml"],
                            cwd=bc.REPO_ROOT, capture_output=True, text=True, timeout=600,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Failed checks: 0\b", output), output
    assert "Parsing errors" not in output, output
    assert "Error parsing" not in output, output  # a file checkov could not read is unscanned
