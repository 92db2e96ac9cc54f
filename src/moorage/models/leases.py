"""Who leads the controllers: the decisions about the lease, apart from the store.

Controllers compete for one row (``store/leases.py``): its holder is the leader, its
epoch grows at each takeover, and it expires at a moment of the database's clock, so
the machines' clocks never have to agree. A leader renews it every ``renew_s``; a
standby takes it once it has expired. Locally, a leader counts its lease from the
moment it *asked* for the renewal (its own monotonic clock, which only runs behind
the database's expiry), less a margin, and stops leading when that runs out before a
renewal answered: by then a standby may be about to take over.
"""

from __future__ import annotations

from dataclasses import dataclass

# The bounds of the settings: a lease shorter than a second renews more often than a
# busy store answers; one longer than a minute leaves the endpoints unattended as long.
MIN_LEASE_S = 1.0
MAX_LEASE_S = 60.0
# The share of the lease a leader gives up at its end, for the moment between its
# request and the database's reading of its clock.
MARGIN_SHARE = 0.1


class LeaseTermsError(ValueError):
    pass


@dataclass(frozen=True)
class LeaseTerms:
    """How long a lease lasts and how often its holder renews it (standbys look as
    often)."""

    lease_s: float = 3.0
    renew_s: float = 1.0

    def __post_init__(self) -> None:
        if not MIN_LEASE_S <= self.lease_s <= MAX_LEASE_S:
            raise LeaseTermsError(
                f"MOORAGE_LEADER_LEASE_S is {self.lease_s:g}: allowed from {MIN_LEASE_S:g} "
                f"to {MAX_LEASE_S:g} seconds"
            )
        if not 0 < self.renew_s <= self.lease_s / 2:
            raise LeaseTermsError(
                f"MOORAGE_LEADER_RENEW_S is {self.renew_s:g}: allowed above 0 and up to half "
                f"the lease ({self.lease_s / 2:g} s), so a leader has two tries before it ends"
            )

    @property
    def margin_s(self) -> float:
        return self.lease_s * MARGIN_SHARE


@dataclass(frozen=True)
class LeaseRow:
    """The lease as the store holds it; ``expires_at`` on the database's clock."""

    holder: str | None
    epoch: int
    expires_at: float


@dataclass(frozen=True)
class Take:
    """Take the lease over: it is free (expired, released, or already this one's)."""

    epoch: int  # the epoch after the takeover


@dataclass(frozen=True)
class Wait:
    """Another controller leads: look again later."""

    holder: str | None
    expires_in_s: float


def claim(row: LeaseRow, me: str, db_now: float) -> Take | Wait:
    """What a controller that does not lead does with the lease it read at ``db_now``.
    Its own unexpired row (it stopped leading without releasing) is taken again, with
    a new epoch: whatever its earlier term still writes is refused."""
    if row.expires_at <= db_now or row.holder == me:
        return Take(row.epoch + 1)
    return Wait(row.holder, row.expires_at - db_now)


@dataclass(frozen=True)
class Renewed:
    pass


@dataclass(frozen=True)
class Lost:
    reason: str


def renewal(row: LeaseRow, me: str, epoch: int) -> Renewed | Lost:
    """Whether the leader of ``epoch`` still holds the lease it reads. An expired row
    nobody took over is still its own: the epoch alone says who leads."""
    if row.epoch != epoch or row.holder != me:
        taker = row.holder if row.holder is not None else "no controller"
        return Lost(f"{taker} holds it now (epoch {row.epoch})")
    return Renewed()


def valid_until(asked_at: float, terms: LeaseTerms) -> float:
    """Until when (monotonic) a lease renewed by a request sent at ``asked_at`` is
    surely still this controller's: the database set its expiry after ``asked_at``."""
    return asked_at + terms.lease_s - terms.margin_s


def still_leading(until: float, now: float) -> bool:
    return now < until
