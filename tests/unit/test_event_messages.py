"""Each recorded event said as one sentence a user can act on, and what a write changed."""

from __future__ import annotations

import dataclasses

import pytest

from moorage.models.endpoints import DesiredState
from moorage.models.events import changes, describe
from moorage.models.replicas import FailureReason, ReplicaEvent, ReplicaEventKind, shown_address
from moorage.models.states import EndpointEventKind
from tests.unit.builders import T0, make_endpoint


def _event(
    kind: ReplicaEventKind,
    *,
    address: str | None = None,
    reason: FailureReason | None = None,
    detail: str | None = None,
) -> ReplicaEvent:
    return ReplicaEvent("r-1", "ep-1", kind, T0, address, reason, detail)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_event(ReplicaEventKind.REQUESTED), "replica r-1 (revision 2) was requested"),
        (
            _event(ReplicaEventKind.STARTED, address="127.0.0.1:9001"),
            "replica r-1 (revision 2) started at 127.0.0.1:9001",
        ),
        (
            _event(ReplicaEventKind.STARTED, address="127.0.0.1:9001", detail="adopted"),
            "replica r-1 (revision 2) was adopted after a restart at 127.0.0.1:9001",
        ),
        (
            _event(ReplicaEventKind.READY),
            "replica r-1 (revision 2) is ready: it passed its readiness probe and takes requests",
        ),
        (
            _event(ReplicaEventKind.UNREADY, detail="stopping: scaled down"),
            "replica r-1 (revision 2) left the rotation: stopping: scaled down",
        ),
        (
            _event(
                ReplicaEventKind.FAILED,
                reason=FailureReason.EXITED,
                detail="exited with code 1; last output: ImportError",
            ),
            "replica r-1 (revision 2) failed (exited): "
            "exited with code 1; last output: ImportError",
        ),
        (
            _event(ReplicaEventKind.STOPPED, detail="replaced by a newer revision"),
            "replica r-1 (revision 2) stopped: replaced by a newer revision",
        ),
    ],
)
def test_each_event_reads_as_one_sentence(event: ReplicaEvent, expected: str) -> None:
    assert describe(event, 2) == expected


def test_a_create_is_one_change() -> None:
    endpoint = make_endpoint(target=2)

    assert [(c.kind, c.message) for c in changes(None, endpoint, T0)] == [
        (
            EndpointEventKind.CREATED,
            f"created: 2 replicas of revision 1 on flavor {endpoint.flavor_id}",
        )
    ]


def test_one_write_that_scales_and_rolls_out_is_two_changes_at_the_new_revision() -> None:
    before = make_endpoint(target=1, revision=1)
    after = dataclasses.replace(before, target_instance_number=3, revision=2, description="x")

    found = changes(before, after, T0)

    assert [(c.kind, c.revision) for c in found] == [
        (EndpointEventKind.SCALED, 2),
        (EndpointEventKind.ROLLOUT_BEGUN, 2),
        (EndpointEventKind.UPDATED, 2),
    ]
    assert found[0].message == "scaled from 1 to 3 replicas"
    assert found[1].message == "rollout of revision 2 begun (replaces revision 1)"
    assert found[2].message == "updated: description"


def test_an_update_names_every_field_it_changed_and_a_rollout_says_why() -> None:
    before = make_endpoint(revision=1)
    after = dataclasses.replace(
        before,
        revision=2,
        deploy=dataclasses.replace(before.deploy, command="serve --fast"),
        gateway=dataclasses.replace(before.gateway, max_queue=7),
    )

    found = changes(before, after, T0)

    assert [(c.kind, c.message) for c in found] == [
        (
            EndpointEventKind.ROLLOUT_BEGUN,
            "rollout of revision 2 begun (replaces revision 1): deploy_metadata changed",
        ),
        (EndpointEventKind.UPDATED, "updated: deploy_metadata, gateway_metadata"),
    ]


def test_a_change_that_only_rolls_out_is_not_also_an_update() -> None:
    before = make_endpoint(revision=1)
    after = dataclasses.replace(
        before, revision=2, deploy=dataclasses.replace(before.deploy, command="serve --fast")
    )

    assert [c.kind for c in changes(before, after, T0)] == [EndpointEventKind.ROLLOUT_BEGUN]


def test_stop_start_and_delete_are_said_alone() -> None:
    running = make_endpoint()
    stopped = dataclasses.replace(running, desired_state=DesiredState.STOPPED)
    deleted = dataclasses.replace(stopped, deleted_at=T0)

    assert [c.kind for c in changes(running, stopped, T0)] == [EndpointEventKind.STOPPED]
    assert [c.kind for c in changes(stopped, running, T0)] == [EndpointEventKind.STARTED]
    assert [c.kind for c in changes(stopped, deleted, T0)] == [EndpointEventKind.DELETED]
    assert changes(running, running, T0) == []


def test_a_sandboxed_replicas_socket_is_named_without_the_hosts_folders() -> None:
    assert shown_address("unix:/srv/moorage/.moorage/replicas/r1/replica.sock") == (
        "unix:replica.sock"
    )
    assert shown_address("127.0.0.1:9001") == "127.0.0.1:9001"
    assert shown_address(None) is None
