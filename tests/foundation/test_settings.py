"""Settings: the public names, defaults, and clear errors that name the setting."""

from __future__ import annotations

import dataclasses

import pytest

from shared.settings import APP_SETTINGS, EXTRA_SETTINGS, Settings, SettingsError

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


FEATURE_FIELDS = {
    "RESPONDER_POLL_LOOKBACK_MINUTES": ("poll_lookback_minutes", "90", 90.0),
    "RESPONDER_POLL_OVERLAP_MINUTES": ("poll_overlap_minutes", "2.5", 2.5),
    "RESPONDER_WEBHOOK_SHARED_SECRET": ("webhook_shared_secret", "shared-s3cret", "shared-s3cret"),
    "RESPONDER_GRAPH_CLIENT_STATE": ("graph_client_state", " state-s3cret ", "state-s3cret"),
    "RESPONDER_SWEEPS_DRY_RUN": ("sweeps_dry_run", "TRUE", True),
    "RESPONDER_SWEEP_FORWARDING_ENABLED": ("sweep_forwarding_enabled", "yes", True),
    "RESPONDER_APPROVAL_SECRET": ("approval_secret", "approval-s3cret", "approval-s3cret"),
    "RESPONDER_APPROVAL_BASE_URL": ("approval_base_url", " https://app.example/api/approvals ",
                                    "https://app.example/api/approvals"),
    "RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER": ("approval_trust_principal_header", "true",
                                                  True),
    "RESPONDER_WEBHOOK_SECRET": ("webhook_secret", "hook-s3cret", "hook-s3cret"),
    "RESPONDER_NOTIFY_TIMEOUT_SECONDS": ("notify_timeout_seconds", "12", 12.0),
    "RESPONDER_CHROMIUM_PATH": ("chromium_path", " /opt/chromium/chrome ",
                                "/opt/chromium/chrome"),
    "RESPONDER_PDF_TIMEOUT_SECONDS": ("pdf_timeout_seconds", "90", 90.0),
}
"""Every feature setting the code reads: its typed field, a value, and what it parses to."""


def _parse_default(attr: str, default: str) -> object:
    kind = type(getattr(Settings.from_env(BASE), attr))
    if kind is bool:
        return default == "true"
    return kind(default)


def test_feature_settings_are_declared_and_default_as_declared():
    declared = {s.name: s.default for s in EXTRA_SETTINGS}
    defaults = Settings.from_env(BASE)
    for name, (attr, _, _) in FEATURE_FIELDS.items():
        assert name in declared, name
        assert getattr(defaults, attr) == _parse_default(attr, declared[name] or ""), name


def test_feature_settings_are_parsed_into_typed_fields():
    s = Settings.from_env({**BASE, **{n: raw for n, (_, raw, _) in FEATURE_FIELDS.items()}})
    for name, (attr, _, parsed) in FEATURE_FIELDS.items():
        assert getattr(s, attr) == parsed, name


def test_empty_feature_settings_mean_the_default():
    empty = Settings.from_env({**BASE, **{n: "" for n in FEATURE_FIELDS}})
    assert dataclasses.replace(empty, extra={}) == dataclasses.replace(Settings.from_env(BASE),
                                                                       extra={})


@pytest.mark.parametrize(("name", "raw"), [
    ("RESPONDER_POLL_LOOKBACK_MINUTES", "an hour"),
    ("RESPONDER_POLL_LOOKBACK_MINUTES", "-1"),
    ("RESPONDER_POLL_OVERLAP_MINUTES", "20000"),
    ("RESPONDER_POLL_OVERLAP_MINUTES", "nan"),
    ("RESPONDER_NOTIFY_TIMEOUT_SECONDS", "soon"),
    ("RESPONDER_NOTIFY_TIMEOUT_SECONDS", "0.1"),
    ("RESPONDER_NOTIFY_TIMEOUT_SECONDS", "60"),
    ("RESPONDER_PDF_TIMEOUT_SECONDS", "1"),
    ("RESPONDER_PDF_TIMEOUT_SECONDS", "forever"),
    ("RESPONDER_SWEEPS_DRY_RUN", "maybe"),
    ("RESPONDER_SWEEP_FORWARDING_ENABLED", "enabled"),
    ("RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER", "yes"),
    ("RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER", "1"),
])
def test_bad_feature_setting_fails_at_start_naming_it(name, raw):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: raw})


def test_feature_secrets_are_never_shown():
    s = Settings.from_env({**BASE, **{n: raw for n, (_, raw, _) in FEATURE_FIELDS.items()}})
    for secret in ("shared-s3cret", "state-s3cret", "approval-s3cret", "hook-s3cret"):
        assert secret not in repr(s)


def test_settings_are_immutable():
    s = Settings.from_env({**BASE, "RESPONDER_HOOK_KEY": "k"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.dry_run = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.extra["RESPONDER_HOOK_KEY"] = "other"  # type: ignore[index]


def test_policy_named_webhook_secret():
    s = Settings.from_env({**BASE, "RESPONDER_WEBHOOK_SECRET": "default-key",
                           "RESPONDER_HOOK_KEY": "own-key"})
    assert s.secret_named("RESPONDER_WEBHOOK_SECRET") == "default-key"
    assert s.secret_named("RESPONDER_HOOK_KEY") == "own-key"
    assert s.secret_named("RESPONDER_UNSET_KEY") == ""
