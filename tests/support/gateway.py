"""A real ``moorage gateway`` in a subprocess, fed a route file or a control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.server import MOORAGE, end_process, free_port, track, untrack, wait_for

PREFIX = "/inference-api/v1/inference_service/"


def endpoint(
    service_id: str,
    replicas: list[str],
    token: str = "gateway-test-token",
    **gateway_metadata: Any,
) -> dict[str, Any]:
    """One entry of a route file."""
    return {
        "service_id": service_id,
        "tokens": [token],
        "replicas": replicas,
        "gateway_metadata": gateway_metadata,
    }


@dataclass
class StandaloneGateway:
    """``moorage gateway`` on a free port; ``url(service_id, path)`` is where to call."""

    workdir: Path
    endpoints: list[dict[str, Any]] | None = None
    control_plane: str | None = None
    token: str | None = None
    workers: int = 1
    args: list[str] = field(default_factory=list)  # more options, e.g. limits
    env: dict[str, str] = field(default_factory=dict)  # more environment, e.g. MOORAGE_*
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, service_id: str, path: str = "") -> str:
        return f"{self.base}{PREFIX}{service_id}/{path}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.port}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self) -> list[str]:
        command = [MOORAGE, "gateway", "--port", str(self.port), "--workers", str(self.workers)]
        if self.endpoints is not None:
            routes = self.workdir / f"routes-{self.port}.json"
            routes.write_text(json.dumps({"endpoints": self.endpoints}))
            command += ["--routes", str(routes)]
        if self.control_plane is not None:
            command += ["--control-plane", self.control_plane]
        if self.token is not None:
            command += ["--token", self.token]
        return command + self.args

    def start(self) -> StandaloneGateway:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        track(self.process, signal.SIGTERM)
        try:  # a gateway that never listens is stopped before the failure is raised
            wait_for(self._healthy, timeout=60, what=f"moorage gateway to listen\n{self.log()}")
        except BaseException:
            end_process(self.process, signal.SIGTERM, timeout=20)
            raise
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"moorage gateway exited early:\n{self.log()}")
        try:  # a timeout (a loaded machine) means "not yet", like a refused connection
            return requests.get(self.base + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is not None:
            untrack(self.process)
            return self.process.returncode
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            end_process(self.process, signal.SIGKILL, timeout=10)
            raise AssertionError(
                f"moorage gateway did not stop on {sig.name}:\n{self.log()}"
            ) from None
        untrack(self.process)
        return code

    def __enter__(self) -> StandaloneGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
