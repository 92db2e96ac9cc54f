"""A real ``moorage serve`` per test module and store, with an admin and two users.

A module may set ``SERVER_ENV`` (a dict of ``MOORAGE_*`` settings) for its server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import database
from tests.support.server import ApiClient, MoorageServer, new_user_token


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MoorageServer]:
    home = tmp_path_factory.mktemp("moorage-home")
    extra_env = getattr(request.module, "SERVER_ENV", {})
    with database(request.param, home) as url:
        running = MoorageServer(home=home, database_url=url, extra_env=extra_env).start()
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
