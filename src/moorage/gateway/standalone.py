"""``moorage gateway``: the gateway alone, scaled out over processes and hosts.

Each worker process runs its own event loop and listens on the same port with
SO_REUSEPORT, so the kernel spreads connections over them. Each worker keeps
its own route table, fed by the control plane (long-polled) or read from a
file; when the control plane cannot be reached the worker keeps serving from
the last table it had. Caps and queues are per worker: with N workers an
endpoint's ``max_concurrency`` holds per worker, so run one worker where the
cap must be exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import re
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST

from moorage import logformat, refusals
from moorage.errors import MoorageError
from moorage.gateway.assembly import build_gateway
from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1 import wire
from moorage.gateway.http1.exchange import Exchange
from moorage.gateway.http1.limits import WireLimits
from moorage.gateway.http1.server import (
    freeze_startup_heap,
    raise_open_file_limit,
)
from moorage.gateway.metrics import GatewayMetrics
from moorage.gateway.router import bearer_token
from moorage.models.requests import MAX_REPORTED_ENDPOINTS
from moorage.routing.codec import table_from_json
from moorage.routing.holder import RouteTableHolder
from moorage.tokens import hash_token

log = logging.getLogger(__name__)
POLL_WAIT_S = 25.0
RETRY_S = 1.0
REPORT_EVERY_S = 1.0


@dataclass(frozen=True)
class GatewayConfig:
    host: str
    port: int
    workers: int = 1
    routes_file: Path | None = None
    control_plane: str | None = None
    token: str | None = None
    limits: WireLimits = field(default_factory=WireLimits)
    log_format: logformat.LogFormat = "text"


def read_routes_file(path: Path) -> RouteTableHolder:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MoorageError(f"cannot read the route table {path}: {exc}") from exc
    holder = RouteTableHolder(live=False)
    holder.swap(table_from_json(body, str(path)))
    return holder


class ControlPlaneFeed:
    """Keeps a worker's route table current from ``GET /v1/gateway/routes``."""

    def __init__(self, holder: RouteTableHolder, base_url: str, token: str) -> None:
        self.holder = holder
        self.url = base_url.rstrip("/") + "/v1/gateway/routes"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.version: str | None = None

    async def run(self) -> None:
        failing = refused = False
        timeout = aiohttp.ClientTimeout(total=POLL_WAIT_S + 10)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            while True:
                params = {"wait": str(POLL_WAIT_S)}
                if self.version is not None:
                    params["version"] = self.version
                try:
                    async with session.get(self.url, headers=self.headers, params=params) as reply:
                        if reply.status in (401, 403):
                            if not refused:  # once, not at every retry
                                log.error(
                                    "the control plane refused the gateway's token (%s); give "
                                    "moorage gateway an admin token with --token",
                                    reply.status,
                                )
                            refused = failing = True  # it was reached: not "cannot reach"
                        reply.raise_for_status()
                        body = await reply.json()
                    self.holder.swap(table_from_json(body, self.url))
                    self.version = body["version"]
                    if failing:
                        log.warning("control plane %s reachable again", self.url)
                    failing = refused = False
                except (aiohttp.ClientError, TimeoutError, MoorageError, ValueError) as exc:
                    if not failing:
                        log.warning(
                            "cannot reach the control plane at %s (%s); serving from the "
                            "last route table until it answers",
                            self.url,
                            exc,
                        )
                    failing = True
                    await asyncio.sleep(RETRY_S)


def gateway_id() -> str:
    """This worker's name in demand reports: host and pid, in the allowed characters."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "gateway"
    return f"{host}:{os.getpid()}"


class DemandReporter:
    """Tells the control plane, every second, what this worker sees of each
    endpoint's load (``POST /v1/gateway/demand``), and at once when it holds a
    request for an endpoint with no replica ready, so that the autoscaler starts
    one without waiting for the next report."""

    def __init__(self, dispatcher: Dispatcher, base_url: str, token: str) -> None:
        self.dispatcher = dispatcher
        self.url = base_url.rstrip("/") + "/v1/gateway/demand"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.gateway = gateway_id()
        self._soon = asyncio.Event()
        self._reported_any = False

    def soon(self, _service_id: str = "") -> None:
        self._soon.set()

    def body(self) -> dict[str, Any] | None:
        """The report, or None when there is nothing to say (and nothing said before)."""
        seen = self.dispatcher.snapshot().demand().endpoints
        endpoints = {service_id: dataclasses.asdict(demand) for service_id, demand in seen.items()}
        if len(endpoints) > MAX_REPORTED_ENDPOINTS:  # the busiest, within the API's bound
            busiest = sorted(seen, key=lambda s: -(seen[s].in_flight + seen[s].waiting))
            endpoints = {s: endpoints[s] for s in busiest[:MAX_REPORTED_ENDPOINTS]}
        if not endpoints and not self._reported_any:
            return None
        self._reported_any = bool(endpoints)
        return {"gateway": self.gateway, "endpoints": endpoints}

    async def run(self) -> None:
        failing = False
        timeout = aiohttp.ClientTimeout(total=REPORT_EVERY_S * 5)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._soon.wait(), REPORT_EVERY_S)
                self._soon.clear()
                body = self.body()
                if body is None:
                    continue
                try:
                    async with session.post(self.url, headers=self.headers, json=body) as reply:
                        reply.raise_for_status()
                    if failing:
                        log.info("demand reports reach %s again", self.url)
                    failing = False
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if not failing:  # once, not every second
                        log.warning(
                            "cannot report demand to %s (%s); automatic endpoints are "
                            "scaled without this gateway's load until it answers",
                            self.url,
                            exc,
                        )
                    failing = True


def _health(exchange: Exchange) -> None:
    exchange.respond(
        wire.plain_response(200, b'{"status":"ok"}', b"application/json", close=False),
        200,
    )


def _metrics_handler(metrics: GatewayMetrics, token: str | None) -> Callable[[Exchange], None]:
    wanted = hash_token(token) if token else None

    def handle(exchange: Exchange) -> None:
        given = bearer_token(exchange.request.authorization)
        if wanted is not None and (given is None or hash_token(given) != wanted):
            exchange.refuse(refusals.metrics_token_needed())
            return
        body = metrics.render()
        exchange.respond(
            wire.plain_response(200, body, CONTENT_TYPE_LATEST.encode(), close=False), 200
        )

    return handle


async def run_worker(config: GatewayConfig) -> None:
    if config.routes_file is not None:
        holder = read_routes_file(config.routes_file)
        feed = None
    else:
        holder = RouteTableHolder()
        feed = ControlPlaneFeed(holder, config.control_plane or "", config.token or "")
    gateway = build_gateway(
        holder,
        config.limits,
        local=lambda metrics: {
            b"/healthz": _health,
            b"/metrics": _metrics_handler(metrics, config.token),
        },
    )
    proxy = gateway.proxy
    tasks: list[asyncio.Task[None]] = []
    if feed is not None:
        reporter = DemandReporter(
            gateway.dispatcher, feed.url.rsplit("/v1/", 1)[0], config.token or ""
        )
        gateway.router.on_cold_start = reporter.soon
        tasks = [asyncio.create_task(feed.run()), asyncio.create_task(reporter.run())]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await proxy.listen(config.host, config.port, reuse_port=config.workers > 1)
    freeze_startup_heap()
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await proxy.close()


def _worker_main(config: GatewayConfig) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_worker(config))


def run(config: GatewayConfig) -> None:
    """Runs the workers until SIGINT or SIGTERM; each finishes its requests first.
    The log is set up here, as ``moorage serve`` sets up its own; forked workers
    inherit it."""
    logformat.configure(config.log_format)
    if config.routes_file is not None:
        read_routes_file(config.routes_file)  # a broken file fails here, once, clearly
    limit = raise_open_file_limit()
    if limit < 4096:
        log.warning(
            "only %d open files allowed: about %d concurrent streams; raise the hard limit "
            "(ulimit -Hn, or LimitNOFILE= in a systemd unit)",
            limit,
            limit // 2,
        )
    if config.workers == 1:
        _worker_main(config)
        return
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker_main, args=(config,), name=f"gateway-{i}")
        for i in range(config.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(sig: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None:
                os.kill(worker.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
