"""The gateway's connection caps: defaults derived from the open-file limit, and who is
admitted past which cap."""

from __future__ import annotations

import logging

import pytest

from moorage.gateway.http1.connections import (
    ConnectionCaps,
    ConnectionCounter,
    derived_total,
)


@pytest.mark.parametrize(
    ("open_files", "total"),
    [(1024, 170), (4096, 1024), (65536, 16384), (1 << 20, 262144)],
)
def test_the_default_total_leaves_room_for_the_rest_of_moorage(open_files: int, total: int) -> None:
    assert derived_total(open_files) == total
    # Three files per connection, and a reserve of at least a quarter (or half) left.
    assert 3 * total <= open_files * 3 // 4


def test_one_address_gets_a_quarter_by_default_and_settings_win() -> None:
    assert ConnectionCaps.resolve(0, 0, 4096) == ConnectionCaps(1024, 256)
    assert ConnectionCaps.resolve(100, 0, 4096) == ConnectionCaps(100, 25)
    assert ConnectionCaps.resolve(100, 500, 4096) == ConnectionCaps(100, 100)
    assert ConnectionCaps.resolve(0, 7, 4096) == ConnectionCaps(1024, 7)


def test_past_either_cap_a_connection_is_refused_naming_its_setting() -> None:
    counter = ConnectionCounter(ConnectionCaps(total=5, per_client=3))
    assert [counter.admit(b"10.0.0.1", 0.0) for _ in range(3)] == [None] * 3
    refused = counter.admit(b"10.0.0.1", 0.0)
    assert refused is not None
    assert refused.status_code == 503
    assert "MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT" in refused.message
    assert counter.admit(b"10.0.0.2", 0.0) is None
    assert counter.admit(b"10.0.0.3", 0.0) is None
    full = counter.admit(b"10.0.0.4", 0.0)
    assert full is not None
    assert "MOORAGE_GATEWAY_MAX_CONNECTIONS)" in full.message
    counter.release(b"10.0.0.1")
    assert counter.admit(b"10.0.0.4", 0.0) is None
    for peer in (b"10.0.0.1", b"10.0.0.1", b"10.0.0.2", b"10.0.0.3", b"10.0.0.4"):
        counter.release(peer)
    assert counter.total == 0
    assert not counter.by_client


def test_refusals_are_logged_once_per_address_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = ConnectionCounter(ConnectionCaps(total=100, per_client=1))
    counter.admit(b"a", 0.0)
    counter.admit(b"b", 0.0)
    with caplog.at_level(logging.WARNING):
        for second in range(30):
            counter.admit(b"a", float(second))
            counter.admit(b"b", float(second))
        assert len(caplog.records) == 2
        counter.admit(b"a", 61.0)
        assert len(caplog.records) == 3
