"""Meta tests over the alert-source registry: every source is fully declared, tried exactly
once in an explicit order, and tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.intake.sources.catalogue import BY_ODATA_TYPE, ITEM_ORDER, PAYLOAD_ORDER, SOURCE_NAMES
from shared.intake.sources.registry import Source, all_sources
from shared.permissions import collect

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_source_is_tried_once_in_order() -> None:
    ordered = [*PAYLOAD_ORDER, *ITEM_ORDER]
    assert len(ordered) == len(set(ordered)) == len(all_sources())
    assert set(ordered) == set(all_sources().values())
    assert all(s.level == "payload" for s in PAYLOAD_ORDER)
    assert all(s.level == "item" for s in ITEM_ORDER)
    assert SOURCE_NAMES == tuple(s.name for s in ordered)


def test_odata_types_are_owned_once_and_normalised() -> None:
    owned = [t for s in all_sources().values() for t in s.odata_types]
    assert len(owned) == len(set(owned)) == len(BY_ODATA_TYPE)
    for odata in owned:
        assert re.fullmatch(r"[a-z0-9]+", odata), "compared after common.norm"
    assert all(not s.odata_types for s in PAYLOAD_ORDER), "@odata.type names an item"


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_every_source_is_fully_declared(name: str) -> None:
    cls = all_sources()[name]
    assert cls.__doc__ and cls.__doc__.strip(), "a docstring that says what it recognises"
    assert cls.name == name and re.fullmatch(r"[a-z]+(\.[A-Za-z]+)?", name)
    assert cls.recognises is not Source.recognises, "how it recognises its payload"
    assert cls.normalise is not Source.normalise, "its normaliser"
    declared = collect().get(f"source:{name}")
    if cls.permissions():
        assert declared is not None, "rights are declared through shared.permissions"
        assert declared.graph == cls.graph_permissions
        assert declared.exchange == cls.exchange_permissions
        assert declared.roles == cls.directory_roles
    else:
        assert declared is None, "a source that reads nothing declares nothing"


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_every_source_is_exercised_by_a_test(name: str) -> None:
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")
             if "contract" not in p.parts]
    assert any(f'"{name}"' in t for t in texts), f"no test mentions source {name}"
