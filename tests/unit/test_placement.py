"""Which GPUs waiting replicas get: oldest first, all on one node, none twice."""

from __future__ import annotations

from moorage.models.gpus import Gpu
from moorage.models.placement import GpuRequest, most_replicas, place


def gpus(node: str, count: int) -> list[Gpu]:
    return [Gpu(node, i, f"{node}-{i}") for i in range(count)]


def test_each_request_gets_distinct_gpus_on_one_node() -> None:
    placed = place({"a": gpus("a", 4)}, [GpuRequest("r1", 2), GpuRequest("r2", 2)])

    assert placed["r1"].uuids == ("a-0", "a-1")
    assert placed["r2"].uuids == ("a-2", "a-3")


def test_requests_are_served_in_order_and_a_blocked_one_blocks_the_younger() -> None:
    placed = place(
        {"a": gpus("a", 1), "b": gpus("b", 1)},
        [GpuRequest("old", 1), GpuRequest("big", 2), GpuRequest("young", 1)],
    )

    # "big" needs two GPUs on one node; neither node has them. "young" waits behind it
    # rather than taking the GPU "big" would need once another frees.
    assert set(placed) == {"old"}


def test_a_replica_never_spans_nodes_and_the_fullest_fitting_node_is_chosen() -> None:
    placed = place({"a": gpus("a", 3), "b": gpus("b", 1)}, [GpuRequest("one", 1)])

    assert placed["one"].node == "b"  # keeps node a's three together for a larger ask


def test_nothing_free_places_nothing() -> None:
    assert place({}, [GpuRequest("r", 1)]) == {}
    assert place({"a": []}, [GpuRequest("r", 1)]) == {}


def test_most_replicas_counts_whole_replicas_per_node() -> None:
    inventory = [*gpus("a", 3), *gpus("b", 2)]

    assert most_replicas(inventory, 1) == 5
    assert most_replicas(inventory, 2) == 2  # one on a (one GPU left over), one on b
    assert most_replicas(inventory, 3) == 1
    assert most_replicas(inventory, 4) == 0
