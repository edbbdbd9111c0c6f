"""Alert normalisers: one pure function per source, payload -> `RiskSignal`s.

Each source is a registry entry (`registry.Source`) beside its normaliser; `catalogue` lists
them in the order they are tried. `normalise(payload)` detects the source and dispatches;
per-source functions are public for callers that already know what they hold (the Graph
poller, for instance).
"""

from shared.intake.sources.detect import normalise
from shared.intake.sources.errors import (
    AlertError,
    Ignored,
    InvalidTimestamp,
    MalformedPayload,
    NoCloudUser,
    PayloadTooLarge,
    UnknownShape,
)
from shared.intake.sources.eventgrid import is_eventgrid_validation
from shared.intake.sources.graph_detections import notification_client_states
from shared.intake.sources.result import AlertProblem, NormaliseResult
from shared.timestamps import parse_time

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
