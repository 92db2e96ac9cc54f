"""What ``status_info`` tells a user besides failures: pull progress and rollbacks."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from moorage.models.endpoints import EndpointStatus, ReadinessProbe, Resources
from moorage.models.replicas import ReplicaState
from moorage.models.requests import DeployMetadataIn, DeployMetadataPatch
from moorage.models.status import StatusPolicy, derive_status
from tests.unit.builders import make_endpoint, make_replica

POLICY = StatusPolicy()


def test_an_image_pull_in_progress_is_shown_while_initializing() -> None:
    endpoint = make_endpoint()
    pulling = dataclasses.replace(
        make_replica("r-1", state=ReplicaState.REQUESTED), progress="pulling python:3.10-slim: 45%"
    )

    status = derive_status(endpoint, [pulling], POLICY)

    assert status.status is EndpointStatus.INITIALIZING
    assert status.status_info == "pulling python:3.10-slim: 45%"


def test_a_rollback_note_is_shown_while_the_old_revision_serves() -> None:
    endpoint = dataclasses.replace(make_endpoint(), rollout_note="revision 2 was rolled back")

    status = derive_status(endpoint, [make_replica("r-1")], POLICY)

    assert status.status is EndpointStatus.AVAILABLE
    assert status.status_info == "revision 2 was rolled back"


BASE = {"image_url": "python:3.10-slim", "command": "python app.py", "port": 8080}


def test_probe_and_resources_have_defaults_and_accept_strings() -> None:
    spec = DeployMetadataIn.model_validate(
        {
            **BASE,
            "readiness_probe": {"path": "/health", "period_s": "0.5"},
            "resources": {"cpus": "1.5", "memory_mb": "512"},
        }
    ).to_spec()

    assert spec.readiness_probe == ReadinessProbe(path="/health", period_s=0.5)
    assert spec.resources == Resources(cpus=1.5, memory_mb=512)


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("readiness_probe", {"path": "health"}, "path"),
        ("readiness_probe", {"period_s": 0}, "period_s"),
        ("readiness_probe", {"failure_threshold": 0}, "failure_threshold"),
        ("readiness_probe", {"timeout_s": True}, "timeout_s"),
        ("resources", {"cpus": -1}, "cpus"),
        ("resources", {"memory_mb": 1}, "memory_mb"),
        ("resources", {"gpus": 1}, "gpus"),
    ],
)
def test_bad_probe_or_resources_are_rejected_naming_the_field(
    section: str, value: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        DeployMetadataIn.model_validate({**BASE, section: value})

    assert caught.value.errors()[0]["loc"][:2] == (section, field)


def test_a_patch_replaces_the_probe_whole_and_keeps_what_it_does_not_name() -> None:
    current = DeployMetadataIn.model_validate(
        {**BASE, "readiness_probe": {"path": "/health", "failure_threshold": 5}}
    ).to_spec()

    patched = DeployMetadataPatch.model_validate(
        {"readiness_probe": {"period_s": 3}, "env": {"A": "1"}}
    ).apply_to(current)

    assert patched.readiness_probe == ReadinessProbe(period_s=3)
    assert patched.env == {"A": "1"}
    assert patched.command == current.command
