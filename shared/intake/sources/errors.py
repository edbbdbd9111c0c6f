"""Typed errors for alert normalisation.

Every failure a normaliser can report is an `AlertError` (a `ValueError`), so callers catch
one type and never see a stray `KeyError` or `TypeError` from a strange payload.
"""

from __future__ import annotations

from shared.errors import AlertError, InvalidTimestamp

__all__ = ["AlertError", "Ignored", "InvalidTimestamp", "MalformedPayload", "NoCloudUser",
           "PayloadTooLarge", "UnknownShape"]


class UnknownShape(AlertError):
    """The payload matches none of the known alert sources."""


class MalformedPayload(AlertError):
    """The payload looks like a known source but a required part is missing or invalid."""


class NoCloudUser(AlertError):
    """The item names no Entra (cloud) user we can act on; we refuse to guess one."""


class PayloadTooLarge(AlertError):
    """A batch has too many records, or a string used as an id is too long."""



class Ignored(AlertError):
    """The item is understood and deliberately produces no signal (resolved, lifecycle...).

    Batch normalisers turn this into an entry of `NormaliseResult.ignored`; single-item
    functions raise it so that a caller never mistakes "nothing to do" for success.
    """
