"""Crash safety: ``moorage serve`` killed with SIGKILL at awkward moments, then started
again on the same MOORAGE_HOME, database and port, adopts the replicas it started,
stops those no live endpoint wants, and converges with no duplicate and no orphan.

Each test runs its own server (it has to kill it) on the process runtime and on the
docker runtime. Nothing here calls moorage's internals: the server is a real
subprocess, killed with SIGKILL right after an API call returns or at a moment seen
from outside (a replica starting, gone, or just launched, where the server is frozen
with SIGSTOP first so that the moment cannot pass), and what runs is read from /proc
(replicas carry their ids in their environment, also inside containers) and, for
docker, from the container engine's labels.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import DockerException

from moorage.runtimes.docker import LABEL, installation_id
from tests.conftest import database
from tests.e2e.conftest import ray_env
from tests.support import engine, ray_cluster
from tests.support.components import need
from tests.support.server import (
    ApiClient,
    MoorageServer,
    free_port,
    processes_with_env,
)

ENDPOINT_ENV = "MOORAGE_ENDPOINT_ID"
REPLICA_ENV = "MOORAGE_REPLICA_ID"
CONVERGE_S = 90.0
STEADY_S = 2.5  # a few reconcile passes: long enough to see a second set start


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _session(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[3])


def replica_processes(endpoint_id: str) -> dict[str, set[int]]:
    """The pids of each replica of the endpoint that has a live process, by replica id."""
    found: dict[str, set[int]] = {}
    for pid in processes_with_env(ENDPOINT_ENV, endpoint_id):
        replica_id = _environ(pid).get(REPLICA_ENV)
        if replica_id and _session(pid) is not None:
            found.setdefault(replica_id, set()).add(pid)
    return found


@dataclass
class Installation:
    """One moorage installation (home, database, port) whose server a test kills and
    starts again, with what it takes to see its replicas and to clean up after it."""

    home: Path
    database_url: str
    runtime: str
    docker_host: str | None
    engine: docker.DockerClient | None
    port: int = field(default_factory=free_port)
    server: MoorageServer | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] = field(default_factory=list)

    # -- the server ------------------------------------------------------------

    def start(self) -> MoorageServer:
        self.server = MoorageServer(
            home=self.home,
            database_url=self.database_url,
            runtime=self.runtime,
            docker_host=self.docker_host,
            port=self.port,  # the same port each life: no replica may hold it
            extra_env=self.extra_env,
        ).start()
        return self.server

    def crash(self) -> None:
        """SIGKILL: no shutdown hook runs, the replicas are left as they are."""
        assert self.server is not None
        assert self.server.stop(signal.SIGKILL) == -signal.SIGKILL

    def restart_after_crash(self) -> None:
        self.crash()
        self.start()

    @property
    def client(self) -> ApiClient:
        assert self.server is not None
        assert self.server.admin_token is not None
        return ApiClient(self.server.url, self.server.admin_token)

    def create(self, name: str, replicas: int, *, stop_delay_s: float = 0) -> str:
        """An endpoint of the test app; ``stop_delay_s`` makes each replica take that long
        to stop, so a test can kill moorage while a stop is under way."""
        env = {"APP_STOP_DELAY_S": str(stop_delay_s)} if stop_delay_s else {}
        service_id = str(
            self.client.create(
                name=name,
                resource_metadata={"target_instance_number": replicas},
                deploy_metadata={"env": env},
            )["service_id"]
        )
        self.endpoints.append(service_id)
        return service_id

    def scale(self, service_id: str, replicas: int) -> None:
        response = self.client.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={"resource_metadata": {"target_instance_number": replicas}},
        )
        assert response.status_code == 200, response.text

    # -- what runs ---------------------------------------------------------------

    def containers(self, label: str, *, running_only: bool) -> list[dict[str, Any]]:
        """Containers with that label, as the engine lists them. The low-level list: the
        high-level one inspects each container, which fails (with a 500 on Podman) for
        one removed meanwhile."""
        assert self.engine is not None
        listed = self.engine.api.containers(all=True, filters={"label": label})
        return [c for c in listed if not running_only or c["State"] == "running"]

    def instances(self, endpoint_id: str) -> dict[str, int]:
        """How many copies of each replica of the endpoint run, by replica id: process
        sessions for the process runtime (a replica is its own session), running
        containers for docker. A count above 1 is a duplicate."""
        if self.engine is None:
            counts: dict[str, int] = {}
            for replica_id, pids in replica_processes(endpoint_id).items():
                counts[replica_id] = len({_session(pid) for pid in pids} - {None})
            return counts
        counts = {}
        for container in self.containers(f"{LABEL}.endpoint={endpoint_id}", running_only=True):
            replica_id = container["Labels"][f"{LABEL}.replica"]
            counts[replica_id] = counts.get(replica_id, 0) + 1
        return counts

    def container_ids(self, endpoint_id: str) -> set[str]:
        """The endpoint's running containers (none for the process runtime)."""
        if self.engine is None:
            return set()
        running = self.containers(f"{LABEL}.endpoint={endpoint_id}", running_only=True)
        return {c["Id"] for c in running}

    def leftovers(self, endpoint_id: str) -> list[str]:
        """Whatever of the endpoint is still on the host: processes, and containers
        (running or not)."""
        left = [f"process of replica {r}: {p}" for r, p in replica_processes(endpoint_id).items()]
        if self.engine is not None:
            left += [
                f"container {c['Names']} ({c['State']})"
                for c in self.containers(f"{LABEL}.endpoint={endpoint_id}", running_only=False)
            ]
        return left

    def clean_up(self) -> None:
        """Kills the server and whatever replica it left, whatever the test's outcome:
        processes of the test's endpoints or working in its home, and containers of
        its installation."""
        process = self.server.process if self.server is not None else None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        strays = {pid for e in self.endpoints for pid in processes_with_env(ENDPOINT_ENV, e)}
        strays |= _processes_under(self.home)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.runtime == "ray":  # the replicas' actors outlive a killed moorage
            ray_cluster.kill_actors(
                self.extra_env["MOORAGE_RAY_ADDRESS"],
                "moorage-" + installation_id(self.database_url),
            )
        if self.engine is not None:
            mine = f"{LABEL}.installation={installation_id(self.database_url)}"
            with contextlib.suppress(DockerException):
                for container in self.containers(mine, running_only=False):
                    with contextlib.suppress(DockerException):
                        self.engine.api.remove_container(container["Id"], force=True)


def _processes_under(directory: Path) -> set[int]:
    """Processes working in ``directory`` or below (the process runtime's replicas)."""
    found = set()
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)).is_relative_to(directory):
                found.add(int(cwd.parent.name))
        except OSError:
            continue
    return found


SQLITE_PROCESS = pytest.param(("sqlite", "process"), id="process")
SQLITE_DOCKER = pytest.param(("sqlite", "docker"), id="docker", marks=pytest.mark.docker)
SQLITE_RAY = pytest.param(("sqlite", "ray"), id="ray", marks=pytest.mark.ray)
POSTGRES_PROCESS = pytest.param(
    ("postgresql", "process"), id="postgresql-process", marks=pytest.mark.postgres
)


@pytest.fixture(params=[SQLITE_PROCESS, SQLITE_DOCKER])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    """A running server of a fresh installation, on each runtime (a test may ask for
    other stores with ``indirect`` parametrization); cleaned up whatever happens."""
    store, runtime = request.param
    host: str | None = None
    client: docker.DockerClient | None = None
    if runtime == "docker":
        try:
            host = engine.engine_url()
        except engine.EngineUnavailable as exc:
            need("docker", str(exc))
            raise
        client = docker.DockerClient(base_url=host, timeout=30)
    extra_env = ray_env() if runtime == "ray" else {}
    try:
        with database(store, tmp_path) as url:
            setup = Installation(
                home=tmp_path / "home",
                database_url=url,
                runtime=runtime,
                docker_host=host,
                engine=client,
                extra_env=extra_env,
            )
            try:
                setup.start()
                yield setup
            finally:
                setup.clean_up()
    finally:
        if client is not None:
            with contextlib.suppress(DockerException):
                client.close()


# -- checks ---------------------------------------------------------------------------


def _until(check: Callable[[], str | None], *, timeout: float, what: str, server: Any) -> None:
    """Polls ``check`` (None when satisfied, else what is still wrong) within ``timeout``."""
    deadline = time.monotonic() + timeout
    wrong = check()
    while wrong is not None:
        if time.monotonic() > deadline:
            tail = "\n".join(server.log().splitlines()[-40:]) if server else ""
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}: {wrong}\nserve.log:\n{tail}"
            )
        time.sleep(0.3)
        wrong = check()


@dataclass
class Converged:
    endpoint: dict[str, Any]
    replicas: set[str]
    peak: int  # the most replicas of the endpoint that ran at once while converging


def converge(
    setup: Installation,
    service_id: str,
    *,
    replicas: int,
    status: str = "available",
    steady: bool = True,
) -> Converged:
    """Waits for the endpoint to settle at ``status`` with exactly ``replicas`` ready
    replicas, each running once, and the runtime running just those; then (with
    ``steady``) checks that it stays so for a few passes, and that the gateway serves."""
    client = setup.client
    peak = 0
    last: dict[str, Any] = {}

    def settled() -> str | None:
        nonlocal peak
        running = setup.instances(service_id)
        peak = max(peak, len(running))
        # The runtimes never run one replica twice, not even for a moment: fail at once.
        assert all(count == 1 for count in running.values()), f"a replica runs twice: {running}"
        endpoint = client.get(service_id)
        last["endpoint"] = endpoint
        listed = {r["replica_id"] for r in endpoint["endpoint_metadata"]["replicas"]}
        ready = endpoint["endpoint_metadata"]["ready_replicas"]
        facts = (
            f"status {endpoint['status']!r}, {ready} ready, listed {sorted(listed)}, "
            f"running {running}"
        )
        if endpoint["status"] != status or ready != replicas:
            return facts
        if set(running) != listed or len(running) != replicas:
            return facts
        if setup.engine is not None and set(replica_processes(service_id)) != listed:
            return f"processes of {sorted(replica_processes(service_id))}: " + facts
        return None

    _until(
        settled, timeout=CONVERGE_S, what=f"{replicas} replica(s), {status}", server=setup.server
    )
    endpoint = last["endpoint"]
    replica_ids = {r["replica_id"] for r in endpoint["endpoint_metadata"]["replicas"]}
    steady_until = time.monotonic() + (STEADY_S if steady else 0)
    while time.monotonic() < steady_until:
        running = setup.instances(service_id)
        assert running == dict.fromkeys(replica_ids, 1), (
            f"converged on {sorted(replica_ids)}, then ran {running}"
        )
        time.sleep(0.3)
    if replicas:
        answer = setup.client.gateway(service_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["replica"] in replica_ids
    return Converged(endpoint, replica_ids, peak)


def boots(client: ApiClient, service_id: str, replicas: int) -> dict[str, str]:
    """Each replica's ``boot`` (different for every start of the app), through the gateway."""
    seen: dict[str, str] = {}
    for _ in range(30 * replicas):
        answer = client.gateway(service_id)
        assert answer.status_code == 200, answer.text
        seen[answer.json()["replica"]] = answer.json()["boot"]
        if len(seen) == replicas:
            return seen
    raise AssertionError(f"the gateway reached only {sorted(seen)} of {replicas} replicas")


def stop_and_check_nothing_is_left(setup: Installation) -> None:
    assert setup.server is not None
    assert setup.server.stop(signal.SIGINT) in (0, -signal.SIGINT)
    for service_id in setup.endpoints:
        gone(setup, service_id, timeout=20)


def gone(setup: Installation, service_id: str, *, timeout: float = CONVERGE_S) -> None:
    """Waits until no process and no container of the endpoint is left."""

    def left() -> str | None:
        return "; ".join(setup.leftovers(service_id)) or None

    _until(
        left, timeout=timeout, what=f"nothing of endpoint {service_id} left", server=setup.server
    )


# -- the moments ------------------------------------------------------------------------


def _progress(setup: Installation, service_id: str) -> tuple[int, int]:
    """How many replicas the API lists for the endpoint, and how many are ready."""
    meta = setup.client.get(service_id)["endpoint_metadata"]
    return len(meta["replicas"]), int(meta["ready_replicas"])


def _starting(setup: Installation, service_id: str) -> int:
    """How many of the endpoint's replicas the API lists as started but not ready."""
    replicas = setup.client.get(service_id)["endpoint_metadata"]["replicas"]
    return sum(r["state"] == "starting" for r in replicas)


def kill_when(
    setup: Installation,
    moment: str,
    reached: Callable[[], bool],
    missed: Callable[[], bool] = lambda: False,
) -> None:
    """SIGKILLs the server as soon as ``reached`` holds; fails if ``missed`` holds first,
    that is if the endpoint went past the moment the test is about."""
    deadline = time.monotonic() + 30
    while not reached():
        assert not missed(), f"the endpoint went past the moment to kill at ({moment})"
        assert time.monotonic() < deadline, f"timed out waiting for the moment {moment}"
        time.sleep(0.01)
    setup.crash()


@pytest.mark.parametrize("moment", ["accepted", "replica-starting"])
def test_killed_mid_create_starts_exactly_one_set(installation: Installation, moment: str) -> None:
    """Killed right after POST returns (nothing started yet), or once a replica has
    started but none is ready. (Between launching a replica and recording it, see
    test_killed_while_launching_a_replica_leaves_no_orphan.)"""
    service_id = installation.create("mid-create", replicas=2)
    if moment == "accepted":
        installation.crash()
    else:
        kill_when(
            installation,
            moment,
            reached=lambda: _starting(installation, service_id) > 0,
            missed=lambda: _progress(installation, service_id)[1] > 0,
        )
    installation.start()

    converged = converge(installation, service_id, replicas=2)
    assert converged.peak <= 2, "more replicas ran than the endpoint wants"
    assert len(boots(installation.client, service_id, 2)) == 2
    stop_and_check_nothing_is_left(installation)


@pytest.mark.parametrize(
    "installation", [SQLITE_PROCESS, POSTGRES_PROCESS, SQLITE_DOCKER], indirect=True
)
def test_killed_again_and_again_while_starting_converges(installation: Installation) -> None:
    """A server killed over and over while an endpoint starts: right after POST, then
    each later life a little older than the last (right after it answers, which is
    after its first pass, then a little later). The last life still ends with one set
    of replicas."""
    service_id = installation.create("crash-loop", replicas=2)
    installation.crash()
    for delay in (0.0, 0.3, 0.8):
        installation.start()
        time.sleep(delay)
        installation.crash()
    installation.start()
    converged = converge(installation, service_id, replicas=2)
    assert converged.peak <= 2, "more replicas ran than the endpoint wants"
    stop_and_check_nothing_is_left(installation)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found |= {int(child) for child in listing.read_text().split()}
    return found


def _launch_unrecorded(record: Path) -> bool:
    """No record yet, or one written before the spawn that does not name the pid."""
    try:
        return json.loads(record.read_text()).get("pid") is None
    except (OSError, ValueError):
        return True


def _freeze_at_launch(setup: Installation, service_id: str) -> bool:
    """Stops (SIGSTOP) the server the moment the runtime has launched a replica of the
    endpoint: its process has exec'd, or its container exists. Returns whether the
    launch was caught before the runtime recorded it (the process runtime's
    replica.json; a container carries its record on itself, so always)."""
    assert setup.server is not None
    assert setup.server.process is not None
    pid = setup.server.process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if setup.engine is not None:
            if setup.containers(f"{LABEL}.endpoint={service_id}", running_only=False):
                os.kill(pid, signal.SIGSTOP)
                return True
            time.sleep(0.005)
            continue
        for child in _children(pid):
            replica_id = _environ(child).get(REPLICA_ENV)
            if replica_id and _environ(child).get(ENDPOINT_ENV) == service_id:
                os.kill(pid, signal.SIGSTOP)
                record = setup.home / "replicas" / replica_id / "replica.json"
                return _launch_unrecorded(record)
    raise AssertionError(f"no replica of {service_id} was launched within 30 s")


@pytest.mark.parametrize(
    "installation",
    [
        pytest.param(("sqlite", "process"), id="process"),
        SQLITE_DOCKER,
    ],
    indirect=True,
)
def test_killed_while_launching_a_replica_leaves_no_orphan(installation: Installation) -> None:
    """Killed between launching a replica and recording that it runs: the server is
    stopped (SIGSTOP) the moment the replica's process or container appears, then
    killed. The next life must adopt or replace it, not run it twice."""
    for attempt in range(5):
        service_id = installation.create(f"launch-{attempt}", replicas=1)
        if _freeze_at_launch(installation, service_id):
            break
        # Recorded already: too late for this endpoint; try again with another.
        assert installation.server is not None
        assert installation.server.process is not None
        os.kill(installation.server.process.pid, signal.SIGCONT)
        converge(installation, service_id, replicas=1, steady=False)
        installation.client.call("DELETE", f"/v1/inference-service/{service_id}")
        gone(installation, service_id)
    else:
        pytest.skip("could not stop the server between launching a replica and recording it")
    installation.restart_after_crash()

    converged = converge(installation, service_id, replicas=1)
    assert converged.peak == 1, "the replica was started twice"
    stop_and_check_nothing_is_left(installation)


@pytest.mark.parametrize("moment", ["accepted", "new-replica-starting"])
def test_killed_mid_scale_up_keeps_the_serving_replica(
    installation: Installation, moment: str
) -> None:
    service_id = installation.create("mid-scale-up", replicas=1)
    (before,) = converge(installation, service_id, replicas=1, steady=False).replicas
    boot_before = boots(installation.client, service_id, 1)[before]

    installation.scale(service_id, 3)
    if moment == "accepted":
        installation.crash()
    else:
        kill_when(
            installation,
            moment,
            reached=lambda: _starting(installation, service_id) > 0,
            missed=lambda: _progress(installation, service_id)[1] > 1,
        )
    installation.start()

    converged = converge(installation, service_id, replicas=3)
    assert converged.peak <= 3, "more replicas ran than the endpoint wants"
    assert before in converged.replicas, "the replica that served was replaced"
    assert boots(installation.client, service_id, 3)[before] == boot_before
    stop_and_check_nothing_is_left(installation)


@pytest.mark.parametrize("moment", ["accepted", "extra-stopping"])
def test_killed_mid_scale_down_stops_the_extras_only(
    installation: Installation, moment: str
) -> None:
    service_id = installation.create("mid-scale-down", replicas=3, stop_delay_s=1.5)
    converge(installation, service_id, replicas=3, steady=False)
    boot_before = boots(installation.client, service_id, 3)

    installation.scale(service_id, 1)
    if moment == "accepted":
        installation.crash()
    else:  # an extra's process or container is gone, its stop maybe not recorded yet
        kill_when(
            installation,
            moment,
            reached=lambda: len(installation.instances(service_id)) < 3,
            missed=lambda: _progress(installation, service_id)[0] == 1,
        )
    installation.start()

    converged = converge(installation, service_id, replicas=1)
    (kept,) = converged.replicas
    assert kept in boot_before, "a new replica was started instead of keeping one"
    assert boots(installation.client, service_id, 1) == {kept: boot_before[kept]}
    stop_and_check_nothing_is_left(installation)


@pytest.mark.parametrize("moment", ["accepted", "replicas-stopping"])
def test_killed_mid_delete_and_stop_leaves_only_the_live_endpoint(
    installation: Installation, moment: str
) -> None:
    deleted = installation.create("mid-delete", replicas=2)
    stopped = installation.create("mid-stop", replicas=1)
    kept = installation.create("bystander", replicas=1)
    for service_id, replicas in ((deleted, 2), (stopped, 1), (kept, 1)):
        converge(installation, service_id, replicas=replicas, steady=False)
    kept_boot = boots(installation.client, kept, 1)

    client = installation.client
    assert client.call("POST", f"/v1/inference-service/{stopped}/stop").status_code == 200
    assert client.call("DELETE", f"/v1/inference-service/{deleted}").status_code == 200
    if moment == "accepted":
        installation.crash()
    else:
        kill_when(installation, moment, reached=lambda: len(installation.instances(deleted)) < 2)
    installation.start()

    gone(installation, deleted)
    gone(installation, stopped)
    client = installation.client
    assert client.call("GET", f"/v1/inference-service/{deleted}").status_code == 404
    assert client.gateway(deleted).status_code == 404
    converge(installation, stopped, replicas=0, status="stopped")
    assert client.gateway(stopped).status_code == 503
    converge(installation, kept, replicas=1)
    assert boots(client, kept, 1) == kept_boot, "the live endpoint's replica was restarted"
    stop_and_check_nothing_is_left(installation)


@pytest.mark.parametrize("installation", [SQLITE_PROCESS, SQLITE_DOCKER, SQLITE_RAY], indirect=True)
def test_killed_while_available_adopts_the_same_replicas(installation: Installation) -> None:
    service_id = installation.create("adopted", replicas=2)
    first = converge(installation, service_id, replicas=2)
    boot_before = boots(installation.client, service_id, 2)
    pids_before = replica_processes(service_id)
    containers_before = installation.container_ids(service_id)
    assert set(pids_before) == first.replicas
    assert len(containers_before) == (2 if installation.engine is not None else 0)

    installation.crash()
    # Nothing stops the replicas while moorage is down.
    assert replica_processes(service_id) == pids_before
    installation.start()

    converged = converge(installation, service_id, replicas=2)
    assert converged.replicas == first.replicas
    assert converged.peak == 2, "a second set of replicas was started"
    assert replica_processes(service_id) == pids_before
    assert installation.container_ids(service_id) == containers_before
    assert boots(installation.client, service_id, 2) == boot_before
    stop_and_check_nothing_is_left(installation)
