"""The quota arithmetic: what an endpoint counts for, what a change would take a user to,
and which quotas refuse it (only growth is refused)."""

from __future__ import annotations

import dataclasses

import pytest

from moorage.models.endpoints import DesiredState, Endpoint
from moorage.services.quotas import (
    Exceeded,
    FlavorUnits,
    Quotas,
    Usage,
    contribution,
    flavor_limit,
    size_violations,
    usage_after,
    usage_violations,
)
from moorage.settings import Settings
from tests.unit.builders import T0, make_endpoint

FLAVOR = "f" * 32  # make_endpoint's flavor
SLOTS = FlavorUnits(FLAVOR, "CPU", capacity=8, gpus=False)
GPUS = FlavorUnits(FLAVOR, "H100", capacity=4, gpus=True)
QUOTAS = Quotas(
    endpoints=3,
    replicas=4,
    flavor_share=0.5,
    command_bytes=64,
    env_vars=2,
    env_bytes=32,
    name_chars=16,
    description_chars=8,
    log_followers=4,
    secrets=2,
)


def with_gpus(endpoint: Endpoint, gpu_num: int) -> Endpoint:
    return dataclasses.replace(
        endpoint, deploy=dataclasses.replace(endpoint.deploy, gpu_num=gpu_num)
    )


@pytest.mark.parametrize(
    ("capacity", "share", "limit"),
    [(8, 0.5, 4), (4, 0.5, 2), (3, 0.5, 1), (1, 0.5, 1), (0, 0.5, 1), (10, 0.3, 3), (8, 1.0, 8)],
)
def test_flavor_limit_is_a_share_of_capacity_but_at_least_one(
    capacity: int, share: float, limit: int
) -> None:
    assert flavor_limit(capacity, share) == limit


def test_an_endpoint_counts_its_replicas_only_while_running() -> None:
    running = make_endpoint(target=3)
    assert contribution(running, SLOTS) == Usage(1, 3, 3)
    assert contribution(running, dataclasses.replace(SLOTS, flavor_id="other")) == Usage(1, 3, 0)
    stopped = make_endpoint(target=3, desired_state=DesiredState.STOPPED)
    assert contribution(stopped, SLOTS) == Usage(1, 0, 0)
    assert contribution(make_endpoint(deleted_at=T0), SLOTS) == Usage(0, 0, 0)
    assert contribution(None, SLOTS) == Usage(0, 0, 0)


def test_on_a_gpu_flavor_an_endpoint_counts_replicas_times_gpu_num() -> None:
    two_by_two = with_gpus(make_endpoint(target=2), 2)
    # flavor_share counts GPUs there; the replicas quota still counts replicas.
    assert contribution(two_by_two, GPUS) == Usage(1, 2, 4)
    assert contribution(with_gpus(make_endpoint(target=1), 4), GPUS) == Usage(1, 1, 4)
    stopped = with_gpus(make_endpoint(target=2, desired_state=DesiredState.STOPPED), 2)
    assert contribution(stopped, GPUS) == Usage(1, 0, 0)


def test_usage_after_replaces_the_endpoints_old_contribution() -> None:
    before = Usage(endpoints=2, replicas=3, on_flavor=2)
    current = make_endpoint(target=2)
    assert usage_after(before, current, make_endpoint(target=4), SLOTS) == Usage(2, 5, 4)
    assert usage_after(before, None, make_endpoint(target=1), SLOTS) == Usage(3, 4, 3)
    moved = dataclasses.replace(make_endpoint(target=2), flavor_id="g" * 32)
    # Moving to another flavor: the new flavor's count starts from what is held there.
    moved_to = dataclasses.replace(SLOTS, flavor_id="g" * 32)
    assert usage_after(Usage(2, 3, 0), current, moved, moved_to) == Usage(2, 3, 2)


def test_usage_after_counts_gpus_when_gpu_num_or_replicas_change() -> None:
    current = with_gpus(make_endpoint(target=1), 1)
    before = Usage(endpoints=1, replicas=1, on_flavor=1)
    assert usage_after(before, current, with_gpus(current, 4), GPUS) == Usage(1, 1, 4)
    doubled = dataclasses.replace(with_gpus(current, 2), target_instance_number=2)
    assert usage_after(before, current, doubled, GPUS) == Usage(1, 2, 4)
    assert usage_after(before, None, with_gpus(make_endpoint("ep-2"), 1), GPUS) == Usage(2, 2, 2)


def _names(found: list[Exceeded]) -> list[str]:
    return [v.quota for v in found]


def test_growth_past_a_quota_is_refused_with_each_quota_named() -> None:
    found = usage_violations(QUOTAS, Usage(3, 4, 4), Usage(4, 5, 5), SLOTS)
    assert _names(found) == ["endpoints", "replicas", "flavor_share"]
    message = found[2].message("u1")
    assert "flavor_share is 0.5" in message
    assert "4 of the 8 replicas of flavor CPU" in message
    assert "to 5 replicas" in message
    assert "PUT /v1/users/u1/quota" in message


def test_one_replica_of_four_gpus_is_past_half_of_a_four_gpu_flavor() -> None:
    """The share of a GPU flavor is in GPUs: 0.5 of 4 GPUs is 2, however few replicas."""
    after = contribution(with_gpus(make_endpoint(target=1), 4), GPUS)
    found = usage_violations(QUOTAS, Usage(0, 0, 0), after, GPUS)
    assert _names(found) == ["flavor_share"]
    message = found[0].message("u1")
    assert "flavor_share is 0.5" in message
    assert "you may hold 2 of the 4 GPUs of flavor H100" in message
    assert "(replicas x deploy_metadata.gpu_num)" in message
    assert "this would bring yours to 4 GPUs" in message
    assert "a smaller deploy_metadata.gpu_num" in message
    assert "PUT /v1/users/u1/quota" in message
    # Two replicas of two GPUs: the same four GPUs, refused the same way.
    pairs = contribution(with_gpus(make_endpoint(target=2), 2), GPUS)
    assert _names(usage_violations(QUOTAS, Usage(0, 0, 0), pairs, GPUS)) == ["flavor_share"]
    # Two GPUs, as one replica or as two: exactly the share, allowed.
    for target, gpu_num in ((1, 2), (2, 1)):
        half = contribution(with_gpus(make_endpoint(target=target), gpu_num), GPUS)
        assert usage_violations(QUOTAS, Usage(0, 0, 0), half, GPUS) == []


def test_shrinking_is_allowed_even_above_a_lowered_quota() -> None:
    assert usage_violations(QUOTAS, Usage(9, 9, 9), Usage(9, 8, 8), SLOTS) == []
    assert usage_violations(QUOTAS, Usage(3, 4, 4), Usage(3, 4, 4), SLOTS) == []
    # Fewer GPUs per replica on a flavor already over the share: allowed.
    assert usage_violations(QUOTAS, Usage(1, 1, 4), Usage(1, 1, 3), GPUS) == []


def test_reaching_a_quota_exactly_is_allowed() -> None:
    assert usage_violations(QUOTAS, Usage(2, 3, 3), Usage(3, 4, 4), SLOTS) == []


def test_sizes_are_checked_for_new_and_changed_fields_only() -> None:
    big = make_endpoint()
    big = dataclasses.replace(
        big,
        name="n" * 17,
        description="d" * 9,
        deploy=dataclasses.replace(
            big.deploy, command="c" * 65, env={"A": "1", "B": "2", "C": "3"}
        ),
    )
    assert _names(size_violations(QUOTAS, big, None)) == [
        "name_chars",
        "description_chars",
        "command_bytes",
        "env_vars",
    ]
    # Unchanged fields are not re-checked, so other edits still work after a quota drops.
    assert size_violations(QUOTAS, big, big) == []
    env_only = dataclasses.replace(big, deploy=dataclasses.replace(big.deploy, env={"A": "x" * 40}))
    assert _names(size_violations(QUOTAS, env_only, big)) == ["env_bytes"]


def test_command_size_counts_utf8_bytes() -> None:
    endpoint = make_endpoint()
    wide = dataclasses.replace(
        endpoint, deploy=dataclasses.replace(endpoint.deploy, command="é" * 33)
    )
    found = size_violations(QUOTAS, wide, None)
    assert _names(found) == ["command_bytes"]
    assert "66 bytes" in found[0].message("u1")


def test_defaults_come_from_the_settings() -> None:
    settings = Settings(quota_replicas=7, quota_flavor_share=0.25)
    quotas = Quotas.defaults(settings)
    assert (quotas.replicas, quotas.flavor_share) == (7, 0.25)
    assert quotas.with_overrides({"replicas": 9}).replicas == 9
