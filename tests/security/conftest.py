"""Attacks against a real ``moorage serve`` (and standalone gateways): the e2e fixtures.

Each module here sends one kind of attack and checks that it fails and that the
service keeps serving everyone else. A module that sets ``RUNTIMES = ["process",
"docker"]`` runs on both runtimes, as in ``tests/e2e``.
"""

from tests.e2e.conftest import (  # noqa: F401 (fixtures)
    admin,
    alice,
    bob,
    gateway,
    pytest_generate_tests,
    replica,
    server,
)
