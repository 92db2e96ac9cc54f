"""The contract every runtime keeps, checked on each: fake, process and docker.

The controller relies on nothing else: ``start`` gives an address where the app
answers, with its identity in its environment; ``observe`` reports what runs and
what exited (code and last output); ``stop`` ends it and is a no-op on a gone
replica; a runtime made after a restart adopts what an earlier one started, and
another installation sees none of it; ``logs`` gives the tail and follows.

Each replica runs ``replica_app.py``'s protocol: ``GET /`` answers its
environment, ``POST /say`` prints the body, ``POST /exit/<code>`` exits. The fake
runtime's in-memory replicas speak the same protocol. Runtime-specific behaviour
(signals and process groups, sandboxes, networks, images, GPUs) is tested in
each runtime's own module. Docker runs where ``MOORAGE_TEST_DOCKER_HOST`` (or a
usual socket) has the test image; it is skipped otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch, Observed, Runtime
from moorage.runtimes.docker import DockerRuntime, connect
from moorage.runtimes.fake import Behavior, FakeHost, FakeRuntime
from moorage.runtimes.process import ProcessRuntime
from moorage.wire import new_id
from tests.support.engine import TEST_IMAGE
from tests.support.runtimes import follow, observe_until, refuses, request_until_answered
from tests.support.server import inline_app_command

pytestmark = pytest.mark.anyio

APP = Path(__file__).with_name("replica_app.py")
SERVE = inline_app_command(APP.read_text())
LISTENING = "listening on"
CONTAINER_PORT = 8080
WAIT_S = 20.0


@dataclass
class Kit:
    """One runtime under test: how to make it (again, after a "restart"), another
    installation beside it, and what it sets ``PORT`` to."""

    name: str
    make: Callable[[], Runtime]
    other_installation: Callable[[], Runtime]
    port_of: Callable[[str], str]
    app_env: Mapping[str, str] = field(default_factory=dict)
    made: list[Runtime] = field(default_factory=list)

    def runtime(self) -> Runtime:
        runtime = self.make()
        self.made.append(runtime)
        return runtime

    def launch(self, command: str = SERVE, *, env: Mapping[str, str] | None = None) -> Launch:
        return Launch(
            replica_id=new_id(),
            endpoint_id=new_id(),
            revision=2,
            deploy=DeploySpec(
                image_url=TEST_IMAGE,
                command=command,
                port=CONTAINER_PORT,
                env={**self.app_env, **(env or {})},
            ),
            sandboxed=False,
        )


def _exits_at_once(code: int, message: str) -> str:
    return f"echo '{message}' >&2; exit {code}"


def _fake_script(launch: Launch) -> Behavior:
    """The fake's reading of the commands this suite uses."""
    command = launch.deploy.command or ""
    if command.startswith("echo '") and "; exit " in command:
        message = command.split("'")[1]
        return Behavior(exit_code=int(command.rsplit(" ", 1)[1]), output=message)
    return Behavior(output=f"replica app {LISTENING} {launch.replica_id}")


def _fake_kit() -> Kit:
    host = FakeHost()
    return Kit(
        "fake",
        make=lambda: FakeRuntime(script=_fake_script, host=host),
        other_installation=lambda: FakeRuntime(host=host, installation="another"),
        port_of=lambda address: address.rsplit(":", 1)[1],
    )


def _process_kit(root: Path) -> Kit:
    return Kit(
        "process",
        make=lambda: ProcessRuntime(root / "replicas", stop_grace_s=5.0),
        other_installation=lambda: ProcessRuntime(root / "another", stop_grace_s=5.0),
        port_of=lambda address: address.rsplit(":", 1)[1],
    )


def _docker_kit(runtime: DockerRuntime, engine_url: str) -> Kit:
    def again() -> Runtime:
        return DockerRuntime(connect(engine_url), installation=runtime.installation, stop_grace_s=2)

    return Kit(
        "docker",
        make=again,
        other_installation=lambda: DockerRuntime(
            runtime.client, installation=f"moorage-test-{new_id()}"
        ),
        port_of=lambda _address: str(CONTAINER_PORT),
        app_env={"APP_HOST": "0.0.0.0"},  # reached through the container's published port
    )


@pytest.fixture(params=["fake", "process", "docker"])
async def kit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Kit]:
    """The runtime under test. Afterwards every replica a test left is stopped (the
    docker fixture also fails the test if a container still ran)."""
    if request.param == "docker":
        docker: DockerRuntime = request.getfixturevalue("docker_runtime")
        made = _docker_kit(docker, request.getfixturevalue("docker_engine_url"))
    elif request.param == "process":
        made = _process_kit(tmp_path)
    else:
        made = _fake_kit()
    try:
        yield made
    finally:
        for runtime in made.made:
            for replica_id in await runtime.observe():
                await runtime.stop(replica_id)
            await runtime.close()


async def _env(address: str) -> dict[str, str]:
    body: dict[str, Any] = (await request_until_answered("GET", address)).json()
    env: dict[str, str] = body["env"]
    return env


async def _observe_until(
    runtime: Runtime, replica_id: str, done: Callable[[Observed | None], bool], what: str
) -> Observed | None:
    return await observe_until(runtime, replica_id, done, what, timeout_s=WAIT_S, interval_s=0.05)


async def _logs(runtime: Runtime, replica_id: str, *, tail: int | None) -> str:
    chunks = [c async for c in runtime.logs(replica_id, tail=tail, follow=False)]
    return b"".join(chunks).decode()


async def _logs_until(runtime: Runtime, replica_id: str, needle: str) -> str:
    """The whole log once it holds ``needle`` (output reaches a log file or engine a
    moment after the app wrote it); fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while needle not in (text := await _logs(runtime, replica_id, tail=None)):
        assert time.monotonic() < deadline, f"{needle!r} never reached the log: {text!r}"
        await asyncio.sleep(0.05)
    return text


# -- start, identity ---------------------------------------------------------------------


async def test_start_returns_an_address_where_the_app_answers(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()

    address = await runtime.start(launch)

    env = await _env(address)
    assert env["PORT"] == kit.port_of(address)
    observed = (await runtime.observe())[launch.replica_id]
    assert observed.running is True
    assert observed.address == address
    assert observed.endpoint_id == launch.endpoint_id
    assert observed.revision == 2
    assert observed.exit_code is None
    assert observed.output_tail is None
    assert LISTENING in await _logs_until(runtime, launch.replica_id, LISTENING)


async def test_the_replica_gets_its_identity_and_deploy_env_but_not_moorages_settings(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_ADMIN_TOKEN", "mrg_admin-secret-do-not-leak")
    monkeypatch.setenv("MOORAGE_DATABASE_URL", "postgresql://moorage:hunter2@db/moorage")
    runtime = kit.runtime()
    launch = kit.launch(
        env={
            "MODEL_NAME": "tiny-llm",
            "GREETING": "hello 'quoted' world $HOME; `true` \"too\"",
            "PORT": "1",  # the runtime sets the port; a user's value cannot win
        }
    )

    address = await runtime.start(launch)
    env = await _env(address)

    assert env["PORT"] == kit.port_of(address)
    assert env["MOORAGE_REPLICA_ID"] == launch.replica_id
    assert env["MOORAGE_ENDPOINT_ID"] == launch.endpoint_id
    assert env["MODEL_NAME"] == "tiny-llm"
    assert env["GREETING"] == "hello 'quoted' world $HOME; `true` \"too\""
    # Its identity, and (process runtime) the launch token that finds it after a crash.
    moorage_vars = {k for k in env if k.startswith("MOORAGE_")}
    assert {"MOORAGE_REPLICA_ID", "MOORAGE_ENDPOINT_ID"} <= moorage_vars
    assert moorage_vars <= {"MOORAGE_REPLICA_ID", "MOORAGE_ENDPOINT_ID", "MOORAGE_LAUNCH_TOKEN"}
    for key, value in env.items():
        assert "mrg_admin-secret" not in value, f"the admin token leaked through {key}"
        assert "hunter2" not in value, f"the database password leaked through {key}"


# -- exit ----------------------------------------------------------------------------------


async def test_observe_reports_an_exit_with_its_code_and_output_tail(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)

    shards = "\n".join(f"loading shard {i:02d}" for i in range(20))
    await request_until_answered("POST", address, "/say", content=shards)
    await request_until_answered(
        "POST", address, "/exit/3", content="fatal: model weights not found"
    )
    exited = await _observe_until(
        runtime, launch.replica_id, lambda o: o is not None and not o.running, "exited"
    )

    assert exited is not None
    assert exited.exit_code == 3
    assert exited.output_tail is not None
    lines = exited.output_tail.splitlines()
    assert lines[-1] == "fatal: model weights not found"
    assert "loading shard 19" in lines
    assert "loading shard 00" not in lines, "the tail should be short, not the whole log"

    await runtime.stop(launch.replica_id)
    assert launch.replica_id not in await runtime.observe()


async def test_a_command_that_exits_at_once_is_seen_exited_with_its_code(kit: Kit) -> None:
    """A typo in the command must read as exited, not as a replica that never answers."""
    runtime = kit.runtime()
    launch = kit.launch(_exits_at_once(3, "no such model"))
    await runtime.start(launch)

    exited = await _observe_until(
        runtime,
        launch.replica_id,
        lambda o: o is not None and not o.running and o.exit_code is not None,
        "seen exited with a code",
    )

    assert exited is not None
    assert exited.exit_code == 3
    assert exited.output_tail == "no such model"


# -- stop --------------------------------------------------------------------------------


async def test_stop_ends_the_replica_and_its_address_stops_answering(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)

    await runtime.stop(launch.replica_id)

    assert launch.replica_id not in await runtime.observe()
    assert await refuses(address)


async def test_stopping_an_unknown_replica_is_a_no_op(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    before = await _env(address)

    await runtime.stop(new_id())
    await runtime.stop(new_id())

    assert (await runtime.observe())[launch.replica_id].running is True
    assert await _env(address) == before
    assert [c async for c in runtime.logs(new_id(), tail=10, follow=True)] == []


async def test_starting_a_replica_again_replaces_it(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    first_address = await runtime.start(launch)
    await _env(first_address)

    second_address = await runtime.start(launch)
    await _env(second_address)

    observed = await runtime.observe()
    assert list(observed) == [launch.replica_id], "two replicas ran under one id"
    assert observed[launch.replica_id].address == second_address
    if second_address != first_address:
        assert await refuses(first_address)


# -- adoption and installations -------------------------------------------------------------


async def test_a_restarted_runtime_adopts_and_stops_a_running_replica(kit: Kit) -> None:
    before = kit.runtime()
    launch = kit.launch()
    address = await before.start(launch)
    await _env(address)

    after = kit.runtime()  # a new moorage process: same installation, nothing in memory
    adopted = (await after.observe()).get(launch.replica_id)

    assert adopted is not None, "the new runtime does not see the running replica"
    assert adopted.running is True
    assert adopted.address == address
    assert adopted.endpoint_id == launch.endpoint_id
    assert adopted.revision == launch.revision

    await after.stop(launch.replica_id)

    assert await refuses(address)
    assert launch.replica_id not in await after.observe()
    assert launch.replica_id not in await before.observe()


async def test_another_installation_neither_sees_nor_stops_the_replica(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)
    other = kit.other_installation()

    assert launch.replica_id not in await other.observe()
    await other.stop(launch.replica_id)

    observed = (await runtime.observe()).get(launch.replica_id)
    assert observed is not None, "another installation's stop() ended the replica"
    assert observed.running is True
    await _env(address)


# -- logs ------------------------------------------------------------------------------------


async def test_logs_return_the_last_lines_or_all(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)
    await request_until_answered(
        "POST", address, "/say", content="\n".join(f"line {i}" for i in range(1, 11))
    )
    everything = await _logs_until(runtime, launch.replica_id, "line 10\n")

    assert await _logs(runtime, launch.replica_id, tail=3) == "line 8\nline 9\nline 10\n"
    assert LISTENING in everything
    assert everything.endswith("\n".join(f"line {i}" for i in range(1, 11)) + "\n")


async def test_following_logs_yields_output_as_it_comes_and_ends_with_the_replica(
    kit: Kit,
) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)
    await request_until_answered("POST", address, "/say", content="zero")
    await _logs_until(runtime, launch.replica_id, "zero\n")

    async with follow(runtime, launch.replica_id, tail=1) as follower:
        await follower.wait_for("zero\n")
        await request_until_answered("POST", address, "/say", content="first")
        await follower.wait_for("first\n")
        assert "second" not in follower.text
        await request_until_answered("POST", address, "/say", content="second")
        await follower.wait_for("second\n")
        await request_until_answered("POST", address, "/exit/0", content="bye")
        assert await follower.ended(), "following did not end when the replica exited"

    assert LISTENING not in follower.text, "tail=1 should not replay the whole log"
    assert follower.text.index("first") < follower.text.index("second")
    assert follower.text.rstrip().endswith("bye")


async def test_following_logs_ends_when_the_replica_is_stopped(kit: Kit) -> None:
    runtime = kit.runtime()
    launch = kit.launch()
    address = await runtime.start(launch)
    await _env(address)

    async with follow(runtime, launch.replica_id, tail=None) as follower:
        await request_until_answered("POST", address, "/say", content="still here")
        await follower.wait_for("still here")
        await runtime.stop(launch.replica_id)
        assert await follower.ended(), "following did not end when the replica was stopped"

    assert LISTENING in follower.text
