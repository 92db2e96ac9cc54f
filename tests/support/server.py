"""A real ``moorage serve`` in a subprocess, driven over HTTP like a user would."""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

MOORAGE = str(Path(sys.executable).with_name("moorage"))
FLASK_APP = Path(__file__).resolve().parent.parent / "e2e" / "apps" / "flask_app.py"


def inline_app_command(source: str) -> str:
    """A command that writes the app and runs it, the way the reference's example fetches
    app.py and runs it: the same command works in a container (python3 with Flask) and
    in the process runtime (the test's Python comes first on PATH)."""
    encoded = base64.b64encode(source.encode()).decode()
    return f"echo {encoded} | base64 -d > app.py && exec python3 app.py"


FLASK_COMMAND = inline_app_command(FLASK_APP.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> Any:
    """Polls until ``condition`` returns something truthy; fails with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


# Processes tests started and have not stopped yet, with the signal that stops them
# cleanly (moorage serve stops its replicas on SIGINT). A test that fails between
# start and its own clean-up still leaves nothing running: they are stopped at exit.
_RUNNING: dict[int, tuple[subprocess.Popen[bytes], signal.Signals]] = {}


def track(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    _RUNNING[process.pid] = (process, sig)


def untrack(process: subprocess.Popen[bytes]) -> None:
    _RUNNING.pop(process.pid, None)


def end_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Stops a process with ``sig``, then SIGKILL after ``timeout``; never raises."""
    with contextlib.suppress(OSError):
        if process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    untrack(process)


@atexit.register
def _stop_leftovers() -> None:
    for process, sig in list(_RUNNING.values()):
        end_process(process, sig, timeout=30)


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of processes whose environment has ``name=value`` (replicas carry their ids)."""
    needle = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@dataclass
class MoorageServer:
    home: Path
    database_url: str
    admin_token: str | None = "mrg_test_admin_token"
    runtime: str = "process"
    docker_host: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # Where serve and the CLI run (relative paths in the environment start there).
    cwd: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
        env.update(
            MOORAGE_HOME=str(self.home),
            MOORAGE_DATABASE_URL=self.database_url,
            MOORAGE_PORT=str(self.port),
            MOORAGE_STOP_GRACE_S="3",
            MOORAGE_RUNTIME=self.runtime,
            PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            # Sandboxed replicas get a fixed PATH; the test's Python comes first there too.
            MOORAGE_SANDBOX_PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        )
        if self.docker_host:
            env["MOORAGE_DOCKER_HOST"] = self.docker_host
        if self.admin_token is not None:
            env["MOORAGE_ADMIN_TOKEN"] = self.admin_token
        env.update(self.extra_env)
        return env

    def start(self) -> MoorageServer:
        """Starts ``moorage serve`` and waits until it answers; if it never does, it is
        stopped (with its replicas) before the failure is raised."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [MOORAGE, "serve"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        track(self.process, signal.SIGINT)
        try:
            wait_for(self._healthy, timeout=60, what="moorage serve to answer /healthz")
        except BaseException:
            end_process(self.process, signal.SIGINT, timeout=30)
            raise
        return self

    def _healthy(self) -> bool:
        """Answering yet? A timeout or a refused connection (a loaded machine, a server
        still starting) means "not yet"; only an exit is a failure."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"moorage serve exited early:\n{self.log()}")
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        path = self.home / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is not None:
            untrack(self.process)
            return self.process.returncode
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_process(self.process, signal.SIGKILL, timeout=10)
            raise AssertionError(f"moorage serve ignored {sig.name}:\n{self.log()}") from None
        untrack(self.process)
        return code

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MOORAGE, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
        )


@dataclass
class ApiClient:
    """The calls a user makes with ``requests``, with their token."""

    base: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def flavor_id(self) -> str:
        flavors = self.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
        return str(flavors[0]["flavor_id"])

    def create(self, **overrides: Any) -> dict[str, Any]:
        body = endpoint_body(self.flavor_id(), **overrides)
        response = self.call("POST", "/v1/inference-service", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def get(self, service_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/v1/inference-service/{service_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_status(self, service_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            endpoint = self.get(service_id)
            return endpoint if endpoint["status"] == status else None

        result: dict[str, Any] = wait_for(reached, timeout=timeout, what=f"status {status!r}")
        return result

    def gateway(self, service_id: str, path: str = "", **kwargs: Any) -> requests.Response:
        method = kwargs.pop("method", "GET")
        suffix = f"/{path}" if path else ""
        return self.call(
            method, f"/inference-api/v1/inference_service/{service_id}{suffix}", **kwargs
        )


def endpoint_body(flavor_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "flask-server",
        "description": "test",
        "payment_type": "usd",
        "resource_metadata": {
            "flavor_id": flavor_id,
            "scale_type": "manual",
            "target_instance_number": 1,
        },
        "deploy_metadata": {
            "image_url": "python:3.10-slim",
            "command": FLASK_COMMAND,
            "port": 8080,
            "gpu_num": 0,
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def new_user_token(admin: ApiClient, name: str) -> str:
    user = admin.call("POST", "/v1/users", json={"name": name})
    assert user.status_code == 201, user.text
    response = admin.call("POST", "/v1/tokens", json={"user_id": user.json()["user_id"]})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])
