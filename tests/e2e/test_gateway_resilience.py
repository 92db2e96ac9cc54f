"""The standalone gateway when things go wrong: replicas that refuse connections or hang
up or close idle connections, replicas that are slow, a control plane that is frozen
or refuses the token, a broken route file, and several worker processes.

Every test runs real ``moorage gateway`` subprocesses, called with real clients, in
front of real HTTP servers (``tests/support/resilience_backends.py``) or, fed by a real
``moorage serve``, in front of its replicas.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.gateway import StandaloneGateway, endpoint
from tests.support.metrics import metric
from tests.support.resilience_backends import Backend, refusing_address
from tests.support.server import (
    MOORAGE,
    ApiClient,
    MoorageServer,
    free_port,
    new_user_token,
    wait_for,
)

# What this module checks is the gateway's retries and timeouts, the same over either store.
STORES = ["sqlite"]

TOKEN = "gateway-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRY_ON_RESET = {"X-Moorage-Retry-On": "reset"}
NO_RETRY = {"X-Moorage-Retry-On": "none"}


@pytest.fixture
def good() -> Iterator[Backend]:
    with Backend("good") as backend:
        yield backend


def call(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request on a fresh connection, as the test's token."""
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def assert_gateway_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]


# -- 1. a replica that cannot be reached -------------------------------------------------


def test_a_refused_connection_is_retried_on_another_replica(tmp_path: Path, good: Backend) -> None:
    with refusing_address() as dead, refusing_address() as also_dead:
        routes = [
            endpoint("retried", [dead, good.address]),  # retries: 1 by default
            endpoint("unretried", [dead, good.address], retries=0),
            endpoint("all-down", [dead, also_dead], retries=1),
            # Round robin turns to the dead replica first, every time.
            endpoint("bodies", [dead, good.address], policy="round_robin"),
        ]
        with StandaloneGateway(tmp_path, routes) as gateway:
            for index in range(25):
                got = call("GET", gateway.url("retried", f"get-{index}"))
                assert got.status_code == 200, got.text
                assert got.json()["path"] == f"/get-{index}"
                posted = call("POST", gateway.url("retried", "post"), data=f"body-{index}")
                assert posted.status_code == 200, posted.text
                assert posted.json()["body"] == f"body-{index}"

            answers = [
                call(method, gateway.url("unretried"), data=b"x" if method == "POST" else None)
                for method in ["GET", "POST"] * 25
            ]
            refused = [a for a in answers if a.status_code != 200]
            assert refused, "with retries: 0, some requests must have met the dead replica"
            for answer in refused:
                assert_gateway_error(answer, 502, "replica_unreachable")
                assert "unretried" in answer.json()["message"]

            assert_gateway_error(call("GET", gateway.url("all-down")), 502, "replica_unreachable")

            # A body larger than the gateway holds while connecting, and a chunked one,
            # arrive whole after the retry.
            large = b"0123456789abcdef" * (3 << 16)  # 3 MiB
            for _ in range(2):
                posted = call("POST", gateway.url("bodies", "large"), data=large)
                assert posted.status_code == 200, posted.text
                assert posted.json()["body"].encode() == large
                pieces = (f"piece {i};".encode() for i in range(5))
                chunked = call("POST", gateway.url("bodies", "chunked"), data=pieces)
                assert chunked.status_code == 200, chunked.text
                assert chunked.json()["body"] == "".join(f"piece {i};" for i in range(5))

            text = requests.get(gateway.base + "/metrics", timeout=10).text
    assert metric(text, "moorage_gateway_retries_total", endpoint="retried") >= 1
    assert metric(text, "moorage_gateway_retries_total", endpoint="unretried") == 0
    assert metric(text, "moorage_gateway_retries_total", endpoint="all-down") == 1
    assert metric(text, "moorage_gateway_retries_total", endpoint="bodies") == 4
    assert metric(text, "moorage_gateway_requests_total", endpoint="retried", code="200") == 50
    assert metric(
        text, "moorage_gateway_errors_total", endpoint="unretried", reason="replica_unreachable"
    ) == len(refused)


# -- 2. a replica that read the request and hung up --------------------------------------


def test_a_request_that_reached_a_replica_is_never_sent_twice(tmp_path: Path) -> None:
    with Backend("first", hang_up=True) as first, Backend("second", hang_up=True) as second:
        routes = [endpoint("hangs-up", [first.address, second.address], retries=3)]
        with StandaloneGateway(tmp_path, routes) as gateway:
            posted = call("POST", gateway.url("hangs-up", "generate"), data=b"once")
            assert_gateway_error(posted, 502, "replica_unreachable")
            received = first.requests() + second.requests()
            assert [(r.method, r.path, r.body) for r in received] == [
                ("POST", "/generate", b"once")
            ]
            # Opting in does not make a POST safe to send again.
            opted = call(
                "POST", gateway.url("hangs-up", "generate"), data=b"again", headers=RETRY_ON_RESET
            )
            assert_gateway_error(opted, 502, "replica_unreachable")
            assert first.count() + second.count() == 2


def test_a_safe_request_is_retried_after_a_reset_and_others_only_when_the_client_opts_in(
    tmp_path: Path, good: Backend
) -> None:
    with Backend("hangs-up", hang_up=True) as hangs_up:
        routes = [endpoint("flaky", [hangs_up.address, good.address], policy="round_robin")]
        with StandaloneGateway(tmp_path, routes) as gateway:
            # A PUT (idempotent, not safe) and a GET that says none are not sent again.
            answers = [
                call("PUT", gateway.url("flaky", "plain"), data=b"same")
                if index % 2
                else call("GET", gateway.url("flaky", "plain"), headers=NO_RETRY)
                for index in range(6)
            ]
            failed = [a for a in answers if a.status_code != 200]
            assert failed, "round robin must have sent some requests to the replica that hangs up"
            for answer in failed:
                assert_gateway_error(answer, 502, "replica_unreachable")
            assert hangs_up.count() == len(failed)  # each reached it once, and only it
            assert good.count() == 6 - len(failed)

            # A GET as it comes, and a PUT that opted in, are sent again after the reset.
            for index in range(6):
                method, body, headers = (
                    ("GET", b"", {}) if index % 2 else ("PUT", b"same again", RETRY_ON_RESET)
                )
                retried = call(
                    method, gateway.url("flaky", f"retried-{index}"), data=body, headers=headers
                )
                assert retried.status_code == 200, retried.text
                assert retried.json()["backend"] == "good"
                assert retried.json()["body"] == body.decode()  # the body went out again
            assert hangs_up.count() > len(failed), "no retried request met the flaky replica"
            assert {"PUT", "GET"} <= {r.method for r in hangs_up.requests()}
            assert good.count() == 12 - len(failed)
            text = requests.get(gateway.base + "/metrics", timeout=10).text
    assert metric(text, "moorage_gateway_retries_total", endpoint="flaky") == (
        hangs_up.count() - len(failed)
    )
    for received in hangs_up.requests() + good.requests():
        assert "x-moorage-retry-on" not in received.headers  # for the gateway only
        assert "authorization" not in received.headers


# -- 2b. a replica that closes idle connections ------------------------------------------


def test_an_idle_replica_connection_is_closed_by_the_gateway_before_the_replica_does(
    tmp_path: Path,
) -> None:
    # Were the replica to close it, a request written at that moment would get a 502: it
    # may have reached the replica, so it is not sent again.
    with Backend("keeps-alive-3s", keep_alive_s=3.0) as replica:
        gateway = StandaloneGateway(tmp_path, [endpoint("pooled", [replica.address])])
        with gateway:
            for _ in range(5):
                assert call("GET", gateway.url("pooled")).status_code == 200
            assert replica.connections_accepted == 1  # one connection, reused
            wait_for(
                lambda: replica.open_connections() == 0,
                timeout=10,
                interval=0.05,
                what="the idle connection to close",
            )
            assert replica.connections_timed_out == 0  # the gateway closed it first
            assert call("GET", gateway.url("pooled")).status_code == 200
            assert replica.connections_accepted == 2


# -- 3. slow replicas --------------------------------------------------------------------


def test_idle_and_request_timeouts_answer_504_or_cut_and_free_the_slot(
    tmp_path: Path, good: Backend
) -> None:
    capped: dict[str, Any] = {"max_concurrency": 1, "max_queue": 0}
    routes = [
        endpoint("idle", [good.address], idle_timeout_s=1, **capped),
        endpoint("deadline", [good.address], request_timeout_s=1, **capped),
    ]
    with StandaloneGateway(tmp_path, routes) as gateway:
        with requests.Session() as session:  # and the client's connection goes on
            session.headers.update(AUTH)
            started = time.monotonic()
            silent = session.get(gateway.url("idle", "sleep"), params={"seconds": "3"}, timeout=30)
            elapsed = time.monotonic() - started
            assert_gateway_error(silent, 504, "idle_timeout")
            assert 0.9 < elapsed < 2.5
            assert session.get(gateway.url("idle"), timeout=30).status_code == 200  # slot free

        started = time.monotonic()
        stream = call("GET", gateway.url("idle", "stream"), params={"count": "8", "gap": "0.4"})
        assert stream.status_code == 200
        assert stream.text == "".join(f"data: {i}\n\n" for i in range(8))
        assert time.monotonic() - started > 2.5  # longer than the idle timeout, never idle

        started = time.monotonic()
        late = call("GET", gateway.url("deadline", "sleep"), params={"seconds": "3"})
        assert_gateway_error(late, 504, "request_timeout")
        assert 0.9 < time.monotonic() - started < 2.5

        chunks: list[bytes] = []
        started = time.monotonic()
        with call(
            "GET",
            gateway.url("deadline", "stream"),
            params={"count": "8", "gap": "0.4"},
            stream=True,
        ) as cut:
            assert cut.status_code == 200
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                chunks.extend(cut.iter_content(None))
        assert 0.9 < time.monotonic() - started < 2.5
        assert 1 <= len(chunks) < 8  # some arrived, then the response was cut short
        assert call("GET", gateway.url("deadline")).status_code == 200  # the slot is free

        text = requests.get(gateway.base + "/metrics", timeout=10).text
    assert metric(text, "moorage_gateway_errors_total", endpoint="idle", reason="idle_timeout") == 1
    assert (
        metric(text, "moorage_gateway_errors_total", endpoint="deadline", reason="request_timeout")
        == 2
    )
    assert metric(text, "moorage_gateway_in_flight", endpoint="idle") == 0
    assert metric(text, "moorage_gateway_in_flight", endpoint="deadline") == 0


# -- 4. fed by a control plane -----------------------------------------------------------


@dataclass(frozen=True)
class ControlPlane:
    """A real ``moorage serve`` with one endpoint of alice's, available."""

    server: MoorageServer
    admin: ApiClient
    alice: ApiClient
    bob: ApiClient
    service_id: str

    def fed_gateway(self, workdir: Path, token: str | None = None) -> StandaloneGateway:
        return StandaloneGateway(
            workdir, control_plane=self.server.url, token=token or self.admin.token
        )


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    home = tmp_path_factory.mktemp("control-plane")
    server = MoorageServer(home=home, database_url=f"sqlite:///{home / 'moorage.db'}").start()
    try:
        assert server.admin_token is not None
        admin = ApiClient(server.url, server.admin_token)
        alice = ApiClient(server.url, new_user_token(admin, "alice"))
        bob = ApiClient(server.url, new_user_token(admin, "bob"))
        service_id = alice.create(name="fed")["service_id"]
        alice.wait_status(service_id, "available")
        yield ControlPlane(server, admin, alice, bob, service_id)
    finally:
        server.stop()


def through(
    gateway: StandaloneGateway, control_plane: ControlPlane, path: str, client: ApiClient
) -> requests.Response:
    url = gateway.url(control_plane.service_id, path)
    return requests.get(url, headers=client.headers, timeout=30)


def routed(gateway: StandaloneGateway, control_plane: ControlPlane) -> requests.Response:
    answer: requests.Response = wait_for(
        lambda: (r := through(gateway, control_plane, "echo", control_plane.alice)).ok and r,
        timeout=20,
        what=f"the standalone gateway to route the endpoint\n{gateway.log()}",
    )
    return answer


def test_the_route_table_is_for_admins_and_holds_token_digests(
    control_plane: ControlPlane,
) -> None:
    alice, bob, admin = control_plane.alice, control_plane.bob, control_plane.admin
    assert alice.call("GET", "/v1/gateway/routes").status_code in (401, 403)
    anonymous = requests.get(control_plane.server.url + "/v1/gateway/routes", timeout=30)
    assert anonymous.status_code == 401

    def table_with_replica() -> dict[str, Any] | None:
        table = admin.call("GET", "/v1/gateway/routes")
        assert table.status_code == 200, table.text
        for token in (alice.token, bob.token, admin.token):
            assert token not in table.text
        for entry in table.json()["endpoints"]:
            if entry["service_id"] == control_plane.service_id and entry["replicas"]:
                return dict(entry)
        return None

    entry = wait_for(table_with_replica, timeout=20, what="the endpoint's route")
    assert entry["token_sha256"] == [hashlib.sha256(alice.token.encode()).hexdigest()]


def test_a_fed_gateway_follows_settings_and_tokens_and_outlives_a_frozen_control_plane(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    admin, alice, bob = control_plane.admin, control_plane.alice, control_plane.bob
    service_id = control_plane.service_id
    process = control_plane.server.process
    assert process is not None
    frozen = False
    with control_plane.fed_gateway(tmp_path) as gateway:
        echoed = routed(gateway, control_plane)
        assert echoed.json()["replica"]
        assert echoed.json()["authorization"] is None  # the token stays at the gateway
        assert through(gateway, control_plane, "echo", bob).status_code == 404  # not bob's

        # Settings: a new idle timeout applies without a restart.
        slow = gateway.url(service_id, "slow")
        assert requests.get(slow, {"seconds": "1.6"}, headers=alice.headers, timeout=30).ok
        changed = alice.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={"gateway_metadata": {"idle_timeout_s": 1}},
        )
        assert changed.status_code == 200, changed.text

        def cut_by_idle_timeout() -> bool:
            answer = requests.get(slow, {"seconds": "2.5"}, headers=alice.headers, timeout=30)
            return answer.status_code == 504 and bool(answer.json()["code"] == "idle_timeout")

        wait_for(cut_by_idle_timeout, timeout=20, what="the new idle timeout to apply")

        # A new token is accepted within moments.
        [alice_user] = [
            u for u in admin.call("GET", "/v1/users").json()["user_list"] if u["name"] == "alice"
        ]
        issued = admin.call("POST", "/v1/tokens", json={"user_id": alice_user["user_id"]})
        assert issued.status_code == 201, issued.text
        second = ApiClient(control_plane.server.url, issued.json()["token"])
        wait_for(
            lambda: through(gateway, control_plane, "echo", second).status_code == 200,
            timeout=20,
            what="the new token to be accepted",
        )

        # A frozen control plane (its replicas run on) does not stop the gateway, and a
        # gateway started meanwhile gets its table once the control plane answers.
        late = control_plane.fed_gateway(tmp_path)
        try:
            process.send_signal(signal.SIGSTOP)
            frozen = True
            late.start()
            for client in (alice, second, alice, second, alice):
                assert through(gateway, control_plane, "echo", client).status_code == 200
            assert through(gateway, control_plane, "echo", bob).status_code == 404
            assert through(late, control_plane, "echo", alice).status_code == 401  # no table yet
        finally:
            if frozen:
                process.send_signal(signal.SIGCONT)
        try:
            assert routed(late, control_plane).json()["replica"] == echoed.json()["replica"]
        finally:
            late.stop()

        # The feed goes on: a revoked token is refused within moments.
        revoked = admin.call("DELETE", f"/v1/tokens/{issued.json()['token_id']}")
        assert revoked.status_code == 200, revoked.text
        wait_for(
            lambda: through(gateway, control_plane, "echo", second).status_code == 401,
            timeout=20,
            what="the revoked token to be refused",
        )
        assert alice.call("GET", f"/v1/inference-service/{service_id}").status_code == 200


def test_a_token_the_control_plane_refuses_is_reported_once_and_serves_nothing(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    alice = control_plane.alice
    unknown = control_plane.fed_gateway(tmp_path, token="mrg_not_a_token")
    not_admin = control_plane.fed_gateway(tmp_path, token=alice.token)
    with unknown, not_admin:
        wait_for(
            lambda: all("refused the gateway's token" in g.log() for g in (unknown, not_admin)),
            timeout=20,
            what="both gateways to say their token was refused",
        )
        for refused in (unknown, not_admin):
            assert through(refused, control_plane, "echo", alice).status_code in (401, 404)
        time.sleep(2.5)  # a few more refusals: said once, not at every retry
    for refused, status in ((unknown, "(401)"), (not_admin, "(403)")):
        log = refused.log()
        assert log.count("refused the gateway's token") == 1, log
        assert status in log
        assert "--token" in log
        assert "cannot reach" not in log


# -- 5. the command line -----------------------------------------------------------------


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOORAGE, "gateway", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(text: str) -> str:
    """The terminal wraps long messages: compare them as one line."""
    return " ".join(text.split())


GOOD_ENTRY = endpoint("svc", ["127.0.0.1:9"])
NO_SERVICE_ID = {k: v for k, v in GOOD_ENTRY.items() if k != "service_id"}


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        pytest.param(
            {**GOOD_ENTRY, "gateway_metadata": {"policy": "fastest"}},
            "endpoints[0].gateway_metadata.policy",
            id="unknown-policy",
        ),
        pytest.param({**GOOD_ENTRY, "tokens": []}, "'tokens'", id="no-tokens"),
        # A lone string would otherwise allow each of its characters as a token.
        pytest.param({**GOOD_ENTRY, "tokens": TOKEN}, "endpoints[0].tokens", id="tokens-string"),
        pytest.param(NO_SERVICE_ID, "service_id", id="no-service-id"),
    ],
)
def test_a_route_file_with_a_bad_field_is_refused_naming_it(
    tmp_path: Path, entry: dict[str, Any], named: str
) -> None:
    routes = tmp_path / "bad.json"
    routes.write_text(json.dumps({"endpoints": [entry]}))
    result = run_gateway("--routes", str(routes))
    assert result.returncode == 2, result.stderr
    assert named in one_line(result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("body", ["[1, 2]", '{"endpoints": ["host:1"]}'])
def test_a_file_that_is_not_a_route_table_is_refused_without_a_traceback(
    tmp_path: Path, body: str
) -> None:
    routes = tmp_path / "odd.json"
    routes.write_text(body)
    result = run_gateway("--routes", str(routes))
    assert result.returncode == 2, result.stderr
    assert "route table" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_the_gateway_says_what_to_give_when_given_no_routes() -> None:
    result = run_gateway()
    assert result.returncode == 2
    message = one_line(result.stderr)
    assert "--control-plane" in message
    assert "--routes" in message


# -- 6. several workers ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def tcp_sockets(pid: int, *, local_port: int = 0, remote_port: int = 0, state: str) -> int:
    """How many IPv4 TCP sockets ``pid`` holds in ``state`` (01 established, 0A listening)
    with the given local or remote port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, st, inode = fields[1], fields[2], fields[3], fields[9]
        if st != state or inode not in inodes:
            continue
        if local_port and int(local.rpartition(":")[2], 16) != local_port:
            continue
        if remote_port and int(remote.rpartition(":")[2], 16) != remote_port:
            continue
        count += 1
    return count


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path, good: Backend) -> None:
    gateway = StandaloneGateway(tmp_path, [endpoint("shared", [good.address])], workers=2)
    gateway.start()
    assert gateway.process is not None
    parent = gateway.process.pid
    workers: list[int] = []
    try:
        workers = wait_for(
            lambda: len(found := children(parent)) == 2 and found,
            timeout=20,
            what="two worker processes",
        )
        wait_for(
            lambda: all(tcp_sockets(w, local_port=gateway.port, state="0A") for w in workers),
            timeout=20,
            what="both workers to listen",
        )

        def fresh_connection(index: int) -> int:
            return call("GET", gateway.url("shared", f"n{index}")).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(fresh_connection, range(200)))
        assert codes == [200] * 200
        assert good.count() == 200

        # Both serve: with 20 slow requests in flight, each worker holds connections to the
        # replica. Then SIGTERM: the requests in progress finish, and every process exits.
        backend_port = int(good.address.rpartition(":")[2])
        url = gateway.url("shared", "sleep")
        with ThreadPoolExecutor(20) as pool:
            slow = [pool.submit(call, "GET", url, params={"seconds": "2"}) for _ in range(20)]
            wait_for(
                lambda: all(tcp_sockets(w, remote_port=backend_port, state="01") for w in workers),
                timeout=10,
                interval=0.05,
                what="both workers to forward requests",
            )
            gateway.stop(signal.SIGTERM)
            assert [s.result().status_code for s in slow] == [200] * 20
    finally:
        code = gateway.stop(signal.SIGTERM)
    assert code == 0, gateway.log()
    wait_for(
        lambda: not any(Path(f"/proc/{w}").exists() for w in workers),
        timeout=10,
        what="every worker to exit",
    )
