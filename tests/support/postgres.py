"""A real PostgreSQL server for the store tests.

``.ci/run`` starts one and exports ``MOORAGE_TEST_POSTGRES_URL``. Without it,
tests start a throwaway cluster themselves when the server binaries are
installed (Debian's ``postgresql``), so ``make test`` covers both stores on a
developer's machine too. Each test gets a database of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import psycopg

ENV_URL = "MOORAGE_TEST_POSTGRES_URL"


class PostgresUnavailable(Exception):
    pass


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (version_dir / name).exists():
            return str(version_dir / name)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root; Debian's package creates a postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def start_throwaway_cluster() -> str:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresUnavailable(
            f"set {ENV_URL} or install the server (apt-get install postgresql)"
        )
    data = Path(tempfile.mkdtemp(prefix="moorage-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres_user(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres_user(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off",
            ]
        ),
        check=True,
        capture_output=True,
    )

    def _stop() -> None:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(_stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@cache
def admin_url() -> str:
    """The server to create test databases on; raises PostgresUnavailable."""
    url = os.environ.get(ENV_URL)
    if url:
        return url
    try:
        return start_throwaway_cluster()
    except subprocess.CalledProcessError as exc:
        raise PostgresUnavailable(
            f"could not start a throwaway cluster: {exc.stderr.decode(errors='replace')}"
        ) from exc


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    name = f"moorage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = _libpq(server_url).rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
