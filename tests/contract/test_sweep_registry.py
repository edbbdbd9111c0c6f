"""Meta tests over the sweep registry: every sweep is fully declared, tested, timed by its
own function, and its schedule setting is the same name and default in the registry,
shared/settings.py and infra/ (settings.py is the bottom layer and cannot read the registry,
so this test is what keeps the three from drifting)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from shared.permissions import collect
from shared.settings import APP_SETTINGS, EXTRA_SETTINGS, SettingSpec
from shared.sweeps.catalogue import SWEEP_NAMES, SWEEPS
from shared.sweeps.registry import COMMON_SETTINGS, Sweep, all_sweeps
from tests.infra.bicep_checks import block_after, object_entries, strip_comments

ROOT = Path(__file__).resolve().parents[2]
MAIN_BICEP = ROOT / "infra" / "main.bicep"
PUBLIC_SWEEPS = ("audit", "risky_users", "restricted_senders", "stalled_runs",
                 "forwarding_rules", "secure_score", "reinfection")
"""The sweep names are public: the CLI takes them, timer function names carry them."""
NCRONTAB = re.compile(r"(\S+ ){5}\S+")


def deployed_settings() -> dict[str, str]:
    """Settings main.bicep always deploys (appSettings and featureAppSettings), unquoted."""
    main = strip_comments(MAIN_BICEP.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for var in ("appSettings", "featureAppSettings"):
        block = block_after(main, rf"^\s*var\s+{var}\s*=")
        assert block is not None, f"main.bicep has no var {var}"
        found.update({k: v.strip().strip("'") for k, v in object_entries(block).items()})
    return found


def schedule_problems(sweeps: Iterable[type[Sweep]], specs: Iterable[SettingSpec],
                      deployed: Mapping[str, str]) -> list[str]:
    """Where a sweep's schedule setting differs between the registry, settings and infra."""
    defaults = {s.name: s.default for s in specs}
    problems: list[str] = []
    for sweep in sweeps:
        setting, default = sweep.schedule_setting, sweep.default_schedule
        if setting not in defaults:
            problems.append(f"{sweep.name}: {setting} is not in shared/settings.py")
        elif defaults[setting] != default:
            problems.append(f"{sweep.name}: {setting} defaults to {defaults[setting]!r} in "
                            f"shared/settings.py, {default!r} in the registry")
        if setting not in deployed:
            problems.append(f"{sweep.name}: infra/main.bicep does not set {setting}")
        elif deployed[setting] != default:
            problems.append(f"{sweep.name}: infra/main.bicep sets {setting} to "
                            f"{deployed[setting]!r}, the registry's default is {default!r}")
    return problems


def test_catalogue_is_the_registry_and_the_public_names() -> None:
    assert SWEEP_NAMES == PUBLIC_SWEEPS
    assert set(SWEEPS) == set(all_sweeps())
    assert all(SWEEPS[name] is all_sweeps()[name] for name in SWEEPS)


@pytest.mark.parametrize("name", SWEEP_NAMES)
def test_every_sweep_is_fully_declared(name: str) -> None:
    cls = all_sweeps()[name]
    assert cls.__doc__ and cls.__doc__.strip(), "a docstring that says why"
    assert cls.name == name and cls.description, "a name and a one-line description"
    assert re.fullmatch(r"RESPONDER_SWEEP_[A-Z_]+_SCHEDULE", cls.schedule_setting)
    assert NCRONTAB.fullmatch(cls.default_schedule), "6-field NCRONTAB, seconds first"
    req = collect()[f"sweep:{name}"]
    assert req.graph == cls.graph_permissions
    assert req.exchange == cls.exchange_permissions
    assert req.roles == cls.directory_roles
    assert req.why, "why it needs its rights"
    for perm in cls.graph_permissions:
        assert re.fullmatch(r"[A-Za-z]+(-[A-Za-z]+)?(\.[A-Za-z]+)+", perm), perm


@pytest.mark.parametrize("name", SWEEP_NAMES)
def test_every_sweep_is_exercised_by_a_test(name: str) -> None:
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")
             if "contract" not in p.parts]
    assert any(f'"{name}"' in t for t in texts), f"no test runs sweep {name}"


def test_schedules_agree_with_settings_and_infra() -> None:
    assert schedule_problems(all_sweeps().values(), (*APP_SETTINGS, *EXTRA_SETTINGS),
                             deployed_settings()) == []


def test_schedule_check_catches_drift() -> None:
    audit = all_sweeps()["audit"]
    specs = (*APP_SETTINGS, *EXTRA_SETTINGS)
    deployed = deployed_settings()
    moved = type("Moved", (audit,), {"default_schedule": "0 0 3 * * *"})
    assert len(schedule_problems([moved], specs, deployed)) == 2
    renamed = type("Renamed", (audit,), {"schedule_setting": "RESPONDER_SWEEP_AUDITS_SCHEDULE"})
    assert len(schedule_problems([renamed], specs, deployed)) == 2
    undeployed = {k: v for k, v in deployed.items() if k != audit.schedule_setting}
    assert schedule_problems([audit], specs, undeployed) == [
        "audit: infra/main.bicep does not set RESPONDER_SWEEP_AUDIT_SCHEDULE"]


def test_every_setting_a_sweep_reads_is_a_known_setting() -> None:
    known = {s.name for s in (*APP_SETTINGS, *EXTRA_SETTINGS)}
    for cls in all_sweeps().values():
        for setting in (*cls.settings, *COMMON_SETTINGS):
            assert setting in known, f"{cls.name} reads {setting}, not in shared/settings.py"
    schedules = [cls.schedule_setting for cls in all_sweeps().values()]
    assert len(set(schedules)) == len(schedules), "one schedule setting per sweep"


def test_one_timer_function_per_sweep_bound_to_its_schedule_setting() -> None:
    import function_app
    from devtools.localhost import app_functions

    timers = {f.get_function_name(): f for f in app_functions(function_app.app)
              if f.get_function_name().startswith("sweep_")}
    assert set(timers) == {f"sweep_{name}" for name in SWEEP_NAMES}
    for name, cls in all_sweeps().items():
        (binding,) = [b for b in timers[f"sweep_{name}"].get_bindings()
                      if b.type == "timerTrigger"]
        assert binding.schedule == f"%{cls.schedule_setting}%"


def test_generated_permissions_cover_every_sweep() -> None:
    data = json.loads((ROOT / "infra" / "permissions.json").read_text(encoding="utf-8"))
    for name, cls in all_sweeps().items():
        component = data["components"][f"sweep:{name}"]
        assert set(component["graph"]) == set(cls.graph_permissions)
        assert set(component["exchange"]) == set(cls.exchange_permissions)
        assert set(component["roles"]) == set(cls.directory_roles)
