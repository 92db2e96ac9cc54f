"""Which host uid each owner of sandboxed replicas runs as: the decisions, as pure code.

When moorage runs as root, every owner (user) of sandboxed replicas on the process
runtime gets a uid of their own, and the gid of the same number, from the range the
operator keeps free (``MOORAGE_SANDBOX_UID_BASE``, ``MOORAGE_SANDBOX_UID_COUNT``).
Replicas of different owners then never share a uid, so even a replica that
reaches the host's ``/proc`` or another owner's folder meets the kernel's
permission checks: it cannot read another owner's ``/proc/PID/environ`` (their
secrets) nor their 0700 folders. A uid once given is never given to anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from moorage.settings import MAX_UID, Settings

# How many host ids a start-up refusal names before "and N more".
NAMED_CLASHES = 5


class UidsExhausted(Exception):
    """Every uid of the range belongs to an owner already; the message says what the
    operator can do."""


@dataclass(frozen=True)
class UidRange:
    """``count`` uids from ``base`` on, each also used as a gid."""

    base: int
    count: int

    def __post_init__(self) -> None:
        if self.base < 1 or self.count < 1 or self.last > MAX_UID:
            raise ValueError(
                f"the sandbox uid range {self.base}+{self.count} must lie within 1-{MAX_UID}"
            )

    @property
    def last(self) -> int:
        return self.base + self.count - 1

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.base <= uid <= self.last

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"

    @classmethod
    def from_settings(cls, settings: Settings) -> UidRange:
        return cls(settings.sandbox_uid_base, settings.sandbox_uid_count)


def next_free_uid(uids: UidRange, taken: Iterable[int]) -> int | None:
    """The lowest uid of the range no owner has, or None when every one is taken.
    Uids outside the range (given under an earlier range) take none of its room."""
    candidate = uids.base
    for uid in sorted({uid for uid in taken if uid in uids}):
        if uid != candidate:
            break
        candidate += 1
    return candidate if candidate in uids else None


def exhausted_message(uids: UidRange) -> str:
    """What a replica's owner and the operator read when no uid is left for a new owner."""
    return (
        f"no sandbox uid is left for this user: each owner of sandboxed replicas runs as "
        f"a uid of their own, and all {uids.count} of MOORAGE_SANDBOX_UID_BASE and "
        f"MOORAGE_SANDBOX_UID_COUNT ({uids}) are given. The operator can raise "
        "MOORAGE_SANDBOX_UID_COUNT (keeping the range free of the host's users and "
        "groups) and restart moorage"
    )


def host_clashes(uids: UidRange, host_ids: Iterable[tuple[str, int]]) -> list[str]:
    """The host's users and groups, given as (description, id) pairs such as ("user
    nobody (uid 65534)", 65534), whose id lies in the range: a replica running as one
    would share files and processes with that account."""
    return sorted({what for what, number in host_ids if number in uids})


def clash_message(uids: UidRange, clashes: list[str]) -> str:
    """Why moorage refuses to start, and how to fix it."""
    named = ", ".join(clashes[:NAMED_CLASHES])
    if len(clashes) > NAMED_CLASHES:
        named += f" and {len(clashes) - NAMED_CLASHES} more"
    return (
        f"MOORAGE_SANDBOX_UID_BASE, MOORAGE_SANDBOX_UID_COUNT: the range {uids} holds ids "
        f"this host already uses ({named}). Each owner of sandboxed replicas runs as a "
        "uid (and gid) of this range, which must belong to no user in /etc/passwd and no "
        "group in /etc/group: move MOORAGE_SANDBOX_UID_BASE past them or shrink "
        "MOORAGE_SANDBOX_UID_COUNT"
    )
