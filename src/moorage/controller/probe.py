"""Readiness probing: which replicas to probe this pass, and what they answered.

A replica is ready while its app answers ``GET <readiness_probe.path>`` with a
status below 500 within ``timeout_s`` (a Flask app without that route answers
404, and is up; 5xx is what model servers send while weights still load).
The prober keeps, per replica, when it was last probed and how many probes in
a row it has failed; ``plan`` decides what those numbers mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from moorage.controller.plan import due_for_probe
from moorage.models.endpoints import Endpoint
from moorage.models.replicas import Replica
from moorage.runtimes.base import Observed


@dataclass(frozen=True)
class ProbeRound:
    results: Mapping[str, bool]
    failures_in_a_row: Mapping[str, int]


class ReadinessProber:
    def __init__(self) -> None:
        self._client = httpx.AsyncClient(trust_env=False)
        self._last: dict[str, datetime] = {}
        self._failures: dict[str, int] = {}

    async def probe(self, url: str, timeout_s: float) -> bool:
        try:
            response = await self._client.get(url, timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    async def run(
        self,
        endpoints: Mapping[str, Endpoint],
        replicas: Sequence[Replica],
        observed: Mapping[str, Observed],
        now: datetime,
    ) -> ProbeRound:
        due: dict[str, tuple[str, float]] = {}
        for replica in replicas:
            endpoint = endpoints.get(replica.endpoint_id)
            seen = observed.get(replica.replica_id)
            if endpoint is None or seen is None or not seen.running or not seen.address:
                continue
            probe = endpoint.deploy.readiness_probe
            if due_for_probe(replica, probe, self._last.get(replica.replica_id), now):
                due[replica.replica_id] = (f"http://{seen.address}{probe.path}", probe.timeout_s)
        ids = list(due)
        answers = await asyncio.gather(*(self.probe(*due[i]) for i in ids))
        results = dict(zip(ids, answers, strict=True))
        for replica_id, ok in results.items():
            self._last[replica_id] = now
            self._failures[replica_id] = 0 if ok else self._failures.get(replica_id, 0) + 1
        live = {r.replica_id for r in replicas}
        for gone in [k for k in self._last if k not in live]:
            self._last.pop(gone, None)
            self._failures.pop(gone, None)
        return ProbeRound(results, dict(self._failures))

    async def close(self) -> None:
        await self._client.aclose()
