"""The fastest any client could contain N users under the emulator's configured limits.

    LB(N) = max(T_directory_writes, T_identity_protection, T_exchange) + T_critical_path

    T_directory_writes    = max(0, W - capacity) / refill        W = 4N + ceil(N/20)
        per user: password PATCH, revoke POST, per-user MFA PATCH, one attacker-method
        DELETE; plus one group PATCH per 20 users (the CA group, 20 members per PATCH).
    T_identity_protection = ceil(N / ids_per_confirm) / rps      ids_per_confirm = 100
        (the emulator's cap on userIds per confirmCompromised: the fewest calls possible;
        reads are not counted, so the bound stays a bound for clients that skip them).
    T_exchange            = max(0, E - burst) / rps              E = 12N + 1
        per user: Get-Mailbox, Get-MailboxAuditBypassAssociation, Get-InboxRule,
        Get-BlockedSenderAddress (the evidence), Get-MailboxPermission and
        Get-RecipientPermission twice (delegates on the mailbox, Send As the user holds
        elsewhere), Get-MobileDevice, Set-Mailbox (forwarding), Set-Mailbox (auditing),
        and the read-back of both writes (Get-Mailbox twice: verify after acting); plus one
        Get-OrganizationConfig.
    T_critical_path       = 3 Graph latencies (resolve, exclusion check, role check)
        + 3 Exchange latencies (mailbox reads, then the organisation config, then a
        Set-Mailbox) + 1 Graph latency (the notification): one run's dependent chain.

Everything else (directory reads, mailbox reads through Graph) is unthrottled in the
configuration, or (MailboxConcurrency 4 per mailbox) not binding for one run per mailbox.
Containment alone (password + sessions) is bounded by T_directory_writes for 2N writes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bench import scenario

CONFIRM_MAX_IDS = 100
"""devtools/emulator/pipeline.py DEFAULT_CONFIG confirm_max_user_ids."""
DIRECTORY_WRITES_PER_USER = 4
EXCHANGE_CALLS_PER_USER = 12


@dataclass
class LowerBound:
    n: int
    directory_writes: int
    directory_seconds: float
    identity_protection_calls: int
    identity_protection_seconds: float
    exchange_calls: int
    exchange_seconds: float
    critical_path_seconds: float
    seconds: float
    containment_seconds: float
    binding: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lower_bound(n: int) -> LowerBound:
    graph = scenario.GRAPH_LATENCY_MS / 1000
    exchange = scenario.EXCHANGE_LATENCY_MS / 1000
    writes = DIRECTORY_WRITES_PER_USER * n + math.ceil(n / 20)
    t_dir = max(0.0, writes - scenario.DIRECTORY_WRITE_CAPACITY) / scenario.DIRECTORY_WRITE_REFILL
    idp_calls = math.ceil(n / CONFIRM_MAX_IDS)
    t_idp = idp_calls / scenario.IDENTITY_PROTECTION_RPS
    exo_calls = EXCHANGE_CALLS_PER_USER * n + 1
    t_exo = max(0.0, exo_calls - scenario.EXCHANGE_BURST) / scenario.EXCHANGE_RPS
    critical = 4 * graph + 3 * exchange
    terms = {"directory writes": t_dir, "Identity Protection": t_idp, "Exchange": t_exo}
    binding = max(terms, key=lambda k: terms[k])
    contain_writes = 2 * n
    t_contain = max(0.0, contain_writes - scenario.DIRECTORY_WRITE_CAPACITY) \
        / scenario.DIRECTORY_WRITE_REFILL + 5 * graph
    return LowerBound(n, writes, round(t_dir, 3), idp_calls, round(t_idp, 3), exo_calls,
                      round(t_exo, 3), round(critical, 3),
                      round(max(terms.values()) + critical, 3), round(t_contain, 3), binding)


if __name__ == "__main__":
    for size in (100, 500, 1000):
        print(lower_bound(size).as_dict())
