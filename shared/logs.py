"""Logging set-up: a run id on every line that has one, and a redaction filter as a last
line of defence (the code never logs secrets; this catches what a library might).

When `APPLICATIONINSIGHTS_CONNECTION_STRING` is set and azure-monitor-opentelemetry is
installed, logs and traces go to Application Insights; otherwise nothing is exported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

RUN_ID: ContextVar[str | None] = ContextVar("responder_run_id", default=None)
"""The run being worked on in this task; the runner sets it, every log line carries it."""


@contextlib.contextmanager
def run_context(run_id: str, **attributes: Any) -> Iterator[None]:
    """Tag every log line (and an OpenTelemetry span, when available) with the run id."""
    token = RUN_ID.set(run_id)
    try:
        with _span("responder.run", {"responder.run_id": run_id, **attributes}):
            yield
    finally:
        RUN_ID.reset(token)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[None]:
    """A trace span when opentelemetry is importable (it is a no-op without an exporter)."""
    try:
        from opentelemetry import trace
    except ImportError:
        yield
        return
    clean = {k: v for k, v in attributes.items() if isinstance(v, str | bool | int | float)}
    with trace.get_tracer("responder").start_as_current_span(name, attributes=clean):
        yield


class RunIdFilter(logging.Filter):
    """Adds `run_id` from the context to records that do not carry one already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            current = RUN_ID.get()
            if current is not None:
                record.run_id = current
        return True

_REDACT = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=]{8,}"), r"\1<redacted>"),
    # a whole key only: `password=...` is redacted, `reset_password: done` is not
    (re.compile(r'(?i)((?<!\w)"?(password|access_token|refresh_token|client_secret|sig)"?'
                r'\s*[:=]\s*)("[^"]*"|[^\s,;&]+)'), r"\1<redacted>"),
]


def redact(text: str) -> str:
    for pattern, repl in _REDACT:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites the formatted message of every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the log line
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the run id and step when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for key in ("run_id", "step", "status", "message_id"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


_configured = False


def configure_logging(level: int = logging.INFO) -> None:
    """Idempotent: attach the redaction filter to the root handlers, export if configured."""
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(JsonFormatter())
        root.addHandler(stream)
        root.setLevel(level)
    for handler in root.handlers:
        handler.addFilter(RunIdFilter())
        handler.addFilter(RedactingFilter())
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            logging.getLogger("responder").warning(
                "APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry "
                "is not installed: telemetry is not exported")
        else:
            configure_azure_monitor(logger_name="responder")
            # The exporter's handler sits on the "responder" logger: give it the run id
            # and the redaction too (custom dimensions come from the record's attributes).
            for handler in logging.getLogger("responder").handlers:
                handler.addFilter(RunIdFilter())
                handler.addFilter(RedactingFilter())
