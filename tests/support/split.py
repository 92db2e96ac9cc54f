"""moorage as separate processes over one store: ``moorage api``, ``moorage controller``
and ``moorage gateway``, each in a process group of its own, stopped (the group killed)
however the test ends. Replicas run in the process runtime without a sandbox; as a
controller leaves them running when it stops, ``Split.close`` stops them too."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.server import ApiClient, free_port, wait_for

MOORAGE = str(Path(sys.executable).with_name("moorage"))
ADMIN_TOKEN = "mrg_split_admin_token"
# A replica that starts at once: Python's file server answers GET / (the readiness path).
REPLICA_COMMAND = "exec python3 -m http.server $PORT --bind 127.0.0.1"
LEADER = re.compile(r"controller (\S+) is the leader \(epoch (\d+)\)")


def base_env(home: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    env.update(
        MOORAGE_HOME=str(home),
        MOORAGE_DATABASE_URL=database_url,
        MOORAGE_RUNTIME="process",
        MOORAGE_SANDBOX="off",
        MOORAGE_STOP_GRACE_S="3",
        MOORAGE_ADMIN_TOKEN=ADMIN_TOKEN,
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


@dataclass
class Part:
    """One moorage process (its own process group), logging to ``log_path``."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Part:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [MOORAGE, *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> None:
        """Stops the group with ``sig``, then SIGKILL; never raises."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.send(signal.SIGCONT)
            self.send(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # whatever is left in its group
            os.killpg(self.process.pid, signal.SIGKILL)

    def answers(self) -> bool:
        if not self.alive():
            raise AssertionError(f"{self.name} exited early:\n{self.log()}")
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False


@dataclass
class Split:
    """The processes of one installation: a shared MOORAGE_HOME, one store."""

    home: Path
    database_url: str
    parts: list[Part] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {**base_env(self.home, self.database_url), **extra}

    def api(self, name: str) -> Part:
        port = free_port()
        part = Part(
            name,
            ["api"],
            self.env(MOORAGE_PORT=str(port)),
            self.home / f"{name}.log",
            port,
        )
        self.parts.append(part.start())
        return part

    def controller(self, name: str, **extra: str) -> Part:
        env = self.env(MOORAGE_CONTROLLER_ID=name, **extra)
        part = Part(name, ["controller"], env, self.home / f"{name}.log")
        self.parts.append(part.start())
        return part

    def gateway(self, name: str, control_plane: str) -> Part:
        port = free_port()
        args = ["gateway", "--port", str(port), "--control-plane", control_plane]
        part = Part(name, [*args, "--token", ADMIN_TOKEN], self.env(), self.home / f"{name}.log")
        part.port = port
        self.parts.append(part.start())
        return part

    def wait_answering(self, part: Part) -> None:
        wait_for(part.answers, timeout=60, what=f"{part.name} to answer /healthz")

    def client(self, part: Part) -> ApiClient:
        return ApiClient(f"http://127.0.0.1:{part.port}", ADMIN_TOKEN)

    def leader(self, *candidates: Part, timeout: float = 30) -> Part:
        """The controller whose log last says it leads (one of ``candidates``)."""

        def found() -> Part | None:
            best: tuple[int, Part] | None = None
            for part in candidates:
                if not part.alive():
                    continue
                for match in LEADER.finditer(part.log()):
                    epoch = int(match.group(2))
                    if best is None or epoch > best[0]:
                        best = (epoch, part)
            return best[1] if best else None

        leader: Part = wait_for(found, timeout=timeout, interval=0.05, what="a leader")
        return leader

    def close(self) -> None:
        """Stops every process, then every replica still running under this home."""
        for part in reversed(self.parts):
            part.stop()
        for pid in replica_processes(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _environ(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _session_leader(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[3] == pid  # field 6, the session id, after the name's ")"


def replica_processes(home: Path) -> list[int]:
    """Session leaders of replicas started under ``home`` (by their working folder)."""
    root = str((home / "replicas").resolve())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(root + "/") and _session_leader(entry.name):
            found.append(int(entry.name))
    return found


def running_replicas(home: Path) -> dict[str, list[int]]:
    """Replica id -> session leaders running it (more than one is a duplicate)."""
    by_id: dict[str, list[int]] = {}
    for pid in replica_processes(home):
        for item in _environ(str(pid)):
            if item.startswith(b"MOORAGE_REPLICA_ID="):
                by_id.setdefault(item.split(b"=", 1)[1].decode(), []).append(pid)
    return by_id


def running_per_endpoint(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pid in replica_processes(home):
        for item in _environ(str(pid)):
            if item.startswith(b"MOORAGE_ENDPOINT_ID="):
                endpoint = item.split(b"=", 1)[1].decode()
                counts[endpoint] = counts.get(endpoint, 0) + 1
    return counts
