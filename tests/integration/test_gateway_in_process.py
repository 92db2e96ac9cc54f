"""The gateway in process: a ``GatewayRouter`` behind a ``ProxyServer`` on 127.0.0.1,
serving a route table the test builds, in front of fake replicas, called over real
HTTP with httpx.

What a caller sees: who may call which endpoint, how requests spread over
replicas, the per-replica cap with its queue and 429, retries past a replica
that cannot be reached, and an endpoint with nothing ready. The wire itself
(framing, limits, streams) is tested against a real ``moorage gateway`` in
tests/e2e; nothing here needs a process of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import httpx
import pytest

from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1.server import ProxyServer
from moorage.gateway.metrics import GatewayMetrics
from moorage.gateway.router import GatewayRouter
from moorage.models.endpoints import DeploySpec, GatewaySettings
from moorage.models.states import PolicyName
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute, ReplicaRoute, RouteTable
from moorage.runtimes.base import Launch
from moorage.runtimes.fake import FakeRuntime
from moorage.runtimes.ports import free_port
from moorage.tokens import hash_token
from tests.support.backends import Replica

pytestmark = pytest.mark.anyio

OWNER = "mrg_owner-token"
OTHER = "mrg_other-users-token"
PREFIX = "/inference-api/v1/inference_service/"


@dataclass
class Gateway:
    routes: RouteTableHolder
    dispatcher: Dispatcher
    base: str

    def serve(self, *endpoints: EndpointRoute) -> None:
        """Publishes a table with these endpoints, as the controller would."""
        self.routes.swap(
            RouteTable(
                MappingProxyType({e.service_id: e for e in endpoints}),
                frozenset({hash_token(OWNER), hash_token(OTHER)}),
            )
        )

    def url(self, service_id: str, path: str = "") -> str:
        return f"{self.base}{PREFIX}{service_id}/{path}"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    routes = RouteTableHolder()
    dispatcher = Dispatcher.following(routes)
    proxy = ProxyServer(GatewayRouter(routes, dispatcher, GatewayMetrics(dispatcher)))
    server = await proxy.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Gateway(routes, dispatcher, f"http://127.0.0.1:{port}")
    finally:
        await proxy.close(grace_s=1.0)


@pytest.fixture
async def fakes() -> AsyncIterator[FakeRuntime]:
    runtime = FakeRuntime()
    try:
        yield runtime
    finally:
        for replica_id in await runtime.observe():
            await runtime.stop(replica_id)
        await runtime.close()


@pytest.fixture
def slow_replica() -> Iterator[Replica]:
    with Replica() as running:
        yield running


async def _replicas(runtime: FakeRuntime, count: int) -> list[ReplicaRoute]:
    routes = []
    for index in range(count):
        launch = Launch(f"replica-{index}", "ep", 1, DeploySpec("image", "serve", 8000))
        routes.append(ReplicaRoute(launch.replica_id, await runtime.start(launch)))
    return routes


def _endpoint(
    replicas: Sequence[ReplicaRoute], service_id: str = "ep", **admission: object
) -> EndpointRoute:
    return EndpointRoute(
        service_id,
        frozenset({hash_token(OWNER)}),
        tuple(replicas),
        admission=GatewaySettings(**admission),  # type: ignore[arg-type]
    )


def _client(token: str = OWNER) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        trust_env=False, timeout=20.0, headers={"Authorization": f"Bearer {token}"}
    )


# -- who may call ---------------------------------------------------------------------------


async def test_the_owner_reaches_a_replica_with_path_and_query_but_not_the_token(
    gateway: Gateway, fakes: FakeRuntime
) -> None:
    gateway.serve(_endpoint(await _replicas(fakes, 1)))

    async with _client() as client:
        response = await client.post(gateway.url("ep", "v1/chat?stream=false"), content=b"{}")

    assert response.status_code == 200
    body = response.json()
    assert body["replica_id"] == "replica-0"
    assert body["path"] == "/v1/chat"
    assert body["method"] == "POST"


async def test_another_users_endpoint_reads_as_missing_and_an_unknown_token_is_refused(
    gateway: Gateway, fakes: FakeRuntime
) -> None:
    gateway.serve(_endpoint(await _replicas(fakes, 1)))

    async with _client(OTHER) as other, _client("mrg_nobody") as nobody, _client() as owner:
        theirs = await other.get(gateway.url("ep"))
        missing = await owner.get(gateway.url("no-such-endpoint"))
        unknown = await nobody.get(gateway.url("ep"))
        anonymous = await owner.get(gateway.url("ep"), headers={"Authorization": ""})

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["code"] == missing.json()["code"]
    assert unknown.status_code == 401
    assert anonymous.status_code == 401


async def test_an_endpoint_with_no_ready_replica_answers_503_with_retry_after(
    gateway: Gateway,
) -> None:
    gateway.serve(_endpoint([]))

    async with _client() as client:
        response = await client.get(gateway.url("ep"))

    assert response.status_code == 503
    assert response.headers.get("retry-after") is not None


# -- spreading and admission -------------------------------------------------------------------


async def test_round_robin_spreads_requests_evenly_over_the_replicas(
    gateway: Gateway, fakes: FakeRuntime
) -> None:
    gateway.serve(_endpoint(await _replicas(fakes, 3), policy=PolicyName.ROUND_ROBIN))

    async with _client() as client:
        answers = [(await client.get(gateway.url("ep"))).json()["replica_id"] for _ in range(30)]

    assert Counter(answers) == {"replica-0": 10, "replica-1": 10, "replica-2": 10}


async def test_requests_past_the_cap_queue_then_overflow_with_429(
    gateway: Gateway, slow_replica: Replica
) -> None:
    gateway.serve(
        _endpoint(
            [ReplicaRoute("slow", slow_replica.address)],
            max_concurrency=1,
            max_queue=1,
            queue_timeout_s=10,
        )
    )

    async def call(delay: float) -> tuple[int, str | None, float]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        async with _client() as client:
            response = await client.get(gateway.url("ep", "path/x?delay=1"))
        return response.status_code, response.headers.get("retry-after"), time.monotonic() - started

    served, queued, refused = await asyncio.gather(call(0.0), call(0.2), call(0.4))

    assert served[0] == 200
    assert queued[0] == 200
    assert queued[2] > 1.5, "the queued request did not wait for the first"
    assert refused[0] == 429
    assert refused[1] is not None
    assert refused[2] < 0.5, "refused after waiting, not at once"
    assert gateway.dispatcher.in_flight("slow") == 0


async def test_a_replica_that_cannot_be_reached_is_retried_on_another(
    gateway: Gateway, fakes: FakeRuntime
) -> None:
    [alive] = await _replicas(fakes, 1)
    dead = ReplicaRoute("dead", f"127.0.0.1:{free_port()}")
    gateway.serve(_endpoint([dead, alive], policy=PolicyName.ROUND_ROBIN, retries=1))

    async with _client() as client:
        statuses = [(await client.get(gateway.url("ep"))).status_code for _ in range(10)]

    assert statuses == [200] * 10
    assert gateway.dispatcher.in_flight("dead") == 0, "a failed attempt stayed counted"
    assert gateway.dispatcher.in_flight(alive.replica_id) == 0


async def test_without_retries_an_unreachable_replica_answers_502(gateway: Gateway) -> None:
    dead = ReplicaRoute("dead", f"127.0.0.1:{free_port()}")
    gateway.serve(_endpoint([dead], retries=0))

    async with _client() as client:
        response = await client.get(gateway.url("ep"))

    assert response.status_code == 502
    assert gateway.dispatcher.in_flight("dead") == 0


async def test_a_replica_taken_out_of_the_table_gets_no_more_requests(
    gateway: Gateway, fakes: FakeRuntime
) -> None:
    first, second = await _replicas(fakes, 2)
    gateway.serve(_endpoint([first, second], policy=PolicyName.ROUND_ROBIN))
    async with _client() as client:
        before = {(await client.get(gateway.url("ep"))).json()["replica_id"] for _ in range(4)}

        gateway.serve(_endpoint([second], policy=PolicyName.ROUND_ROBIN))
        after = {(await client.get(gateway.url("ep"))).json()["replica_id"] for _ in range(4)}

    assert before == {first.replica_id, second.replica_id}
    assert after == {second.replica_id}
