"""The database engine and schema migrations.

Migrations run at every start (Alembic ``upgrade head``), so an operator never
runs a separate step and every process sees the schema its code expects.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Connections kept open for the threads that read the store at once (the API's worker
# threads, the controller's): SQLAlchemy's default of 5 made every further thread open
# a connection, and run its PRAGMAs, per request.
SQLITE_POOL_SIZE = 16
SQLITE_POOL_OVERFLOW = 48
# The PostgreSQL advisory lock that processes starting at once take turns on (any
# constant; "moorage" in ASCII).
STARTUP_LOCK_KEY = 0x6D6F6F72616765


def _normalise_url(url: str) -> str:
    # Users write postgresql:// as libpq does; moorage ships psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_OVERFLOW,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """One engine and its session factory; repositories borrow sessions from it."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite ignores SELECT ... FOR UPDATE; see checked_session.
        self._checked_turns = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def startup_lock(self) -> Iterator[None]:
        """Held while a process migrates the store and ensures the admin token: of several
        processes started at once against one store, one migrates and generates a token
        while the others wait, then find both done. PostgreSQL: an advisory lock (released
        with the connection, should the process die); SQLite: a lock on a file beside the
        database (released with the process)."""
        if self.engine.dialect.name == "sqlite":
            with _file_lock(self.engine.url.database):
                yield
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK_KEY})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK_KEY}
                )
                connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def checked_session(self) -> Iterator[Session]:
        """A transaction for a write that is allowed by what it reads (free capacity,
        quotas), which concurrent writes change. On PostgreSQL the caller's row locks
        (``FOR UPDATE`` on the user and the flavor) make such writes take turns; SQLite
        ignores those, so there they take turns in this process (a SQLite store has
        one server)."""
        if self._checked_turns is None:
            with self.session() as session:
                yield session
        else:
            with self._checked_turns, self.session() as session:
                yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield
        return
    descriptor = os.open(f"{database}.startup-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
