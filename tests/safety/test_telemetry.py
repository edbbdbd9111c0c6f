"""Application Insights export: on only when its connection string is set, silent otherwise,
and the exporter's handler gets the run id and the redaction too. No network is used."""

from __future__ import annotations

import logging
import sys
import types

from shared import logs


def _reset(monkeypatch) -> None:
    monkeypatch.setattr(logs, "_configured", False)


def test_without_a_connection_string_nothing_is_exported(monkeypatch):
    _reset(monkeypatch)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    called: list[str] = []
    fake = types.ModuleType("azure.monitor.opentelemetry")
    fake.configure_azure_monitor = lambda **kw: called.append("yes")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", fake)
    logs.configure_logging()
    assert called == []


def test_missing_package_is_a_warning_not_a_crash(monkeypatch, caplog):
    _reset(monkeypatch)
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x")
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)  # ImportError
    logs.configure_logging()
    assert "azure-monitor-opentelemetry is not installed" in caplog.text


def test_exporter_handler_gets_run_id_and_redaction(monkeypatch):
    _reset(monkeypatch)
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x")
    seen: list[logging.LogRecord] = []

    class Exporter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Exporter()
    responder = logging.getLogger("responder")

    def configure_azure_monitor(**kw):
        assert kw["logger_name"] == "responder"
        responder.addHandler(handler)

    fake = types.ModuleType("azure.monitor.opentelemetry")
    fake.configure_azure_monitor = configure_azure_monitor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", fake)
    old = responder.level
    responder.setLevel(logging.INFO)
    try:
        logs.configure_logging()
        with logs.run_context("tele-1"):
            logging.getLogger("responder.runner").info("set password=%s", "hunter2")
    finally:
        responder.removeHandler(handler)
        responder.setLevel(old)
    assert seen and seen[0].run_id == "tele-1"  # type: ignore[attr-defined]
    assert "hunter2" not in seen[0].getMessage()
