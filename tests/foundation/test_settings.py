"""Settings: the public names, defaults, and clear errors that name the setting."""

from __future__ import annotations

import pytest

from shared.settings import APP_SETTINGS, Settings, SettingsError

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RESPONDER_TENANT_ID": "t1"}


def test_contract_names_and_defaults():
    names = {s.name: s.default for s in APP_SETTINGS}
    assert names == {
        "AzureWebJobsStorage": None, "RESPONDER_TENANT_ID": None,
        "GRAPH_BASE_URL": "https://graph.microsoft.com",
        "EXCHANGE_BASE_URL": "https://outlook.office365.com",
        "RESPONDER_CREDENTIAL": "managed-identity", "RESPONDER_STATIC_TOKEN": "",
        "AZURE_CLIENT_ID": "", "REMEDIATION_QUEUE": "remediation-requests",
        "RESPONDER_POLICY": "policy.json", "RESPONDER_DRY_RUN": "false",
    }
    s = Settings.from_env(BASE)
    assert (s.graph_base_url, s.exchange_base_url) == ("https://graph.microsoft.com",
                                                       "https://outlook.office365.com")
    assert s.credential == "managed-identity" and s.remediation_queue == "remediation-requests"
    assert s.dry_run is False and s.policy_path == "policy.json"


@pytest.mark.parametrize(("env", "names"), [
    ({}, "AzureWebJobsStorage"),
    ({"AzureWebJobsStorage": "x"}, "RESPONDER_TENANT_ID"),
    ({**BASE, "GRAPH_BASE_URL": "http://graph.example.com"}, "GRAPH_BASE_URL"),
    ({**BASE, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"}, "GRAPH_BASE_URL"),
    ({**BASE, "RESPONDER_CREDENTIAL": "password"}, "RESPONDER_CREDENTIAL"),
    ({**BASE, "RESPONDER_CREDENTIAL": "static-token"}, "RESPONDER_STATIC_TOKEN"),
    ({**BASE, "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": "t"},
     "static-token"),
    ({**BASE, "RESPONDER_DRY_RUN": "maybe"}, "RESPONDER_DRY_RUN"),
    ({**BASE, "REMEDIATION_QUEUE": "Bad_Queue"}, "REMEDIATION_QUEUE"),
])
def test_bad_settings_name_the_setting(env, names):
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_static_token_allowed_on_loopback_only_and_never_shown():
    s = Settings.from_env({**BASE, "RESPONDER_CREDENTIAL": "static-token",
                           "RESPONDER_STATIC_TOKEN": "sekrit-token",
                           "GRAPH_BASE_URL": "http://127.0.0.1:1234/",
                           "EXCHANGE_BASE_URL": "http://localhost:1234"})
    assert s.graph_base_url == "http://127.0.0.1:1234" and s.loopback_only
    assert "sekrit-token" not in repr(s)


def test_identity_based_storage_is_accepted():
    s = Settings.from_env({"AzureWebJobsStorage__accountName": "acct",
                           "RESPONDER_TENANT_ID": "t"})
    assert s.storage_account == "acct" and s.storage_connection == ""
