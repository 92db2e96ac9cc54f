"""The process runtime with real subprocesses: what only it does (process groups and
signals, the host's environment, the sandbox and its bridge, GPU refusal). What
every runtime does is in ``test_runtime_contract.py``.

Every wait here is bounded, and a fixture stops whatever a test started; it
fails the test if a process the test knew of is still alive afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from moorage.models.endpoints import DeploySpec
from moorage.models.sandbox_uids import UidRange, UidsExhausted, exhausted_message, next_free_uid
from moorage.runtimes import bridge
from moorage.runtimes.base import Launch, Observed, Runtime, StartError
from moorage.runtimes.ports import free_port
from moorage.runtimes.process import ProcessRuntime
from moorage.runtimes.sandbox import DOCUMENTED_VARIABLES, Sandbox
from moorage.settings import Settings
from moorage.wire import new_id
from tests.support.components import need
from tests.support.runtimes import observe_until, refuses
from tests.support.server import inline_app_command, processes_with_env

pytestmark = pytest.mark.anyio

APP = Path(__file__).with_name("replica_app.py")
PYTHON = shlex.quote(sys.executable)
RUN_APP = f"{PYTHON} {shlex.quote(str(APP))}"
SERVE = f"exec {RUN_APP}"
# Inside the sandbox /tmp and /home are empty and only the system's Python is on
# PATH, wherever this checkout and its virtual environment live: the app travels
# in the command, as users ship theirs.
SANDBOXED_SERVE = inline_app_command(APP.read_text())
WAIT_S = 10.0
OWNER_UIDS = UidRange(2_000_000_000, 3)


def _alive(pid: int) -> bool:
    """True while the process exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Harness:
    root: Path
    runtimes: list[ProcessRuntime] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def runtime(
        self,
        *,
        stop_grace_s: float = 5.0,
        sandbox: Sandbox | None = None,
        owner_uids: Callable[[str], int] | None = None,
    ) -> ProcessRuntime:
        """A runtime on the shared root, as each (re)start of moorage would make."""
        runtime = ProcessRuntime(
            self.root, stop_grace_s=stop_grace_s, sandbox=sandbox, owner_uids=owner_uids
        )
        self.runtimes.append(runtime)
        return runtime

    def workdir(self, replica_id: str) -> Path:
        return self.root / replica_id

    def watch(self, pid: int) -> int:
        """Remembers a pid the test learned, so teardown can prove it is gone."""
        self.pids.add(pid)
        return pid


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path / "replicas")
    try:
        yield harness
    finally:
        replica_ids = [d.name for d in harness.root.iterdir()] if harness.root.exists() else []
        for runtime in harness.runtimes:
            for replica_id in replica_ids:
                await runtime.stop(replica_id)
            await runtime.close()
        leftovers = sorted(pid for pid in harness.pids if _alive(pid))
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left running after the test: {leftovers}"


def _launch(
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    gpu_num: int = 0,
    sandboxed: bool = False,
    user_id: str = "",
) -> Launch:
    """A launch of the (trusted) admin's replica unless ``sandboxed``."""
    return Launch(
        replica_id=new_id(),
        endpoint_id=new_id(),
        revision=2,
        deploy=DeploySpec(
            image_url="ignored-by-the-process-runtime",
            command=command,
            port=8080,
            gpu_num=gpu_num,
            env=dict(env or {}),
        ),
        sandboxed=sandboxed,
        user_id=user_id,
    )


async def _get(address: str, *, timeout_s: float = WAIT_S) -> dict[str, Any]:
    """GET / on the replica, retrying until it answers; fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"http://{address}/")
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body
            except httpx.TransportError as exc:
                last = exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered HTTP on {address} within {timeout_s} s: {last!r}")


async def _observe_until(
    runtime: Runtime,
    replica_id: str,
    done: Callable[[Observed | None], bool],
    what: str,
) -> Observed | None:
    return await observe_until(runtime, replica_id, done, what, timeout_s=WAIT_S, interval_s=0.05)


async def _wait_file(path: Path) -> str:
    file = anyio.Path(path)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await file.exists() and (text := (await file.read_text()).strip()):
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never written")


async def _timed(action: Awaitable[None]) -> float:
    started = time.monotonic()
    await action
    return time.monotonic() - started


async def test_the_admins_replica_inherits_the_hosts_environment_but_not_moorages(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_ADMIN_TOKEN", "mrg_admin-secret-do-not-leak")
    monkeypatch.setenv("HOST_SETTING_FOR_REPLICAS", "from-the-host")
    runtime = harness.runtime()

    address = await runtime.start(_launch(SERVE))
    body = await _get(address)
    harness.watch(body["pid"])

    assert body["env"]["HOST_SETTING_FOR_REPLICAS"] == "from-the-host"
    assert "MOORAGE_ADMIN_TOKEN" not in body["env"]
    assert "MOORAGE_LAUNCH_TOKEN" in body["env"], "a crash mid-launch could not find it"


async def test_an_env_value_the_os_cannot_pass_fails_the_start_and_leaves_nothing(
    harness: Harness,
) -> None:
    """The API refuses a NUL byte in env, but an old store may hold one; the start fails
    naming the field (the endpoint shows it), and nothing runs or is left recorded."""
    runtime = harness.runtime()

    with pytest.raises(StartError, match=r"deploy_metadata\.env .*null byte"):
        await runtime.start(_launch(SERVE, env={"BAD": "before\x00after"}))

    assert await runtime.observe() == {}


async def test_stop_kills_the_whole_process_group_including_a_grandchild(
    harness: Harness,
) -> None:
    runtime = harness.runtime(stop_grace_s=0.3)
    launch = _launch(f"sleep 300 & echo $! > grandchild.pid; {SERVE}")
    address = await runtime.start(launch)
    body = await _get(address)
    app_pid = harness.watch(body["pid"])
    grandchild = harness.watch(
        int(await _wait_file(harness.workdir(launch.replica_id) / "grandchild.pid"))
    )
    assert _alive(grandchild)
    assert os.getpgid(grandchild) == app_pid, "the replica should lead its own group"
    assert os.getpgid(app_pid) != os.getpgid(0), "the replica must not share our group"

    await runtime.stop(launch.replica_id)

    assert not _alive(app_pid)
    assert not _alive(grandchild), "a backgrounded grandchild outlived stop()"
    assert await refuses(address)
    assert launch.replica_id not in await runtime.observe()


async def test_a_replica_that_ignores_sigterm_gets_sigkill_after_the_grace(
    harness: Harness,
) -> None:
    grace = 0.5
    runtime = harness.runtime(stop_grace_s=grace)
    # Both the app and a worker it started shrug off SIGTERM.
    launch = _launch(
        f"{RUN_APP} --worker --ignore-term --pid-file worker.pid & {SERVE} --ignore-term"
    )
    address = await runtime.start(launch)
    app_pid = harness.watch((await _get(address))["pid"])
    worker_pid = harness.watch(
        int(await _wait_file(harness.workdir(launch.replica_id) / "worker.pid"))
    )

    elapsed = await _timed(runtime.stop(launch.replica_id))

    assert not _alive(app_pid)
    assert not _alive(worker_pid), "a worker ignoring SIGTERM outlived stop()"
    assert elapsed >= grace, f"stop took {elapsed:.2f} s: SIGKILL came before the grace"
    assert elapsed < grace + 5, f"stop took {elapsed:.2f} s"
    assert await refuses(address)


async def test_stop_asks_politely_first_and_does_not_wait_out_the_grace(
    harness: Harness,
) -> None:
    runtime = harness.runtime(stop_grace_s=30.0)
    launch = _launch(f"{SERVE} --term-note terminated.txt")
    address = await runtime.start(launch)
    app_pid = harness.watch((await _get(address))["pid"])

    elapsed = await _timed(runtime.stop(launch.replica_id))

    assert not _alive(app_pid)
    note = harness.workdir(launch.replica_id) / "terminated.txt"
    assert note.read_text() == "terminated politely", "the app never saw SIGTERM"
    assert elapsed < 5, f"stop took {elapsed:.2f} s for an app that exits on SIGTERM"


async def test_stop_sends_sigterm_to_every_process_of_the_replica(harness: Harness) -> None:
    runtime = harness.runtime(stop_grace_s=1.0)
    launch = _launch(
        f"{RUN_APP} --worker --term-note worker-note.txt --pid-file worker.pid & "
        f"{SERVE} --term-note app-note.txt"
    )
    address = await runtime.start(launch)
    app_pid = harness.watch((await _get(address))["pid"])
    workdir = harness.workdir(launch.replica_id)
    worker_pid = harness.watch(int(await _wait_file(workdir / "worker.pid")))

    await runtime.stop(launch.replica_id)

    assert not _alive(app_pid)
    assert not _alive(worker_pid)
    assert (workdir / "app-note.txt").read_text() == "terminated politely"
    assert (workdir / "worker-note.txt").read_text() == "terminated politely", (
        "the worker was killed without being asked to shut down first"
    )


async def test_a_gpu_request_is_refused_with_the_field_to_fix(harness: Harness) -> None:
    runtime = harness.runtime()

    with pytest.raises(StartError, match=r"deploy_metadata\.gpu_num") as caught:
        await runtime.start(_launch(SERVE, gpu_num=1))

    assert "gpu_num 0" in str(caught.value)
    assert await runtime.observe() == {}


# -- sandboxed replicas (a normal user's) ------------------------------------------------


def _replica_pids(replica_id: str) -> list[int]:
    """Host pids of the replica's processes, found by the id in their environment (the
    pids a sandboxed app reports are its own namespace's)."""
    return [pid for pid in processes_with_env("MOORAGE_REPLICA_ID", replica_id) if _alive(pid)]


@dataclass
class SandboxedHarness:
    home: Path
    harness: Harness
    sandbox: Sandbox
    launched: list[str] = field(default_factory=list)
    # Owners' uids as the store would give them (``store/sandbox_uids.py``).
    owners: dict[str, int] = field(default_factory=dict)

    def owner_uid(self, user_id: str) -> int:
        if user_id not in self.owners:
            uid = next_free_uid(OWNER_UIDS, self.owners.values())
            if uid is None:
                raise UidsExhausted(exhausted_message(OWNER_UIDS))
            self.owners[user_id] = uid
        return self.owners[user_id]

    def runtime(self, *, stop_grace_s: float = 5.0) -> ProcessRuntime:
        return self.harness.runtime(
            stop_grace_s=stop_grace_s, sandbox=self.sandbox, owner_uids=self.owner_uid
        )

    def launch(self, command: str, *, user_id: str = "alice", **kwargs: Any) -> Launch:
        launch = _launch(command, sandboxed=True, user_id=user_id, **kwargs)
        self.launched.append(launch.replica_id)
        return launch

    def workdir(self, replica_id: str) -> Path:
        return self.harness.root / replica_id / "work"


@pytest.fixture
async def sandboxed() -> AsyncIterator[SandboxedHarness]:
    """A sandbox on a short MOORAGE_HOME (a Unix socket path holds 107 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    settings = Settings(home=home, sandbox_path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    settings.replicas_dir.mkdir()
    sandbox = await asyncio.to_thread(Sandbox.from_settings, settings)
    if sandbox.config is None:
        shutil.rmtree(home)
        need("bubblewrap", sandbox.problem or "no sandbox")
    state = SandboxedHarness(home, Harness(settings.replicas_dir), sandbox)
    try:
        yield state
    finally:
        for runtime in state.harness.runtimes:
            for replica_id in state.launched:
                await runtime.stop(replica_id)
            await runtime.close()
        leftovers = [pid for r in state.launched for pid in _replica_pids(r)]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"sandboxed processes left running after the test: {leftovers}"


async def _get_unix(address: str, *, timeout_s: float = WAIT_S) -> dict[str, Any]:
    """GET / through the replica's Unix socket (the gateway's way in), retrying."""
    assert address.startswith("unix:/"), address
    transport = httpx.AsyncHTTPTransport(uds=address.removeprefix("unix:"))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get("http://replica/")
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body
            except httpx.TransportError as exc:
                last = exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered through {address} within {timeout_s} s: {last!r}")


async def test_a_sandboxed_replica_is_reached_through_its_socket_with_exactly_its_env(
    sandboxed: SandboxedHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_ADMIN_TOKEN", "mrg_admin-secret-do-not-leak")
    monkeypatch.setenv("HOST_SETTING_FOR_REPLICAS", "from-the-host")
    runtime = sandboxed.runtime()
    launch = sandboxed.launch(f"id -u > uid; {SANDBOXED_SERVE}", env={"MODEL_NAME": "tiny-llm"})

    address = await runtime.start(launch)

    replica_dir = sandboxed.harness.root / launch.replica_id
    assert address == f"unix:{replica_dir.resolve() / 'replica.sock'}"
    body = await _get_unix(address)
    env: dict[str, str] = body["env"]
    shell_or_python = {"PWD", "LC_CTYPE"}
    assert set(env) - shell_or_python == set(DOCUMENTED_VARIABLES) | {"MODEL_NAME"}
    assert env["HOME"] == env["PWD"] == str(sandboxed.workdir(launch.replica_id))
    assert sandboxed.sandbox.config is not None
    assert env["PATH"] == sandboxed.sandbox.config.path
    if os.getuid() == 0:
        uid = await _wait_file(sandboxed.workdir(launch.replica_id) / "uid")
        assert uid == str(sandboxed.owners["alice"]), "as root, a replica runs as its owner's uid"
    observed = (await runtime.observe())[launch.replica_id]
    assert observed.running is True
    assert observed.address == address


def _as_root() -> None:
    if os.getuid() != 0:
        pytest.skip("owners' uids need moorage to run as root (CI runs as root)")


async def test_as_root_each_owner_runs_as_a_uid_of_their_own_and_owns_the_work_folder(
    sandboxed: SandboxedHarness,
) -> None:
    _as_root()
    runtime = sandboxed.runtime()
    launches = {
        name: sandboxed.launch(f"id -u > uid; id -g > gid; {SANDBOXED_SERVE}", user_id=owner)
        for name, owner in (("alice", "alice"), ("alice-again", "alice"), ("bob", "bob"))
    }
    for launch in launches.values():
        await _get_unix(await runtime.start(launch))
    seen = {}
    for name, launch in launches.items():
        workdir = sandboxed.workdir(launch.replica_id)
        uid = int(await _wait_file(workdir / "uid"))
        assert int(await _wait_file(workdir / "gid")) == uid
        info = workdir.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, uid, 0o700)
        seen[name] = uid
    assert seen["alice"] == seen["alice-again"] == sandboxed.owners["alice"]
    assert seen["bob"] == sandboxed.owners["bob"] != seen["alice"]
    assert set(seen.values()) <= set(range(OWNER_UIDS.base, OWNER_UIDS.last + 1))


async def test_as_root_a_replica_is_refused_when_no_uid_is_left_or_it_has_no_owner(
    sandboxed: SandboxedHarness,
) -> None:
    _as_root()
    sandboxed.owners.update({f"owner-{n}": OWNER_UIDS.base + n for n in range(3)})
    runtime = sandboxed.runtime()
    with pytest.raises(StartError, match="raise MOORAGE_SANDBOX_UID_COUNT"):
        await runtime.start(sandboxed.launch(SANDBOXED_SERVE, user_id="dave"))
    with pytest.raises(StartError, match="no owner"):
        await runtime.start(sandboxed.launch(SANDBOXED_SERVE, user_id=""))
    without = sandboxed.harness.runtime(sandbox=sandboxed.sandbox)
    with pytest.raises(StartError, match="owners' uids"):
        await without.start(sandboxed.launch(SANDBOXED_SERVE, user_id="owner-0"))


async def test_a_sandboxed_replica_stops_whole_and_its_socket_goes(
    sandboxed: SandboxedHarness,
) -> None:
    runtime = sandboxed.runtime(stop_grace_s=0.5)
    launch = sandboxed.launch(f"sleep 300 & {SANDBOXED_SERVE} --term-note terminated.txt")
    address = await runtime.start(launch)
    await _get_unix(address)
    pids = _replica_pids(launch.replica_id)
    assert len(pids) >= 3, f"expected the app, the sleep and the bridge: {pids}"

    await runtime.stop(launch.replica_id)

    assert _replica_pids(launch.replica_id) == []
    assert (sandboxed.workdir(launch.replica_id) / "terminated.txt").read_text() == (
        "terminated politely"
    ), "the app never saw SIGTERM"
    assert not await anyio.Path(address.removeprefix("unix:")).exists()
    assert launch.replica_id not in await runtime.observe()


async def test_a_sandboxed_replica_that_exits_is_seen_exited_with_its_code(
    sandboxed: SandboxedHarness,
) -> None:
    runtime = sandboxed.runtime()
    launch = sandboxed.launch("echo 'no such model' >&2; exit 3")
    await runtime.start(launch)

    exited = await _observe_until(
        runtime,
        launch.replica_id,
        lambda o: o is not None and not o.running and o.exit_code is not None,
        "seen exited",
    )

    assert exited is not None
    assert exited.exit_code == 3
    assert exited.output_tail == "no such model"
    await runtime.stop(launch.replica_id)
    assert _replica_pids(launch.replica_id) == []


async def test_a_restarted_runtime_adopts_a_sandboxed_replica(
    sandboxed: SandboxedHarness,
) -> None:
    before = sandboxed.runtime()
    launch = sandboxed.launch(SANDBOXED_SERVE)
    address = await before.start(launch)
    first = (await _get_unix(address))["env"]["MOORAGE_REPLICA_ID"]

    after = sandboxed.runtime()  # moorage restarted: the replica kept running
    adopted = (await after.observe()).get(launch.replica_id)

    assert adopted is not None
    assert adopted.running is True
    assert adopted.address == address
    assert (await _get_unix(address))["env"]["MOORAGE_REPLICA_ID"] == first
    await after.stop(launch.replica_id)
    assert _replica_pids(launch.replica_id) == []


async def test_a_crash_between_spawn_and_record_still_finds_the_sandbox(
    sandboxed: SandboxedHarness,
) -> None:
    """The record written before the spawn has no pid; the launch token in the sandbox's
    own (outer) environment finds its session leader, though the replica never sees it."""
    before = sandboxed.runtime()
    launch = sandboxed.launch(SANDBOXED_SERVE)
    address = await before.start(launch)
    env = (await _get_unix(address))["env"]
    assert "MOORAGE_LAUNCH_TOKEN" not in env
    record_file = sandboxed.harness.root / launch.replica_id / "replica.json"
    record = json.loads(record_file.read_text())
    leader = record["pid"]
    record_file.write_text(json.dumps({**record, "pid": None, "start_ticks": None}))

    after = sandboxed.runtime()
    adopted = (await after.observe()).get(launch.replica_id)

    assert adopted is not None
    assert adopted.running is True, "the launched sandbox was not found"
    assert json.loads(record_file.read_text())["pid"] == leader
    assert os.getsid(leader) == leader
    await after.stop(launch.replica_id)
    assert _replica_pids(launch.replica_id) == []


async def test_without_a_sandbox_a_normal_users_replica_is_refused(harness: Harness) -> None:
    runtime = harness.runtime(
        sandbox=Sandbox(problem="MOORAGE_BWRAP_PATH is '/nope', which is not an executable")
    )

    with pytest.raises(StartError, match="MOORAGE_BWRAP_PATH is '/nope'") as caught:
        await runtime.start(_launch(SANDBOXED_SERVE, sandboxed=True))

    assert "MOORAGE_RUNTIME=docker" in str(caught.value)
    assert await runtime.observe() == {}


async def test_with_the_sandbox_turned_off_a_normal_users_replica_runs_as_moorage(
    harness: Harness,
) -> None:
    runtime = harness.runtime(sandbox=Sandbox.off())
    address = await runtime.start(_launch(SANDBOXED_SERVE, sandboxed=True))

    assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
    harness.watch((await _get(address))["pid"])


# -- the bridge, in process ----------------------------------------------------------------


async def test_the_bridge_pipes_both_ways_and_half_closes(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # until the client's half-close
        writer.write(b"answer:" + received[-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "b.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    serving = asyncio.create_task(bridge.serve(listener, port))
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"x" * 300_000)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), WAIT_S)
        assert answer == b"answer:" + b"x" * 300_000
        writer.close()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        server.close()
        await server.wait_closed()


async def test_the_bridge_closes_a_connection_nothing_listens_for(tmp_path: Path) -> None:
    path = tmp_path / "b.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    serving = asyncio.create_task(bridge.serve(listener, free_port()))
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
        writer.close()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
