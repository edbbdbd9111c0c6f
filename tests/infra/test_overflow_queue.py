"""The overflow lane (fairness between tenants) is deployed like the clean-up lane: its queue
and poison queue exist, and the setting the queue trigger binds names the same queue."""

from __future__ import annotations

from shared.settings import EXTRA_SETTINGS, overflow_queue_for
from tests.infra import bicep_checks as bc

MAIN = (bc.INFRA / "main.bicep").read_text(encoding="utf-8")
STORAGE = (bc.INFRA / "modules" / "storage.bicep").read_text(encoding="utf-8")


def _storage_queues_passed(main: str) -> str:
    block = bc.block_after(bc.strip_comments(main), r"^\s*appQueues\s*:", openers="[")
    assert block is not None, "main.bicep passes no appQueues to the storage module"
    return block


def test_the_overflow_queue_and_its_poison_queue_are_made():
    assert "'${remediationQueue}-overflow'" in _storage_queues_passed(MAIN)
    default = bc.block_after(bc.strip_comments(STORAGE), r"^\s*param\s+appQueues\s+array\s*=",
                             openers="[")
    assert default is not None and "'remediation-requests-overflow'" in default
    # every app queue gets its poison queue (the host moves failed messages there)
    poison = bc.block_after(bc.strip_comments(STORAGE), r"^\s*var\s+appPoisonQueues\s*=",
                            openers="[")
    assert poison is not None and "'${q}-poison'" in poison and "appQueues" in poison


def test_the_deployed_setting_names_the_queue_made():
    settings = bc.app_settings(MAIN)
    assert bc.string_value(settings["RESPONDER_OVERFLOW_QUEUE"]) is None  # interpolated
    assert settings["RESPONDER_OVERFLOW_QUEUE"].strip() == "'${remediationQueue}-overflow'"
    default = {s.name: s.default for s in EXTRA_SETTINGS}["RESPONDER_OVERFLOW_QUEUE"]
    assert default == overflow_queue_for("remediation-requests")


def test_the_check_would_catch_a_missing_overflow_queue():
    mutated = MAIN.replace("      '${remediationQueue}-overflow'\n", "")
    assert "'${remediationQueue}-overflow'" not in _storage_queues_passed(mutated)
