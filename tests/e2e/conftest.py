"""A real ``moorage serve`` per test module and store, with an admin and two users.

A module may set ``SERVER_ENV`` (a dict of ``MOORAGE_*`` settings) for its server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import database
from tests.support import engine, ray_cluster
from tests.support.backends import Replica
from tests.support.components import need
from tests.support.gateway import StandaloneGateway, endpoint
from tests.support.raw_http import OTHER_TOKEN, TOKEN
from tests.support.server import ApiClient, MoorageServer, new_user_token


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every e2e module runs on both stores with the process runtime, but a module that
    sets ``STORES = ["sqlite"]`` (what it checks happens before or beside the store:
    the gateway's framing, logs, sandboxes) runs on SQLite only; a module that sets
    ``RUNTIMES = ["process", "docker"]`` also runs on the docker runtime (SQLite), and
    one that names "ray" also on a real Ray cluster (on PostgreSQL where the module
    runs on it, as a deployment across machines would); one whose RUNTIMES leaves out
    "process" runs on the runtimes it names only."""
    if "server" not in metafunc.fixturenames:
        return
    stores = getattr(metafunc.module, "STORES", ("sqlite", "postgresql"))
    runtimes = getattr(metafunc.module, "RUNTIMES", ("process",))
    combos = []
    if "process" in runtimes:
        combos.append(pytest.param(("sqlite", "process"), id="sqlite-process"))
    if "postgresql" in stores and "process" in runtimes:
        combos.append(
            pytest.param(
                ("postgresql", "process"), id="postgresql-process", marks=pytest.mark.postgres
            )
        )
    if "docker" in runtimes:
        combos.append(
            pytest.param(("sqlite", "docker"), id="sqlite-docker", marks=pytest.mark.docker)
        )
    if "ray" in runtimes:
        store = "postgresql" if "postgresql" in stores else "sqlite"
        marks = [pytest.mark.ray] + ([pytest.mark.postgres] if store == "postgresql" else [])
        combos.append(pytest.param((store, "ray"), id=f"{store}-ray", marks=marks))
    metafunc.parametrize("server", combos, indirect=True, scope="module")


def ray_env() -> dict[str, str]:
    """What points ``moorage serve`` at the shared test cluster."""
    try:
        address = ray_cluster.address()
    except ray_cluster.RayUnavailable as exc:
        need("ray", str(exc))
        raise
    return {
        "MOORAGE_RAY_ADDRESS": address,
        "MOORAGE_RAY_NODE_IP": ray_cluster.NODE_IP,
        **ray_cluster.LOOPBACK_ENV,
    }


def docker_host() -> str:
    try:
        return engine.engine_url()
    except engine.EngineUnavailable as exc:
        need("docker", str(exc))
        raise


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MoorageServer]:
    store, runtime = request.param
    host = docker_host() if runtime == "docker" else None
    home = tmp_path_factory.mktemp("moorage-home")
    extra_env = getattr(request.module, "SERVER_ENV", {})
    if runtime == "ray":
        extra_env = {**extra_env, **ray_env()}
    with database(store, home) as url:
        running = MoorageServer(
            home=home, database_url=url, extra_env=extra_env, runtime=runtime, docker_host=host
        ).start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def admin(server: MoorageServer) -> ApiClient:
    assert server.admin_token is not None
    return ApiClient(server.url, server.admin_token)


@pytest.fixture(scope="module")
def alice(server: MoorageServer, admin: ApiClient) -> ApiClient:
    return ApiClient(server.url, new_user_token(admin, "alice"))


@pytest.fixture(scope="module")
def bob(server: MoorageServer, admin: ApiClient) -> ApiClient:
    return ApiClient(server.url, new_user_token(admin, "bob"))


# -- a standalone gateway in front of one real replica (the gateway_* modules) ----------


@pytest.fixture(scope="module")
def replica() -> Iterator[Replica]:
    with Replica() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    replica: Replica, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandaloneGateway]:
    """Endpoints ``svc``, ``capped`` (one request at a time, a short queue) and ``theirs``
    (another user's), all on ``replica``."""
    endpoints = [
        endpoint("svc", [replica.address], token=TOKEN),
        endpoint(
            "capped",
            [replica.address],
            token=TOKEN,
            max_concurrency=1,
            max_queue=5,
            queue_timeout_s=20,
        ),
        endpoint("theirs", [replica.address], token=OTHER_TOKEN),
    ]
    with StandaloneGateway(tmp_path_factory.mktemp("gateway"), endpoints) as running:
        yield running
