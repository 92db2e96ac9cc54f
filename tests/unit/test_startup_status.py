"""``status_info`` of an endpoint that is still initializing: the phase its replica is
in and how long it has lasted, read with a fake clock (``models/startup.py``)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from moorage.models.endpoints import DeploySpec, Endpoint, EndpointStatus, ReadinessProbe
from moorage.models.replicas import Replica, ReplicaState, StartupWatch
from moorage.models.requests import ReadinessProbeIn
from moorage.models.status import StatusPolicy, derive_status
from tests.unit.builders import at, make_endpoint, make_replica

POLICY = StatusPolicy(ready_timeout_s=900)


def starting(watch: StartupWatch, replica_id: str = "r-1") -> Replica:
    replica = make_replica(replica_id, state=ReplicaState.STARTING, since=at(0))
    return dataclasses.replace(replica, startup=watch)


def note(replicas: list[Replica], now_s: float, endpoint: Endpoint | None = None) -> str:
    status = derive_status(endpoint or make_endpoint(), replicas, POLICY, at(now_s))
    assert status.status is EndpointStatus.INITIALIZING
    assert status.status_info is not None
    return status.status_info


def test_an_app_not_listening_yet_is_waited_for_on_its_port_with_the_time_so_far() -> None:
    refused = StartupWatch(probe="GET /: cannot connect: Connection refused", given_port=41234)

    info = note([starting(refused)], now_s=42)

    assert info.startswith("waiting for the app to listen on port 41234 ($PORT) (42 s)")
    assert "15 min after starting" in info
    assert "readiness_probe.startup_timeout_s" in info


def test_before_the_first_probe_the_replica_is_waited_for_too() -> None:
    info = note([starting(StartupWatch(given_port=8080, listening=()))], now_s=3)

    assert info.startswith("waiting for the app to listen on port 8080 ($PORT) (3 s)")


def test_an_app_on_another_port_is_named_with_both_ports() -> None:
    wrong = StartupWatch(
        probe="GET /: cannot connect: Connection refused", given_port=41234, listening=(8080,)
    )

    info = note([starting(wrong)], now_s=5)

    assert info.startswith("the app listens on 8080, not on $PORT 41234")
    assert "deploy_metadata.command" in info


def test_the_wrong_port_is_told_before_another_replica_that_is_only_slow() -> None:
    slow = starting(StartupWatch(given_port=5000, listening=()), "r-1")
    wrong = starting(StartupWatch(given_port=5001, listening=(8080, 9090)), "r-2")

    assert note([slow, wrong], now_s=5).startswith("the app listens on 8080, 9090, not on")


def test_an_answer_that_is_not_yet_ready_says_what_and_for_how_long() -> None:
    loading = StartupWatch(
        probe="GET /health: answered 503", probe_since=at(420), given_port=8080, listening=(8080,)
    )

    info = note([starting(loading)], now_s=600)

    assert info.startswith("probing: GET /health: answered 503 for 3 min")


def test_the_endpoints_own_startup_timeout_is_the_one_told() -> None:
    endpoint = dataclasses.replace(
        make_endpoint(),
        deploy=DeploySpec(
            image_url="vllm/vllm-openai",
            command="serve",
            port=8000,
            readiness_probe=ReadinessProbe(startup_timeout_s=7200),
        ),
    )
    info = note([starting(StartupWatch(given_port=8000))], now_s=10, endpoint=endpoint)

    assert "2 h after starting" in info


def test_listening_on_its_port_it_waits_for_the_first_probe() -> None:
    info = note([starting(StartupWatch(given_port=8080, listening=(8080,)))], now_s=1)

    assert info.startswith("the app listens on port 8080 ($PORT); waiting for its first probe")


def test_an_image_pull_says_how_long_it_has_taken() -> None:
    pulling = dataclasses.replace(
        make_replica("r-1", state=ReplicaState.REQUESTED, since=at(0)),
        progress="pulling vllm/vllm-openai: 45%",
    )

    assert note([pulling], now_s=150) == "pulling vllm/vllm-openai: 45% (2 min)"


def test_a_replica_not_started_yet_is_starting() -> None:
    requested = make_replica("r-1", state=ReplicaState.REQUESTED, since=at(0))

    assert note([requested], now_s=2) == "starting replica r-1 (2 s)"


def test_without_a_clock_the_phase_is_told_without_durations() -> None:
    refused = starting(StartupWatch(given_port=41234))

    status = derive_status(make_endpoint(), [refused], POLICY)

    assert status.status_info is not None
    assert status.status_info.startswith("waiting for the app to listen on port 41234 ($PORT);")


@pytest.mark.parametrize("value", [0, 0.5, 86_401, True, "soon"])
def test_startup_timeout_is_bounded(value: object) -> None:
    with pytest.raises(ValidationError, match="startup_timeout_s"):
        ReadinessProbeIn.model_validate({"startup_timeout_s": value})


def test_startup_timeout_is_kept_as_given() -> None:
    probe = ReadinessProbeIn.model_validate({"startup_timeout_s": 3600}).to_probe()

    assert probe.startup_timeout_s == 3600


@pytest.mark.parametrize(
    "failed",
    [
        "GET /: closed the connection without answering",
        "GET /: connection failed: Connection reset by peer",
        "GET /: connection failed: Broken pipe",
        "GET /: cannot connect: Connection refused",
    ],
)
def test_while_nothing_listens_every_failed_connection_reads_as_waiting(failed: str) -> None:
    """A sandboxed replica's bridge accepts and drops the connection: a close, a reset
    or a broken pipe depending on timing, all the same to a user."""
    watch = StartupWatch(probe=failed, probe_since=at(39), given_port=42629, listening=())

    info = note([starting(watch)], now_s=40)

    assert info.startswith("waiting for the app to listen on port 42629 ($PORT) (40 s);"), info


def test_the_time_waited_is_steady_while_the_failures_words_change() -> None:
    """Each new detail is written with its own time; the note counts from the start."""
    reads = [
        note([starting(StartupWatch(probe=detail, probe_since=at(t), given_port=5000))], t + 0.5)
        for t, detail in [
            (10, "GET /: closed the connection without answering"),
            (11, "GET /: connection failed: Connection reset by peer"),
            (12, "GET /: closed the connection without answering"),
            (13, "GET /: connection failed: Broken pipe"),
        ]
    ]

    assert [r.split(";")[0] for r in reads] == [
        f"waiting for the app to listen on port 5000 ($PORT) ({t} s)" for t in (10, 11, 12, 13)
    ]


def test_a_listening_app_that_drops_connections_says_so_timed_from_its_start() -> None:
    reset = StartupWatch(
        probe="GET /: connection failed: Connection reset by peer",
        probe_since=at(59),
        given_port=5000,
        listening=(5000,),
    )

    info = note([starting(reset)], now_s=60)

    assert info.startswith(
        "the app listens on port 5000 ($PORT); waiting for it to accept a probe "
        "(last: GET /: connection failed: Connection reset by peer) (60 s)"
    ), info


def test_an_app_in_a_container_on_loopback_is_told_to_bind_all_addresses() -> None:
    loopback = StartupWatch(
        probe="GET /: connection failed: Connection reset by peer",
        probe_since=at(1),
        given_port=8000,
        listening=(8000,),
        inside_only=("127.0.0.1:8000",),
    )

    info = note([starting(loopback)], now_s=18)

    assert info.startswith(
        "the app listens on 127.0.0.1:8000 inside its container, where nothing outside it "
        "can reach: bind 0.0.0.0 (all addresses) on $PORT (deploy_metadata.command)"
    ), info
    assert "15 min" in info


def test_loopback_on_a_port_other_than_port_is_left_alone() -> None:
    """A side process of the app on 127.0.0.1:9000, beside the app on $PORT: fine."""
    side = StartupWatch(given_port=8000, listening=(8000, 9000), inside_only=("127.0.0.1:9000",))

    assert note([starting(side)], now_s=1).startswith("the app listens on port 8000 ($PORT);")


def test_the_unreachable_app_is_told_before_another_replica_that_is_only_slow() -> None:
    slow = starting(StartupWatch(given_port=8000, listening=()), "r-1")
    loopback = starting(
        StartupWatch(given_port=8000, listening=(8000,), inside_only=("[::1]:8000",)), "r-2"
    )

    assert note([slow, loopback], now_s=5).startswith("the app listens on [::1]:8000 inside")
