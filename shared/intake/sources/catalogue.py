"""The catalogue: every shipped alert source, and the one order in which they are tried.

A new source is a `@register`ed class beside its normaliser and one place in the orders
below. Shapes overlap (a Sentinel incident has `properties`, a diagnostic record too; a
risky user and a risk detection share `riskLevel`), so the order decides and is written
down here rather than left to import order. Payload sources are tried on the whole body
first; then a body that none of them claims is an item, or a list of items. An item is
recognised by an exact `@odata.type` first, then by its keys in `ITEM_ORDER`.
"""

from __future__ import annotations

from shared.intake.sources import diagnostics, eventgrid, graph_detections, monitor, sentinel
from shared.intake.sources.registry import REGISTRY, Source

PAYLOAD_ORDER: tuple[type[Source], ...] = (
    diagnostics.EventHubRecords,
    eventgrid.EventGridEnvelope,
    monitor.MonitorLogAlert,
    sentinel.SentinelIncident,
    graph_detections.GraphCollection,
)
"""Whole-body sources, in the order they are tried."""

ITEM_ORDER: tuple[type[Source], ...] = (
    diagnostics.DiagnosticRecord,
    graph_detections.GraphChangeNotification,
    graph_detections.GraphRiskDetection,
    graph_detections.GraphRiskyUser,
    graph_detections.GraphSecurityAlert,
)
"""Item sources, in the order their keys are tried (after an exact `@odata.type`)."""

BY_ODATA_TYPE: dict[str, type[Source]] = {
    odata: source for source in ITEM_ORDER for odata in source.odata_types
}
"""Exact `@odata.type` (normalised) to the item source that owns it."""

SOURCE_NAMES: tuple[str, ...] = tuple(s.name for s in (*PAYLOAD_ORDER, *ITEM_ORDER))


def _check() -> None:
    """Refuse at import a source that is registered but never tried (or tried twice)."""
    ordered = [*PAYLOAD_ORDER, *ITEM_ORDER]
    if len(set(ordered)) != len(ordered) or set(ordered) != set(REGISTRY.values()):
        raise RuntimeError("every registered alert source must appear once in the orders")
    if any(s.level != "payload" for s in PAYLOAD_ORDER) or any(
            s.level != "item" for s in ITEM_ORDER):
        raise RuntimeError("an alert source is listed under the wrong level")
    if len(BY_ODATA_TYPE) != sum(len(s.odata_types) for s in ITEM_ORDER):
        raise RuntimeError("two alert sources claim the same @odata.type")


_check()
