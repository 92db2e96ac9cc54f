"""When a wait for an endpoint is over, from one reading of it (``sdk/waiting.py``)."""

from __future__ import annotations

from moorage.api.schemas import Endpoint
from moorage.sdk.waiting import describe, progress
from tests.support.endpoint_objects import endpoint_object


def endpoint(
    status: str = "initializing",
    info: str | None = None,
    wanted: int = 2,
    revision: int = 1,
    replicas: tuple[tuple[str, int], ...] = (),
    deleted: bool = False,
) -> Endpoint:
    return endpoint_object(
        status=status,
        info=info,
        wanted=wanted,
        revision=revision,
        replicas=[(state, of, None) for state, of in replicas],
        deleted=deleted,
    )


def test_done_when_available_with_every_wanted_replica_of_the_revision_ready() -> None:
    seen = progress(endpoint("available", replicas=(("ready", 1), ("ready", 1))))
    assert seen.done
    assert seen.failure is None
    assert (seen.ready, seen.wanted) == (2, 2)


def test_not_done_while_replicas_still_start() -> None:
    seen = progress(endpoint("available", "1 of 2 ready", replicas=(("ready", 1), ("starting", 1))))
    assert not seen.done
    assert seen.failure is None
    assert describe(seen) == "available, 1/2 ready: 1 of 2 ready"


def test_a_rollout_is_not_done_while_only_the_old_revision_serves() -> None:
    old_serving = endpoint("available", revision=2, replicas=(("ready", 1), ("ready", 1)))
    assert not progress(old_serving, revision=2).done


def test_a_rolled_back_revision_fails_the_wait_with_the_servers_reason() -> None:
    note = "revision 3 could not run and was rolled back to revision 2"
    back = endpoint("available", note, revision=2, replicas=(("ready", 2), ("ready", 2)))
    seen = progress(back, revision=3)
    assert seen.failure is not None
    assert "revision 3 was rolled back" in seen.failure
    assert note in seen.failure


def test_unavailable_stopped_and_deleted_end_the_wait() -> None:
    failing = progress(endpoint("unavailable", "1 of 2 replicas cannot run: exit 3"))
    assert failing.failure is not None
    assert "exit 3" in failing.failure
    stopped = progress(endpoint("stopped", "stopped by moorage: spending limit reached"))
    assert stopped.failure is not None
    assert "spending limit" in stopped.failure
    assert progress(endpoint("available", deleted=True)).failure is not None


def test_scaled_to_zero_is_done() -> None:
    assert progress(endpoint("available", "scaled to zero: idle", wanted=0)).done


def test_describe_without_info() -> None:
    assert describe(progress(endpoint("initializing", wanted=1))) == "initializing, 0/1 ready"
