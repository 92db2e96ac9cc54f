"""The lease decisions (models/leases.py): who may take it, when a leader still leads."""

from __future__ import annotations

import pytest

from moorage.models.leases import (
    LeaseRow,
    LeaseTerms,
    LeaseTermsError,
    Lost,
    Renewed,
    Take,
    Wait,
    claim,
    renewal,
    still_leading,
    valid_until,
)

TERMS = LeaseTerms(lease_s=3.0, renew_s=1.0)


def test_a_free_lease_is_taken_with_the_next_epoch() -> None:
    assert claim(LeaseRow(None, 0, 0.0), "c1", db_now=100.0) == Take(1)


def test_an_expired_lease_is_taken_from_its_holder() -> None:
    assert claim(LeaseRow("c1", 4, 100.0), "c2", db_now=100.0) == Take(5)


def test_a_held_lease_is_waited_for_until_it_expires() -> None:
    decision = claim(LeaseRow("c1", 4, 102.5), "c2", db_now=100.0)
    assert decision == Wait("c1", 2.5)


def test_a_controller_takes_its_own_unexpired_lease_again_with_a_new_epoch() -> None:
    # It stopped leading without releasing: its earlier term's writes must be refused.
    assert claim(LeaseRow("c1", 4, 102.5), "c1", db_now=100.0) == Take(5)


def test_a_renewal_keeps_the_lease_while_the_epoch_is_its_own() -> None:
    assert renewal(LeaseRow("c1", 4, 99.0), "c1", 4) == Renewed()


def test_a_renewal_after_a_takeover_is_lost_and_names_the_new_holder() -> None:
    lost = renewal(LeaseRow("c2", 5, 105.0), "c1", 4)
    assert isinstance(lost, Lost)
    assert "c2" in lost.reason
    assert "epoch 5" in lost.reason


def test_a_leader_stops_leading_before_the_lease_can_have_expired() -> None:
    until = valid_until(asked_at=10.0, terms=TERMS)
    assert until == pytest.approx(10.0 + 3.0 - 0.3)
    assert still_leading(until, now=12.6)
    assert not still_leading(until, now=12.7)
    assert not still_leading(until, now=13.0)


def test_a_standby_takes_over_within_the_lease_and_one_look_of_a_leader_dying() -> None:
    """The leader renewed at db time 100 (lease to 103) and died; a standby looking every
    renew_s takes the lease at its first look at or after 103."""
    expires = 100.0 + TERMS.lease_s
    looks = [100.2 + k * TERMS.renew_s for k in range(10)]
    taken_at = next(
        t for t in looks if isinstance(claim(LeaseRow("c1", 1, expires), "c2", t), Take)
    )
    assert taken_at - 100.0 <= TERMS.lease_s + TERMS.renew_s


@pytest.mark.parametrize(
    ("lease_s", "renew_s", "field"),
    [
        (0.5, 0.1, "MOORAGE_LEADER_LEASE_S"),
        (61, 1, "MOORAGE_LEADER_LEASE_S"),
        (3, 2, "MOORAGE_LEADER_RENEW_S"),
        (3, 0, "MOORAGE_LEADER_RENEW_S"),
    ],
)
def test_terms_out_of_bounds_are_refused_naming_the_setting(
    lease_s: float, renew_s: float, field: str
) -> None:
    with pytest.raises(LeaseTermsError, match=field):
        LeaseTerms(lease_s, renew_s)
