"""Automatic scaling you can see: how fast an endpoint grows under a load step, what
its users' time to first token does meanwhile, and what a burst at zero replicas gets.

One command:

    .venv/bin/python bench/autoscale.py [--quick] [--startup-s 5] [--max-concurrency 4]

It starts ``moorage serve`` (process runtime, a fresh MOORAGE_HOME, an admin token and
a normal user, whose replicas run sandboxed) and creates two automatic endpoints whose
replicas run the fake LLM server (``moorage.fakellm``), which sleeps ``--startup-s``
before it listens (model loading) and then streams chat completions with vLLM's
timing: ``max_num_seqs`` running at once, the rest queued in the replica.

1. **A load step** (metric concurrency, target 4 per replica, 1 to 5 replicas, the
   other fields at their defaults): open-loop Poisson arrivals of streaming chat
   completions through the gateway, 2 requests/s (one replica's work) then 10/s
   (three to four replicas' work). From the step, a monitor polling every 0.25 s
   sees the count asked for change (the decision; the event's own stamp, to the
   second, is printed beside it), the new replica ready (``ready_replicas``) and the
   gateway sending it requests (``moorage_gateway_replica_in_flight`` at the admin's
   ``/metrics``). Each figure is up to 0.25 s late.
2. **TTFT over the same step**: the time from sending a request to its first
   content chunk, p50/p95/p99, and errors (a status other than 200, or a stream cut
   before ``[DONE]``), for requests sent before the step, in its first 30 s (the
   ramp) and after.
3. **Scale from zero**: an endpoint with ``min_instances`` 0, idle until it runs no
   replica, then 50 streaming requests at once: how many fail, when the first
   token comes, and the latency of all 50 (the cold start included).

By default the gateway caps nothing, so requests queue inside the replicas (as
vLLM's do); ``--max-concurrency N`` sets ``gateway_metadata.max_concurrency`` to N
per replica and the metric to ``queue``, so requests beyond a replica's batch wait
at the gateway and go to whichever replica frees a slot first, new ones included.

Beside moorage, each table gives the peers' published defaults, which are not
measured here. ``--quick`` shortens every phase for a smoke test (about 2 minutes);
the full run takes about 4. Timings move with the CPU: the load generator, the
replicas and moorage share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from moorage.fakellm.command import fake_llm_command

sys.path.insert(0, str(Path(__file__).parent))
from backends import Server, moorage_serve

BASE = "/v1/inference-service"
POLL_S = 0.25
REQUEST_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class FakeModel:
    """The replica: how long it loads and how much it serves."""

    startup_s: float
    max_num_seqs: int = 4
    ttft_overhead_ms: float = 20.0
    itl_ms: float = 20.0
    itl_load_factor: float = 0.1
    output_tokens: int = 50

    def command(self) -> str:
        return str(
            fake_llm_command(
                startup_s=self.startup_s,
                max_num_seqs=self.max_num_seqs,
                ttft_overhead_ms=self.ttft_overhead_ms,
                itl_ms=self.itl_ms,
                itl_load_factor=self.itl_load_factor,
            )
        )

    def full_batch_s(self) -> float:
        """One request's time when ``max_num_seqs`` run at once."""
        itl = self.itl_ms * (1 + self.itl_load_factor * (self.max_num_seqs - 1))
        return (self.ttft_overhead_ms + self.output_tokens * itl) / 1000

    def describe(self) -> str:
        return (
            f"fake LLM server: loads for {self.startup_s:g} s (port closed, readiness "
            f"probe /health every 0.5 s), max_num_seqs {self.max_num_seqs}, TTFT "
            f"{self.ttft_overhead_ms:g} ms, ITL {self.itl_ms:g} ms x (1 + "
            f"{self.itl_load_factor:g} x (running - 1)), {self.output_tokens} output tokens: "
            f"{self.full_batch_s():.2f} s a request at a full batch, so about "
            f"{self.max_num_seqs / self.full_batch_s():.1f} requests/s per replica"
        )


@dataclass(frozen=True)
class Plan:
    before_s: float
    ramp_s: float
    after_s: float
    low_rps: float = 2.0
    high_rps: float = 10.0
    burst: int = 50


FULL = Plan(before_s=60, ramp_s=30, after_s=60)
QUICK = Plan(before_s=15, ramp_s=15, after_s=10)

STEP_POLICY: dict[str, Any] = {
    "metric": "concurrency",
    "target": 4,
    "min_instances": 1,
    "max_instances": 5,
}
ZERO_POLICY: dict[str, Any] = {
    "metric": "concurrency",
    "target": 4,
    "min_instances": 0,
    "max_instances": 3,
    "scale_down_delay_s": 3,
    "window_s": 2,
}

REACTION_PEERS = [
    ("Knative KPA", "panic window 6 s, stable window 60 s"),
    ("SkyServe", "decisions every 20 s, upscale delay 300 s"),
    ("Ray Serve", "upscale_delay_s 30 s"),
    ("dstack", "scale-up delay 5 min"),
    ("HF Inference Endpoints", "checks every 1 min to scale up"),
]
ZERO_PEERS = [
    ("HF Inference Endpoints", "503 during a cold start unless X-Scale-Up-Timeout is sent"),
    ("Knative (activator)", "buffers requests; users report drops at 60 s (serving#13208)"),
]


# --- the server ---------------------------------------------------------------------


class Api:
    """The control plane, as the user and as the admin."""

    def __init__(self, client: httpx.AsyncClient, server: Server) -> None:
        self.client, self.server = client, server
        self.headers = {"Authorization": f"Bearer {server.user}"}

    async def call(self, method: str, path: str, body: object = None) -> Any:
        response = await self.client.request(
            method, self.server.url + path, json=body, headers=self.headers, timeout=30
        )
        if response.status_code != 200:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    async def create(
        self, name: str, policy: dict[str, Any], model: FakeModel, cap: int | None
    ) -> str:
        flavors = await self.call("GET", f"{BASE}/flavor")
        body = {
            "name": name,
            "resource_metadata": {
                "flavor_id": flavors["flavor_list"][0]["flavor_id"],
                "scale_type": "auto",
                "scale_policy": policy,
            },
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": model.command(),
                "port": 8000,
                "readiness_probe": {"path": "/health", "period_s": 0.5},
            },
            "gateway_metadata": {"cold_start_timeout_s": 300, "max_concurrency": cap},
        }
        return str((await self.call("POST", BASE, body))["service_id"])

    async def endpoint(self, service_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"{BASE}/{service_id}"))

    async def events(self, service_id: str) -> list[tuple[float, str]]:
        """(UTC epoch seconds, message), oldest first; stamps are to the second."""
        page = await self.call("GET", f"{BASE}/{service_id}/events?page_size=100")
        return sorted(
            (
                datetime.strptime(item["time"], "%Y-%m-%d %H:%M:%S")
                .replace(tzinfo=UTC)
                .timestamp(),
                str(item["message"]),
            )
            for item in page["event_list"]
        )

    async def in_flight(self, service_id: str) -> dict[str, float]:
        """Requests in flight per replica, from the gateway's metrics (admin only)."""
        response = await self.client.get(
            self.server.url + "/metrics",
            headers={"Authorization": f"Bearer {self.server.admin}"},
            timeout=30,
        )
        found: dict[str, float] = {}
        pattern = re.compile(
            r'^moorage_gateway_replica_in_flight\{(?=[^}]*endpoint="'
            + re.escape(service_id)
            + r'")[^}]*replica="([^"]+)"[^}]*\} (\S+)$'
        )
        for line in response.text.splitlines():
            match = pattern.match(line)
            if match:
                found[match.group(1)] = float(match.group(2))
        return found

    async def until(
        self,
        service_id: str,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
        limit_s: float,
    ) -> None:
        deadline = time.monotonic() + limit_s
        while not condition(await self.endpoint(service_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {limit_s:.0f} s")
            await asyncio.sleep(POLL_S)


# --- the load -------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: float
    ok: bool = False
    first_token: float | None = None
    done: float | None = None
    problem: str = ""

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.sent


async def chat(
    client: httpx.AsyncClient, api: Api, service_id: str, model: FakeModel, number: int
) -> Outcome:
    """One streaming chat completion through the gateway, timed to its first content."""
    url = f"{api.server.url}/inference-api/v1/inference_service/{service_id}/v1/chat/completions"
    body = {
        "model": "fake-llm",
        "messages": [{"role": "user", "content": f"question {number}: tell me about ships"}],
        "max_tokens": model.output_tokens,
        "stream": True,
    }
    outcome = Outcome(sent=time.monotonic())
    try:
        async with client.stream(
            "POST", url, json=body, headers=api.headers, timeout=REQUEST_TIMEOUT_S
        ) as response:
            if response.status_code != 200:
                outcome.problem = f"HTTP {response.status_code}"
                await response.aread()
                return outcome
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    outcome.ok = True
                    break
                if outcome.first_token is None:
                    choices = json.loads(data).get("choices") or [{}]
                    if choices[0].get("delta", {}).get("content"):
                        outcome.first_token = time.monotonic()
            if not outcome.ok:
                outcome.problem = "stream ended before [DONE]"
    except httpx.HTTPError as error:
        outcome.problem = f"{type(error).__name__}: {error}"
    outcome.done = time.monotonic()
    return outcome


async def poisson(
    client: httpx.AsyncClient,
    api: Api,
    service_id: str,
    model: FakeModel,
    rate: Callable[[float], float],
    until: float,
) -> list[Outcome]:
    """Open-loop arrivals: each request is sent on schedule, whatever the others do."""
    rng = random.Random(7)
    tasks: list[asyncio.Task[Outcome]] = []
    next_at = time.monotonic()
    while True:
        next_at += rng.expovariate(rate(next_at))
        if next_at >= until:
            break
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        tasks.append(asyncio.create_task(chat(client, api, service_id, model, len(tasks))))
    return list(await asyncio.gather(*tasks))


@dataclass
class Look:
    at: float
    count: int
    ready: int
    serving: set[str] = field(default_factory=set)


async def watch(api: Api, service_id: str, looks: list[Look], stop: asyncio.Event) -> None:
    """The count asked for, the replicas ready and those the gateway sends requests to."""
    while not stop.is_set():
        endpoint, in_flight = await asyncio.gather(
            api.endpoint(service_id), api.in_flight(service_id)
        )
        looks.append(
            Look(
                at=time.monotonic(),
                count=int(endpoint["resource_metadata"]["target_instance_number"]),
                ready=int(endpoint["endpoint_metadata"]["ready_replicas"]),
                serving={replica for replica, n in in_flight.items() if n > 0},
            )
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)


# --- the figures ----------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Reaction:
    decided: float | None
    event_stamp: float | None
    ready: float | None
    serving: float | None
    all_ready: float | None
    peak: int
    decisions: list[str]


def reaction(
    looks: list[Look], step: float, step_wall: float, events: list[tuple[float, str]]
) -> Reaction:
    before = [look for look in looks if look.at < step]
    after = [look for look in looks if look.at >= step]
    count0 = before[-1].count if before else 1
    ready0 = before[-1].ready if before else 1
    seen: set[str] = set().union(*(look.serving for look in before)) if before else set()

    def first(condition: Callable[[Look], bool]) -> float | None:
        return next((look.at - step for look in after if condition(look)), None)

    peak = max((look.count for look in after), default=count0)
    scaled = [(stamp, message) for stamp, message in events if message.startswith("autoscaled")]
    grown = [(stamp, message) for stamp, message in scaled if stamp >= math.floor(step_wall)]
    return Reaction(
        decided=first(lambda look: look.count > count0),
        event_stamp=grown[0][0] - step_wall if grown else None,
        ready=first(lambda look: look.ready > ready0),
        serving=first(lambda look: bool(look.serving - seen)),
        all_ready=first(lambda look: look.ready >= peak),
        peak=peak,
        decisions=[f"{round(stamp - step_wall):+d} s: {message}" for stamp, message in scaled],
    )


def reaction_table(result: Reaction, model: FakeModel) -> str:
    stamp = "" if result.event_stamp is None else f" (event stamp {round(result.event_stamp):+d} s)"
    rows = [
        [
            "moorage (measured)",
            seconds(result.decided) + stamp,
            seconds(result.ready),
            seconds(result.serving),
            f"{seconds(result.all_ready)} (peak {result.peak})",
        ]
    ]
    load = f"+ model load ({model.startup_s:g} s here)"
    for name, default in REACTION_PEERS:
        rows.append([f"{name} (published default, not measured here)", default, load, "", ""])
    header = [
        "system",
        "step -> scale-up decision",
        "-> new replica ready",
        "-> gateway sends it requests",
        "-> all asked-for replicas ready",
    ]
    return table(header, rows)


def ttft_row(name: str, outcomes: list[Outcome]) -> list[str]:
    ttfts = [o.ttft for o in outcomes if o.ok and o.ttft is not None]
    failed = sum(1 for o in outcomes if not o.ok)
    if not ttfts:
        return [name, str(len(outcomes)), "-", "-", "-", f"{failed}"]
    share = 100 * failed / len(outcomes) if outcomes else 0.0
    return [
        name,
        str(len(outcomes)),
        f"{1000 * percentile(ttfts, 0.5):.0f} ms",
        f"{1000 * percentile(ttfts, 0.95):.0f} ms",
        f"{1000 * percentile(ttfts, 0.99):.0f} ms",
        f"{failed} ({share:.2f}%)",
    ]


def ttft_table(outcomes: list[Outcome], step: float, plan: Plan) -> str:
    ramp_end = step + plan.ramp_s
    phases: list[tuple[str, Callable[[float], bool]]] = [
        (f"moorage, before the step ({plan.low_rps:g}/s)", lambda t: t < step),
        (
            f"moorage, ramp (first {plan.ramp_s:g} s at {plan.high_rps:g}/s)",
            lambda t: step <= t < ramp_end,
        ),
        (f"moorage, after ({plan.high_rps:g}/s)", lambda t: t >= ramp_end),
        ("moorage, the whole step", lambda t: t >= step),
    ]
    rows = [ttft_row(name, [o for o in outcomes if inside(o.sent)]) for name, inside in phases]
    rows.append(
        [
            "llm-d autoscaler, 2 -> 10 rps, 8B model on H100 (published, not measured here)",
            "",
            "211 ms",
            "23.6 s",
            "36 s",
            "1.33%",
        ]
    )
    return table(["phase", "requests", "TTFT p50", "p95", "p99", "errors"], rows)


def problems(outcomes: list[Outcome]) -> str:
    kinds: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            kinds[outcome.problem] = kinds.get(outcome.problem, 0) + 1
    return ", ".join(f"{n} x {kind}" for kind, n in sorted(kinds.items())) or "none"


def zero_table(outcomes: list[Outcome], started: float, model: FakeModel) -> str:
    good = [o for o in outcomes if o.ok and o.first_token is not None and o.done is not None]
    failed = len(outcomes) - len(good)
    if good:
        first = min(o.first_token for o in good if o.first_token is not None) - started
        latencies = [o.done - o.sent for o in good if o.done is not None]
        ttfts = [o.ttft for o in good if o.ttft is not None]
        figures = [
            f"{first:.2f} s",
            f"{percentile(ttfts, 0.5):.2f} s",
            f"{percentile(latencies, 0.5):.2f} s",
            f"{percentile(latencies, 0.99):.2f} s",
        ]
    else:
        figures = ["never", "-", "-", "-"]
    rows = [
        [
            f"moorage (measured, cold start {model.startup_s:g} s)",
            f"{failed} of {len(outcomes)}",
            *figures,
        ]
    ]
    rows += [
        [f"{name} (published, not measured here)", behaviour, "", "", "", ""]
        for name, behaviour in ZERO_PEERS
    ]
    header = ["system", "failed", "first token", "TTFT p50", "latency p50", "latency p99"]
    return table(header, rows)


# --- the run --------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs (nproc), {model}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def endpoints(api: Api) -> AsyncIterator[list[str]]:
    created: list[str] = []
    try:
        yield created
    finally:
        for service_id in created:
            with contextlib.suppress(Exception):
                await api.call("DELETE", f"{BASE}/{service_id}")


def at_zero(endpoint: dict[str, Any]) -> bool:
    return (
        endpoint["resource_metadata"]["target_instance_number"] == 0
        and not endpoint["endpoint_metadata"]["replicas"]
    )


async def run(server: Server, plan: Plan, model: FakeModel, cap: int | None) -> None:
    # With a cap at the gateway, the replicas never hold more than it: the metric is
    # then queue, which also counts the requests the cap holds back.
    metric = {"metric": "queue"} if cap else {}
    policies = ({**STEP_POLICY, **metric}, {**ZERO_POLICY, **metric})
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits) as client, endpoints(Api(client, server)) as made:
        api = Api(client, server)
        step_id = await api.create("autoscale-step", policies[0], model, cap)
        made.append(step_id)
        zero_id = await api.create("autoscale-zero", policies[1], model, cap)
        made.append(zero_id)
        await api.until(
            step_id, lambda e: e["endpoint_metadata"]["ready_replicas"] >= 1, "step ready", 120
        )
        log(f"load step: {plan.low_rps:g}/s for {plan.before_s:g} s, then {plan.high_rps:g}/s")

        looks: list[Look] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(api, step_id, looks, stop))
        begin = time.monotonic()
        step = begin + plan.before_s
        step_wall = time.time() + plan.before_s
        end = step + plan.ramp_s + plan.after_s
        outcomes = await poisson(
            client,
            api,
            step_id,
            model,
            lambda t: plan.low_rps if t < step else plan.high_rps,
            end,
        )
        stop.set()
        await watcher
        result = reaction(looks, step, step_wall, await api.events(step_id))

        log("scale from zero: waiting for the idle endpoint to run no replica")
        await api.until(zero_id, at_zero, "the idle endpoint at zero", 180)
        log(f"scale from zero: {plan.burst} requests at once")
        zero_looks: list[Look] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(api, zero_id, zero_looks, stop))
        started = time.monotonic()
        burst = await asyncio.gather(
            *(chat(client, api, zero_id, model, n) for n in range(plan.burst))
        )
        stop.set()
        await watcher
        zero_events = await api.events(zero_id)
        zero_wall = time.time() - (time.monotonic() - started)

    policy = ", ".join(f"{k} {v}" for k, v in policies[0].items())
    gateway = f"gateway max_concurrency {cap} per replica" if cap else "no gateway cap"

    print(f"machine: {machine()}")
    print(model.describe())
    print(f"gateway_metadata: {gateway}, cold_start_timeout_s 300")
    print(
        f"\n1. Reaction to a load step ({plan.low_rps:g} -> {plan.high_rps:g} requests/s; {policy};"
    )
    print("   the other fields at their defaults; polled every 0.25 s)\n")
    print(reaction_table(result, model))
    print("\nmoorage's decisions (event stamps from the step; stamps are whole seconds):")
    for line in result.decisions:
        print(f"  {line}")
    print("\n2. TTFT over the step (streaming chat completions, open-loop Poisson arrivals)\n")
    print(ttft_table(outcomes, step, plan))
    print(f"\nerrors: {problems(outcomes)}")
    print(f"\n3. Scale from zero ({plan.burst} streaming requests at once at 0 replicas)\n")
    print(zero_table(list(burst), started, model))
    used = set().union(*(look.serving for look in zero_looks))
    peak = max((look.ready for look in zero_looks), default=0)
    print(f"\nreplicas ready at most: {peak}; replicas the gateway sent requests to: {len(used)}")
    for stamp, message in zero_events:
        if message.startswith("autoscaled") and stamp >= math.floor(zero_wall):
            print(f"  {round(stamp - zero_wall):+d} s: {message}")
    print(f"\nerrors: {problems(list(burst))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases, a smoke test")
    parser.add_argument("--startup-s", type=float, default=5.0, help="the fake model's loading")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="gateway_metadata.max_concurrency per replica (then the metric is queue)",
    )
    options = parser.parse_args()
    plan = QUICK if options.quick else FULL
    model = FakeModel(startup_s=options.startup_s)
    if options.max_concurrency is not None and options.max_concurrency < 1:
        parser.error("--max-concurrency: at least 1")
    with moorage_serve("mrg-autoscale-", MOORAGE_QUOTA_FLAVOR_SHARE="1") as server:
        asyncio.run(run(server, plan, model, options.max_concurrency))


if __name__ == "__main__":
    main()
