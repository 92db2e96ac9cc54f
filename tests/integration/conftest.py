"""Fixtures for tests against real components: a migrated store, anyio on asyncio,
and a docker runtime on a real container engine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from docker.errors import DockerException, NotFound

from moorage.runtimes.docker import LABEL, DockerRuntime, connect
from moorage.store.db import Database
from moorage.wire import new_id
from tests.support import engine
from tests.support.components import need


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """moorage runs on asyncio (uvicorn), so its async code is tested there only."""
    return "asyncio"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A fresh database on each store, migrated to head, disposed after the test."""
    database = Database(database_url)
    try:
        database.migrate()
        yield database
    finally:
        database.dispose()


@pytest.fixture
def docker_engine_url() -> str:
    """The container engine to test against; skips (or fails where required) without one."""
    try:
        return engine.engine_url()
    except engine.EngineUnavailable as exc:
        need("docker", str(exc))
        raise


@pytest.fixture
def docker_runtime(docker_engine_url: str) -> Iterator[DockerRuntime]:
    """A docker runtime of an installation of its own. Afterwards every container of
    that installation is removed, and the test fails if one was still running."""
    runtime = DockerRuntime(
        connect(docker_engine_url), installation=f"moorage-test-{new_id()}", stop_grace_s=2
    )
    try:
        yield runtime
    finally:
        left_running = []
        try:
            mine = runtime.client.containers.list(
                all=True,
                filters={"label": f"{LABEL}.installation={runtime.installation}"},
                ignore_removed=True,
            )
            for container in mine:
                if container.status == "running":
                    left_running.append(f"{container.name} ({container.labels})")
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
            # Each endpoint's network too, so that failed tests do not use up subnets.
            for network in runtime.client.networks.list(
                filters={"label": f"{LABEL}.installation={runtime.installation}"}
            ):
                with contextlib.suppress(DockerException):
                    network.remove()
        finally:
            with contextlib.suppress(DockerException):
                runtime.client.close()
        assert not left_running, f"containers left running after the test: {left_running}"
