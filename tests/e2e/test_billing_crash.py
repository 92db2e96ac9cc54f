"""Billing through a crash: a real ``moorage serve`` on the process runtime, killed with
SIGKILL while its replicas run and started again on the same home, store and port,
bills each replica for the time it ran, measured from outside, and no second twice.

The replicas' lives are measured by polling /proc every POLL_S for the processes that
carry their ids in their environment (first seen to first poll that no longer sees
them). A replica is billed in whole UTC seconds, from its recorded ``started`` (just
after its process starts) to its ``failed`` or ``stopped`` (just after it is gone), so
each life is billed within TOLERANCE_S of what was measured: 1 s of rounding, twice
the polling interval, and a little for the store write that records the event.

A replica that dies while moorage is down is billed up to moorage's last heartbeat
(written at most once a second by the controller's passes), not through the downtime.
Usage is read from the store's ``usage_records`` after a clean shutdown, whose last
checkpoint closes every second.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from moorage.store.db import Database
from moorage.store.tables import ReplicaEventRow, UsageRecordRow
from tests.conftest import database
from tests.e2e.test_crash_safety import replica_processes
from tests.support.server import ApiClient, MoorageServer, free_port, wait_for

POLL_S = 0.2
# Whole seconds (1 s), the polling (2 x POLL_S), and the event's store write.
TOLERANCE_S = 1 + 2 * POLL_S + 0.4
# The controller's heartbeat is at most about a second old when moorage dies.
HEARTBEAT_AGE_S = 2.0
DOWN_S = 8.0  # how long moorage stays down: far more than any tolerance here
SERVES = "exec python3 -m http.server $PORT"
SERVER_ENV = {
    "MOORAGE_FLAVORS": str(Path(__file__).with_name("billing_flavors.toml")),
    "MOORAGE_SANDBOX": "off",
    "MOORAGE_METERING_INTERVAL_S": "2",
}


@dataclass
class Lives:
    """Each replica's lives as seen from outside: (first seen, first seen gone), in
    wall-clock seconds, polled from /proc in a thread."""

    endpoint_id: str
    lives: dict[str, list[list[float]]] = field(default_factory=dict)
    _open: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Lives:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(POLL_S)

    def poll(self) -> None:
        seen = set(replica_processes(self.endpoint_id))
        now = time.time()
        for replica_id in seen - self._open:
            self.lives.setdefault(replica_id, []).append([now, now])
        for replica_id in self._open - seen:
            self.lives[replica_id][-1][1] = now
        self._open = seen

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        assert not self._open, f"replicas still running: {sorted(self._open)}"

    def measured(self, replica_id: str) -> float:
        return sum(end - start for start, end in self.lives[replica_id])


@dataclass
class Installation:
    """One home, store and port whose server a test kills and starts again."""

    home: Path
    database_url: str
    port: int = field(default_factory=free_port)
    server: MoorageServer | None = None
    endpoints: list[str] = field(default_factory=list)

    def start(self) -> MoorageServer:
        self.server = MoorageServer(
            home=self.home,
            database_url=self.database_url,
            extra_env=SERVER_ENV,
            port=self.port,
        ).start()
        return self.server

    def crash(self) -> float:
        """SIGKILL: no shutdown hook runs, the replicas run on. Answers when."""
        assert self.server is not None
        killed_at = time.time()
        assert self.server.stop(signal.SIGKILL) == -signal.SIGKILL
        return killed_at

    @property
    def client(self) -> ApiClient:
        assert self.server is not None
        assert self.server.admin_token is not None
        return ApiClient(self.server.url, self.server.admin_token)

    def clean_up(self) -> None:
        """Stops the server and kills whatever replica is left, whatever happened."""
        if self.server is not None:
            with contextlib.suppress(AssertionError):
                self.server.stop(signal.SIGINT, timeout=30)
        for endpoint_id in self.endpoints:
            for pids in replica_processes(endpoint_id).values():
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    with database(request.param, tmp_path) as url:
        setup = Installation(home=tmp_path / "home", database_url=url)
        try:
            setup.start()
            yield setup
        finally:
            setup.clean_up()


def _create(setup: Installation, replicas: int) -> str:
    client = setup.client
    listed = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    [priced] = [f["flavor_id"] for f in listed if f["display_name"] == "PRICED_GPU"]
    created = client.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "billed",
            "description": "billed through a crash",
            "payment_type": "usd",
            "resource_metadata": {
                "flavor_id": priced,
                "scale_type": "manual",
                "target_instance_number": replicas,
            },
            "deploy_metadata": {
                "image_url": "local",
                "command": SERVES,
                "port": 8080,
                "gpu_num": 1,
            },
        },
    )
    assert created.status_code == 200, created.text
    service_id = str(created.json()["service_id"])
    setup.endpoints.append(service_id)
    return service_id


def _ready(setup: Installation, service_id: str, wanted: int) -> set[str]:
    """Waits for ``wanted`` ready replicas; answers their ids."""

    def ready() -> set[str] | None:
        got = setup.client.call("GET", f"/v1/inference-service/{service_id}").json()
        metadata = got["endpoint_metadata"]
        if metadata["ready_replicas"] != wanted:
            return None
        return {r["replica_id"] for r in metadata["replicas"]}

    found: set[str] = wait_for(ready, timeout=90, what=f"{wanted} ready replicas")
    return found


def _stop_and_shut_down(setup: Installation, service_id: str, lives: Lives) -> None:
    """Stops the endpoint, waits for its processes to go, then stops moorage cleanly:
    its checkpoint at shutdown closes every second."""
    stopping = setup.client.call("POST", f"/v1/inference-service/{service_id}/stop")
    assert stopping.status_code == 200, stopping.text
    wait_for(lambda: not replica_processes(service_id), timeout=60, what="replicas gone")
    time.sleep(2 * POLL_S)
    lives.stop()
    assert setup.server is not None
    assert setup.server.stop(signal.SIGINT) == 0


@dataclass(frozen=True)
class Record:
    replica_id: str
    start: datetime
    end: datetime
    seconds: int


def _records(setup: Installation) -> list[Record]:
    db = Database(setup.database_url)
    try:
        with db.session() as session:
            rows = session.scalars(select(UsageRecordRow)).all()
            return [Record(r.replica_id, r.period_start, r.period_end, r.seconds) for r in rows]
    finally:
        db.dispose()


def _events(setup: Installation, replica_id: str) -> list[tuple[str, datetime]]:
    db = Database(setup.database_url)
    try:
        with db.session() as session:
            rows = session.execute(
                select(ReplicaEventRow.kind, ReplicaEventRow.at)
                .where(ReplicaEventRow.replica_id == replica_id)
                .order_by(ReplicaEventRow.event_id)
            ).tuples()
            return list(rows)
    finally:
        db.dispose()


def _billed_once(records: list[Record]) -> dict[str, int]:
    """Each replica's billed seconds, after checking that no second is billed twice:
    each record's seconds are the ticks in its (start, end], and a replica's records
    do not overlap."""
    billed: dict[str, int] = {}
    by_replica: dict[str, list[Record]] = {}
    for record in records:
        ticks = int(record.end.timestamp()) - int(record.start.timestamp())
        assert record.seconds == ticks, f"{record}: {ticks} ticks"
        by_replica.setdefault(record.replica_id, []).append(record)
    for replica_id, mine in by_replica.items():
        mine.sort(key=lambda r: r.start)
        for before, after in itertools.pairwise(mine):
            assert before.end <= after.start, f"records overlap: {before} and {after}"
        billed[replica_id] = sum(r.seconds for r in mine)
    assert sum(billed.values()) == sum(r.seconds for r in records)
    return billed


def _close_to(billed: float, measured: float, what: str, slack: float = TOLERANCE_S) -> None:
    print(f"{what}: billed {billed} s, measured {measured:.2f} s")  # shown with -s or -rP
    assert abs(billed - measured) <= slack, (
        f"{what}: billed {billed} s, measured {measured:.2f} s (within {slack:.1f} s)"
    )


def test_replicas_running_through_a_crash_are_billed_for_their_lives_once(
    installation: Installation,
) -> None:
    service_id = _create(installation, 2)
    lives = Lives(service_id).start()
    first = _ready(installation, service_id, 2)
    time.sleep(3)
    installation.crash()  # the replicas run on while moorage is down
    time.sleep(3)
    installation.start()
    assert _ready(installation, service_id, 2) == first, "the same replicas, adopted"
    scale = installation.client.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"resource_metadata": {"target_instance_number": 1}},
    )
    assert scale.status_code == 200, scale.text
    wait_for(lambda: len(replica_processes(service_id)) == 1, timeout=60, what="one replica")
    time.sleep(2)
    _stop_and_shut_down(installation, service_id, lives)

    billed = _billed_once(_records(installation))
    assert set(billed) == first
    for replica_id in first:
        assert len(lives.lives[replica_id]) == 1, "each ran once, through the crash"
        _close_to(billed[replica_id], lives.measured(replica_id), replica_id)
    assert min(lives.measured(r) for r in first) > 6 + 3, "both ran through the downtime"


def test_a_replica_killed_while_moorage_is_down_is_billed_up_to_moorages_last_heartbeat(
    installation: Installation,
) -> None:
    service_id = _create(installation, 2)
    lives = Lives(service_id).start()
    replicas = _ready(installation, service_id, 2)
    time.sleep(3)  # several heartbeats
    killed_at = installation.crash()
    victim = sorted(replicas)[0]
    for pid in replica_processes(service_id)[victim]:
        os.kill(pid, signal.SIGKILL)  # the replica dies while moorage is down
    wait_for(lambda: victim not in replica_processes(service_id), timeout=10, what="killed")
    time.sleep(DOWN_S)
    installation.start()
    _ready(installation, service_id, 2)  # the victim started again, a new life
    time.sleep(2)
    _stop_and_shut_down(installation, service_id, lives)

    first_life, *later = lives.lives[victim]
    assert later, "the victim was started again after the restart"
    [failed_at] = [at for kind, at in _events(installation, victim) if kind == "failed"]
    assert killed_at - HEARTBEAT_AGE_S <= failed_at.timestamp() <= killed_at, (
        f"failed at {failed_at}, moorage killed at {killed_at}: closed at its last heartbeat"
    )
    billed = _billed_once(_records(installation))
    measured = lives.measured(victim)
    _close_to(
        billed[victim],
        measured,
        f"{victim}, killed while moorage was down ({len(later) + 1} lives)",
        slack=TOLERANCE_S * (len(later) + 1) + HEARTBEAT_AGE_S,
    )
    first_billed = int(failed_at.timestamp()) - int(_started(installation, victim).timestamp())
    _close_to(
        first_billed, first_life[1] - first_life[0], "its first life", TOLERANCE_S + HEARTBEAT_AGE_S
    )
    assert first_billed < first_life[1] - first_life[0] + DOWN_S / 2, "the downtime not billed"
    [survivor] = replicas - {victim}
    _close_to(billed[survivor], lives.measured(survivor), f"{survivor}, billed through")
    assert lives.measured(survivor) > DOWN_S, "the survivor ran, and is billed, through it"


def _started(setup: Installation, replica_id: str) -> datetime:
    return next(at for kind, at in _events(setup, replica_id) if kind == "started")
