"""Every `%SETTING%` a trigger binding resolves must be set by the deployment: the Functions
host does not load a function whose binding expression names a missing app setting."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import EXTRA_SETTINGS
from tests.infra.bicep_checks import block_after, object_entries, strip_comments

ROOT = Path(__file__).resolve().parents[2]
MAIN = (ROOT / "infra" / "main.bicep").read_text(encoding="utf-8")


def _var(name: str) -> dict[str, str]:
    block = block_after(strip_comments(MAIN), rf"^\s*var\s+{name}\s*=")
    assert block is not None, f"main.bicep has no var {name}"
    return object_entries(block)


def _binding_settings() -> dict[str, set[str]]:
    import function_app
    from devtools.localhost import app_functions

    found: dict[str, set[str]] = {}
    for fn in app_functions(function_app.app):
        for binding in fn.get_bindings():
            names = set(re.findall(r"%([^%]+)%", str(binding.get_dict_repr())))
            if names:
                found.setdefault(fn.get_function_name(), set()).update(names)
    return found


def _unquote(raw: str) -> str:
    return raw.strip().strip("'")


def test_every_binding_setting_is_deployed():
    always = set(_var("appSettings")) | set(_var("featureAppSettings"))
    eventhub = set(_var("eventHubAppSettings"))
    missing = []
    for function, names in _binding_settings().items():
        for name in names:
            if name in always:
                continue
            disabled = f"AzureWebJobs.{function}.Disabled"
            if name in eventhub and disabled in _var("featureAppSettings"):
                continue  # set with the Event Hub module, and the function off without it
            missing.append(f"{function}: %{name}%")
    assert missing == []


def test_deployed_schedules_equal_the_code_defaults():
    defaults = {s.name: s.default for s in EXTRA_SETTINGS}
    for name, raw in _var("featureAppSettings").items():
        if name in defaults:
            assert _unquote(raw) == defaults[name], name


def test_the_check_would_catch_a_missing_schedule():
    bindings = _binding_settings()
    assert any("RESPONDER_POLL_SCHEDULE" in n for n in bindings.values())
    assert "RESPONDER_POLL_SCHEDULE" in _var("featureAppSettings")
    assert "RESPONDER_POLL_SCHEDULE" not in _var("appSettings"), \
        "the schedule lives in featureAppSettings: removing it there must fail the first test"


def _timer_schedules() -> dict[str, str]:
    import function_app
    from devtools.localhost import app_functions

    return {fn.get_function_name(): str(b.get_dict_repr().get("schedule", ""))
            for fn in app_functions(function_app.app) for b in fn.get_bindings()
            if b.get_dict_repr().get("type") == "timerTrigger"}


def test_every_timer_schedule_comes_from_a_declared_and_deployed_setting():
    """A hard-coded schedule cannot be changed without a code release; each timer binds a
    `%SETTING%` that shared/settings.py declares (README, defaults) and infra/ deploys."""
    declared = {s.name: s.default for s in EXTRA_SETTINGS}
    deployed = _var("featureAppSettings")
    schedules = _timer_schedules()
    assert "approvals_escalation" in schedules and "risk_poller" in schedules
    wrong = []
    for function, schedule in schedules.items():
        match = re.fullmatch(r"%([A-Z0-9_]+)%", schedule)
        if match is None:
            wrong.append(f"{function}: hard-coded schedule {schedule!r}")
        elif match.group(1) not in declared or match.group(1) not in deployed:
            wrong.append(f"{function}: %{match.group(1)}% not declared and deployed")
    assert wrong == []
    assert declared["RESPONDER_APPROVALS_ESCALATION_SCHEDULE"] == "0 */5 * * * *"
