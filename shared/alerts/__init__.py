"""Alert normalisers: one pure function per source, payload -> `RiskSignal`s.

`normalise(payload)` detects the source and dispatches; per-source functions are public for
callers that already know what they hold (the Graph poller, for instance).
"""

from shared.alerts.detect import normalise
from shared.alerts.errors import (
    AlertError,
    Ignored,
    InvalidTimestamp,
    MalformedPayload,
    NoCloudUser,
    PayloadTooLarge,
    UnknownShape,
)
from shared.alerts.eventgrid import is_eventgrid_validation
from shared.alerts.graph import notification_client_states
from shared.alerts.result import AlertProblem, NormaliseResult
from shared.alerts.timeparse import parse_time

__all__ = [
    "AlertError",
    "AlertProblem",
    "Ignored",
    "InvalidTimestamp",
    "MalformedPayload",
    "NoCloudUser",
    "NormaliseResult",
    "PayloadTooLarge",
    "UnknownShape",
    "is_eventgrid_validation",
    "normalise",
    "notification_client_states",
    "parse_time",
]
