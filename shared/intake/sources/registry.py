"""The alert-source registry: one declaration per source, read by shape detection.

Each source is a small `@register`ed class in the module of its normaliser. It declares its
name, its level (a whole payload, or one item alone or in a collection), how it recognises
what it is given (`recognises`, and for items any exact `@odata.type` values), the normaliser
that turns it into signals, and the rights it needs. Normalisers are pure and read nothing,
so today every source declares none; one that reads the tenant declares its rights here and
`register` declares them through shared.permissions, as steps and sweeps do.

Shapes overlap, so registration order means nothing: the order of recognition is the
explicit `PAYLOAD_ORDER` and `ITEM_ORDER` of `shared.intake.sources.catalogue`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Protocol

from shared.intake.sources.result import NormaliseResult
from shared.models import RiskSignal
from shared.permissions import declare

Level = Literal["payload", "item"]


class Nested(Protocol):
    """What a normaliser that wraps other payloads calls to hand them back to detection."""

    def payload(self, inner: Any) -> NormaliseResult:
        """Detect and normalise a payload carried inside this one (an envelope's data)."""
        ...

    def items(self, pairs: list[tuple[str, Any]]) -> NormaliseResult:
        """Detect and normalise each (locator, item) of a collection on its own."""
        ...


class Source:
    """Base of every alert source. Subclasses set the class attributes and the two methods."""

    name: ClassVar[str]
    level: ClassVar[Level]
    """`payload`: a whole body (a batch, an envelope, one alert document), tried first;
    `item`: one object, alone or as a member of a collection."""
    odata_types: ClassVar[tuple[str, ...]] = ()
    """Normalised `@odata.type` values (see `common.norm`) that identify an item outright,
    before any item is recognised by its keys."""
    graph_permissions: ClassVar[tuple[str, ...]] = ()
    exchange_permissions: ClassVar[tuple[str, ...]] = ()
    directory_roles: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def recognises(data: Any) -> bool:
        """True when this source sent `data` (a dict; for payload sources a dict or list)."""
        raise NotImplementedError

    @staticmethod
    def normalise(data: Any, nested: Nested) -> RiskSignal | NormaliseResult:
        """Turn what was recognised into signals; raise only `AlertError`."""
        raise NotImplementedError

    @classmethod
    def problem_source(cls, item: Any) -> str:
        """The source named in a problem about `item` (a batch may name the record's kind)."""
        return cls.name

    @classmethod
    def permissions(cls) -> tuple[str, ...]:
        """Every right the source declares (empty for a source that reads nothing)."""
        return (*cls.graph_permissions, *cls.exchange_permissions, *cls.directory_roles)


REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Class decorator: add a source to the registry; declare its rights if it needs any."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"alert source {cls.name!r} registered twice")
    if cls.level not in ("payload", "item"):
        raise ValueError(f"alert source {cls.name!r}: level must be payload or item")
    REGISTRY[cls.name] = cls
    if cls.permissions():
        declare(
            f"source:{cls.name}",
            graph=cls.graph_permissions,
            exchange=cls.exchange_permissions,
            roles=cls.directory_roles,
            why=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        )
    return cls


def all_sources() -> dict[str, type[Source]]:
    """Every registered source (`shared.intake.sources.catalogue` registers the shipped ones)."""
    return dict(REGISTRY)
