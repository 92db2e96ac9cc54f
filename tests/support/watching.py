"""What tests and benchmarks watch from outside while moorage is under stress: a steady
load of GETs through a gateway, which node's processes a replica runs under, and a
replica id run by two processes at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.server import ApiClient, processes_with_env
from tests.support.split import running_replicas

ENDPOINT_ENV = "MOORAGE_ENDPOINT_ID"


@dataclass
class GetLoad:
    """Idempotent GETs through the gateway, one after another, from a thread; anything
    but a 200 (or no answer) is a failure."""

    client: ApiClient
    service_id: str
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> GetLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        url = f"{self.client.base}/inference-api/v1/inference_service/{self.service_id}/"
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.get(url, headers=self.client.headers, timeout=30)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def ancestors(pid: int) -> set[int]:
    """The process and every parent of it up to init."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def replica_of(pid: int) -> str | None:
    """The replica id in a process's environment, if it has one."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"MOORAGE_REPLICA_ID="):
            return entry.split(b"=", 1)[1].decode()
    return None


def replicas_under(ancestor: int, service_id: str) -> dict[str, set[int]]:
    """The endpoint's replicas whose processes descend from ``ancestor`` (a Ray node's
    ``ray start``), with their pids."""
    found: dict[str, set[int]] = {}
    for pid in processes_with_env(ENDPOINT_ENV, service_id):
        replica = replica_of(pid)
        if replica is not None and ancestor in ancestors(pid):
            found.setdefault(replica, set()).add(pid)
    return found


class DuplicateWatch:
    """Looks at the replicas under a MOORAGE_HOME every 50 ms: a replica id run by two
    processes is a duplicate, whenever it happens."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.duplicates: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for replica_id, pids in running_replicas(self.home).items():
                if len(pids) > 1:
                    self.duplicates[replica_id] = pids
            self._stop.wait(0.05)

    def __enter__(self) -> DuplicateWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
