"""The host's users and groups, as the sandbox uid range must avoid them.

Read through ``pwd`` and ``grp`` (``/etc/passwd``, ``/etc/group`` and whatever else
the host's name service lists), so moorage refuses to start rather than run a
replica as an account the host already has.
"""

from __future__ import annotations

import grp
import pwd

from moorage.models.sandbox_uids import UidRange, host_clashes


def host_ids() -> list[tuple[str, int]]:
    """Each user's uid and primary gid, and each group's gid, described for a message."""
    found: list[tuple[str, int]] = []
    for user in pwd.getpwall():
        found.append((f"user {user.pw_name} (uid {user.pw_uid})", user.pw_uid))
        found.append((f"user {user.pw_name}'s group (gid {user.pw_gid})", user.pw_gid))
    for group in grp.getgrall():
        found.append((f"group {group.gr_name} (gid {group.gr_gid})", group.gr_gid))
    return found


def clashes(uids: UidRange) -> list[str]:
    """The host's users and groups whose id lies in ``uids``; empty when it is free."""
    return host_clashes(uids, host_ids())
