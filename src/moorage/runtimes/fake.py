"""The ``fake`` runtime: replicas that live in memory, for tests and benchmarks.

It keeps the ``Runtime`` contract (runtimes/base.py) without starting anything:
a replica is a record in a dict. What happens at each start is up to a
``script``, a plain function from the ``Launch`` to a ``Behavior`` (as httpx's
``MockTransport`` wraps a function): a delay, a ``StartError`` or
``StartPending``, an exit some seconds after starting, the output it prints, an
app that never answers. Tests can also ``crash`` a running replica by hand.

An idle replica costs a small record and nothing else: no task, no thread, no
timer. A scheduled exit is noticed when someone looks (``observe``, ``logs``),
by comparing the injected clock with the exit time.

Where the replicas answer HTTP:

- ``serve="shared"`` (what ``MOORAGE_RUNTIME=fake`` uses): one tiny HTTP app on
  127.0.0.1, started with the first replica, answers for all of them, so 50,000
  replicas cost one socket;
- ``serve="replica"``: a listening socket per replica (for tests that must tell
  replicas apart through the gateway), closed when the replica exits or stops;
- ``backend="host:port"``: every replica's address is that server's.

The app answers ``GET`` with the replica's identity and environment as JSON
(with status 200, or what ``answer_with`` set),
appends ``POST /say``'s body to the replica's output, and exits the replica with
``POST /exit/<code>`` (the body becomes its last output line), the same small
protocol the tests' real replica apps speak.

Replicas belong to a ``FakeHost`` shared by the runtimes given it, so a runtime
made "after a restart" on the same host adopts what an earlier one started;
another ``installation`` on the same host sees none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from moorage.clock import Clock, SystemClock
from moorage.runtimes.base import Launch, Observed
from moorage.runtimes.listening import Listening
from moorage.runtimes.ports import free_port

TAIL_LINES = 5
# How often a log follower looks again for an exit the clock scheduled.
_FOLLOW_POLL_S = 0.1
_MAX_HEAD_BYTES = 64 * 1024
_EXIT_PATH = re.compile(r"/exit/(\d+)")


@dataclass(frozen=True)
class Behavior:
    """What one start does. The default starts at once and runs until stopped."""

    delay_s: float = 0.0
    """``start`` awaits this long (``asyncio.sleep``) before answering."""
    error: Exception | None = None
    """Raised by ``start`` after the delay; nothing is left running. A ``StartError`` or
    ``StartPending`` is what a runtime says on purpose; anything else is a runtime's
    bug the controller must survive."""
    exit_code: int | None = None
    """The replica exits with this code ``exit_after_s`` after its start."""
    exit_after_s: float = 0.0
    output: str = ""
    """Lines the replica prints as it starts."""
    answers: bool = True
    """False: its address is a port nothing listens on (an app that never comes up)."""
    address: str | None = None
    """``host:port`` of a server the test runs: the replica's app is that one."""
    listens_on: tuple[int, ...] | None = None
    """The TCP ports ``listening`` reports (an app on the wrong port: ``(8080,)``);
    None: ``$PORT`` when it answers, none when it does not."""


Script = Callable[[Launch], Behavior]


def always(behavior: Behavior) -> Script:
    """A script doing the same on every start."""
    return lambda _launch: behavior


@dataclass
class _Replica:
    launch: Launch
    installation: str
    address: str
    env: dict[str, str]
    exit_at: datetime | None
    exit_code_due: int | None
    output: list[str] = field(default_factory=list)
    # What its app answers GET with: 200, or what ``answer_with`` set (a sick app).
    status: int = 200
    # The ports ``listening`` reports: Behavior.listens_on, or what ``listen_on`` set.
    listens_on: tuple[int, ...] = ()
    exit_code: int | None = None
    exited: bool = False
    app: _App | None = None
    # Created only while someone follows the logs.
    changed: asyncio.Event | None = None
    # What observe() last reported; kept until the replica exits, so a pass over
    # 50,000 unchanged replicas builds nothing.
    seen: Observed | None = None

    def observed(self) -> Observed:
        if self.seen is None:
            launch = self.launch
            self.seen = Observed(
                replica_id=launch.replica_id,
                endpoint_id=launch.endpoint_id,
                revision=launch.revision,
                address=self.address,
                running=not self.exited,
                exit_code=self.exit_code,
                output_tail=_tail(self.output) if self.exited else None,
            )
        return self.seen

    def say(self, text: str) -> None:
        self.output.extend(text.splitlines())
        if self.changed is not None:
            self.changed.set()

    def end(self, code: int) -> None:
        if self.exited:
            return
        self.exited, self.exit_code, self.seen = True, code, None
        if self.app is not None:
            self.app.close()
            self.app = None
        if self.changed is not None:
            self.changed.set()


@dataclass
class FakeHost:
    """The machine fake replicas "run" on; it outlives the runtimes that share it."""

    replicas: dict[str, _Replica] = field(default_factory=dict)


def replica_env(launch: Launch, port: int) -> dict[str, str]:
    """What a replica would see: its deploy env, then what moorage sets (which wins)."""
    return {
        **launch.deploy.env,
        "PORT": str(port),
        "MOORAGE_REPLICA_ID": launch.replica_id,
        "MOORAGE_ENDPOINT_ID": launch.endpoint_id,
        # The GPUs it was given, as the process runtime passes them (by UUID).
        **(
            {
                "CUDA_VISIBLE_DEVICES": ",".join(launch.gpus),
                "NVIDIA_VISIBLE_DEVICES": ",".join(launch.gpus),
            }
            if launch.gpus
            else {}
        ),
    }


class FakeRuntime:
    name = "fake"

    def __init__(
        self,
        *,
        script: Script | None = None,
        clock: Clock | None = None,
        serve: Literal["shared", "replica"] = "replica",
        backend: str | None = None,
        host: FakeHost | None = None,
        installation: str = "fake",
    ) -> None:
        self.script = script or always(Behavior())
        self.clock = clock or SystemClock()
        self.serve = serve
        self.backend = backend
        self.host = host or FakeHost()
        self.installation = installation
        self.starts: list[Launch] = []
        """Every launch ``start`` was called with, in order (failed ones too)."""
        self.stops: list[str] = []
        """Every replica id ``stop`` was called with, in order."""
        self._shared: _App | None = None

    # -- the Runtime contract --------------------------------------------------

    async def start(self, launch: Launch) -> str:
        self.starts.append(launch)
        behavior = self.script(launch)
        self._end(launch.replica_id)  # never two replicas under one id
        if behavior.delay_s > 0:
            await asyncio.sleep(behavior.delay_s)
        if behavior.error is not None:
            raise behavior.error
        now = self.clock.now()
        replica = _Replica(
            launch=launch,
            installation=self.installation,
            address="",
            env={},
            exit_at=(
                now + timedelta(seconds=behavior.exit_after_s)
                if behavior.exit_code is not None
                else None
            ),
            exit_code_due=behavior.exit_code,
        )
        replica.address, port = await self._address_for(replica, behavior)
        replica.env = replica_env(launch, port)
        replica.say(behavior.output)
        replica.listens_on = (
            behavior.listens_on
            if behavior.listens_on is not None
            else ((port,) if behavior.answers else ())
        )
        self.host.replicas[launch.replica_id] = replica
        self._due(replica, now)
        return replica.address

    async def stop(self, replica_id: str) -> None:
        self.stops.append(replica_id)
        self._end(replica_id)

    def _end(self, replica_id: str) -> None:
        replica = self._mine(replica_id)
        if replica is None:
            return
        replica.end(-15)  # SIGTERM, as a real runtime reports it; a no-op once exited
        del self.host.replicas[replica_id]

    async def observe(self) -> Mapping[str, Observed]:
        now = self.clock.now()
        observed: dict[str, Observed] = {}
        for replica in list(self.host.replicas.values()):
            if replica.installation != self.installation:
                continue
            if replica.exit_at is not None:
                self._due(replica, now)
            observed[replica.launch.replica_id] = replica.observed()
        return observed

    async def logs(
        self, replica_id: str, *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        replica = self._mine(replica_id)
        if replica is None:
            return
        lines = replica.output if tail is None else replica.output[-tail:] if tail else []
        sent = len(replica.output)
        if lines:
            yield "".join(f"{line}\n" for line in lines).encode()
        if not follow:
            return
        changed = replica.changed = replica.changed or asyncio.Event()
        while True:
            self._due(replica, self.clock.now())
            if len(replica.output) > sent:
                new, sent = replica.output[sent:], len(replica.output)
                yield "".join(f"{line}\n" for line in new).encode()
            if replica.exited or self._mine(replica_id) is not replica:
                return
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), _FOLLOW_POLL_S)

    async def close(self) -> None:
        """Closes the apps (they lived in this process); the replicas' records stay on
        the host, so a runtime made after a "restart" adopts them."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        for replica in self.host.replicas.values():
            if replica.installation == self.installation and replica.app is not None:
                replica.app.close()

    async def listening(self, replica_id: str) -> Listening | None:
        """The ports the replica "listens" on (``Behavior.listens_on``, ``listen_on``)."""
        replica = self._mine(replica_id)
        if replica is None or replica.exited:
            return None
        return Listening(int(replica.env["PORT"]), replica.listens_on)

    # -- for tests ---------------------------------------------------------------

    def listen_on(self, replica_id: str, *ports: int) -> None:
        """From now on ``listening`` reports these ports for the replica."""
        replica = self._mine(replica_id)
        if replica is None:
            raise KeyError(f"no replica {replica_id} runs here")
        replica.listens_on = tuple(ports)

    def crash(self, replica_id: str, exit_code: int, output: str = "") -> None:
        """The replica prints ``output`` and exits with ``exit_code``, now."""
        replica = self._mine(replica_id)
        if replica is None:
            raise KeyError(f"no replica {replica_id} runs here")
        replica.say(output)
        replica.end(exit_code)

    def answer_with(self, replica_id: str, status: int) -> None:
        """From now on the replica's app answers ``GET`` with ``status`` (500: sick)."""
        replica = self._mine(replica_id)
        if replica is None:
            raise KeyError(f"no replica {replica_id} runs here")
        replica.status = status

    # -- inside ----------------------------------------------------------------

    def _mine(self, replica_id: str) -> _Replica | None:
        replica = self.host.replicas.get(replica_id)
        return (
            replica if replica is not None and replica.installation == self.installation else None
        )

    def _due(self, replica: _Replica, now: datetime) -> None:
        """Applies an exit the script scheduled, once its time has come."""
        if replica.exit_at is not None and not replica.exited and now >= replica.exit_at:
            replica.end(replica.exit_code_due if replica.exit_code_due is not None else 0)

    async def _address_for(self, replica: _Replica, behavior: Behavior) -> tuple[str, int]:
        if not behavior.answers:
            port = free_port()
            return f"127.0.0.1:{port}", port
        backend = behavior.address or self.backend
        if backend is not None:
            return backend, int(backend.rsplit(":", 1)[1])
        if self.serve == "shared":
            if self._shared is None:
                self._shared = await _App.listen(None)
            return f"127.0.0.1:{self._shared.port}", self._shared.port
        replica.app = await _App.listen(replica)
        return f"127.0.0.1:{replica.app.port}", replica.app.port


def _tail(output: list[str]) -> str | None:
    kept = [line for line in output if line.strip()][-TAIL_LINES:]
    return "\n".join(kept) or None


# -- the replicas' app: HTTP/1.1 with keep-alive, enough for probes and the gateway ----


class _App:
    """A listening socket and the connections it accepted, closed together. Closing an
    asyncio server alone leaves its connections open, and a connection accepted just
    before the close may not have started its handler yet: the transports are tracked
    from the moment they connect, not from the handler."""

    def __init__(self, replica: _Replica | None) -> None:
        self.replica = replica
        self.transports: set[asyncio.BaseTransport] = set()
        self.server: asyncio.Server | None = None

    @classmethod
    async def listen(cls, replica: _Replica | None) -> _App:
        app = cls(replica)
        loop = asyncio.get_running_loop()
        app.server = await loop.create_server(app._protocol, "127.0.0.1", 0)
        return app

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        return _TrackedProtocol(
            asyncio.StreamReader(limit=_MAX_HEAD_BYTES), self._handle, self.transports
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for transport in list(self.transports):
            transport.close()
        self.transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _answer_one(reader, writer, self.replica):
                pass
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


class _TrackedProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that keeps its transport in ``tracked`` while connected."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        tracked: set[asyncio.BaseTransport],
    ) -> None:
        super().__init__(reader, handle)
        self._tracked = tracked
        self._transport_seen: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport_seen = transport
        self._tracked.add(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport_seen is not None:
            self._tracked.discard(self._transport_seen)
        super().connection_lost(exc)


async def _answer_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    replica: _Replica | None,
) -> bool:
    """Reads one request and answers it; False once the connection should close."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines if line)
    }
    body = await _read_body(reader, headers)
    path = target.split("?", 1)[0]
    status, payload, after = _route(method, path, body, replica)
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    keep = headers.get("connection", "").lower() != "close" and after is None
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    if after is not None:
        after()
    return keep


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
            pass
        return b"".join(chunks)
    return await reader.readexactly(int(headers.get("content-length") or 0))


def _route(
    method: str, path: str, body: bytes, replica: _Replica | None
) -> tuple[str, object, Callable[[], None] | None]:
    """The answer's status, body, and what to do once it is sent."""
    text = body.decode(errors="replace")
    if replica is None:  # the shared app speaks for no replica in particular
        return "200 OK", {"path": path, "method": method}, None
    if method == "POST" and path == "/say":
        replica.say(text)
        return "200 OK", "said", None
    if method == "POST" and (match := _EXIT_PATH.fullmatch(path)):
        code = int(match.group(1))

        def exit_now() -> None:
            replica.say(text)
            replica.end(code)

        return "200 OK", "exiting", exit_now
    launch = replica.launch
    identity = {
        "replica_id": launch.replica_id,
        "endpoint_id": launch.endpoint_id,
        "revision": launch.revision,
        "path": path,
        "method": method,
        "env": replica.env,
    }
    return f"{replica.status} {'OK' if replica.status < 400 else 'Sick'}", identity, None
