"""Importing this package registers every step of the catalogue."""

from shared.playbook.steps import account, evidence, followup, mailbox, mfa

__all__ = ["account", "evidence", "followup", "mailbox", "mfa"]
