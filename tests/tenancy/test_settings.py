"""Settings for many tenants: per-tenant names valid for Azure, and the federated-app
settings refused when incomplete."""

from __future__ import annotations

import re
import uuid

import pytest

from shared.settings import EXTRA_SETTINGS, Settings, SettingsError

from .conftest import APP_CLIENT_ID, TENANT_B

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "RESPONDER_TENANT_ID": "3c9e5a71-8d2b-4f06-a4e1-7b5c2d9f0e68"}
TABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")


@pytest.mark.parametrize("tenant", [TENANT_B, TENANT_B.upper(), str(uuid.uuid4()),
                                    "ffffffff-ffff-ffff-ffff-ffffffffffff"])
def test_tenant_names_are_valid_azure_names(tenant):
    s = Settings.from_env(BASE)
    t = s.for_tenant(tenant)
    guid = tenant.lower()
    assert t.tenant_id == guid
    assert t.journal_table == "responderrunst" + guid.replace("-", "")
    assert t.evidence_container == "responder-evidence-" + guid
    assert TABLE.fullmatch(t.journal_table) and CONTAINER.fullmatch(t.evidence_container)
    # everything else is the deployment's
    assert (t.remediation_queue, t.graph_base_url, t.policy_path) == (
        s.remediation_queue, s.graph_base_url, s.policy_path)


def test_the_default_tenant_keeps_its_very_settings():
    s = Settings.from_env(BASE)
    assert s.for_tenant(BASE["RESPONDER_TENANT_ID"].upper()) is s
    assert s.is_default_tenant(None) and s.is_default_tenant("")


def test_other_tenants_are_named_by_guid_and_long_names_are_refused():
    s = Settings.from_env(BASE)
    with pytest.raises(SettingsError):
        s.for_tenant("fabrikam.com")
    long = Settings.from_env({**BASE, "RESPONDER_JOURNAL_TABLE": "r" * 40})
    with pytest.raises(SettingsError, match="RESPONDER_JOURNAL_TABLE"):
        long.for_tenant(TENANT_B)
    long = Settings.from_env({**BASE, "RESPONDER_EVIDENCE_CONTAINER": "e" * 30})
    with pytest.raises(SettingsError, match="RESPONDER_EVIDENCE_CONTAINER"):
        long.for_tenant(TENANT_B)


def test_new_settings_are_declared_with_their_defaults():
    declared = {s.name: s.default for s in EXTRA_SETTINGS}
    s = Settings.from_env(BASE)
    assert declared["RESPONDER_TENANTS_TABLE"] == s.tenants_table == "respondertenants"
    assert declared["RESPONDER_APP_CLIENT_ID"] == s.app_client_id == ""
    assert declared["RESPONDER_AUTHORITY_HOST"] == s.authority_host == ""


@pytest.mark.parametrize(("env", "name"), [
    ({"RESPONDER_CREDENTIAL": "federated-app", "AZURE_CLIENT_ID": "mi"},
     "RESPONDER_APP_CLIENT_ID"),
    ({"RESPONDER_CREDENTIAL": "federated-app", "AZURE_CLIENT_ID": "mi",
      "RESPONDER_APP_CLIENT_ID": "my-app"}, "RESPONDER_APP_CLIENT_ID"),
    ({"RESPONDER_CREDENTIAL": "federated-app", "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID},
     "AZURE_CLIENT_ID"),
    ({"RESPONDER_TENANTS_TABLE": "tenant-registry"}, "RESPONDER_TENANTS_TABLE"),
    ({"RESPONDER_AUTHORITY_HOST": "http://login.example"}, "RESPONDER_AUTHORITY_HOST"),
])
def test_bad_multi_tenant_settings_name_the_setting(env, name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, **env})


def test_federated_app_settings():
    s = Settings.from_env({**BASE, "RESPONDER_CREDENTIAL": "federated-app",
                           "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
                           "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID,
                           "RESPONDER_AUTHORITY_HOST": "https://login.example/"})
    assert s.credential == "federated-app" and s.app_client_id == APP_CLIENT_ID
    assert s.authority_host == "https://login.example"
