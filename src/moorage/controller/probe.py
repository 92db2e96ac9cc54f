"""Readiness: a replica is ready once its app answers HTTP with a status below 500.

Any answer below 500 counts (a Flask app with no ``/`` route answers 404, and
is up); 5xx is what model servers send while weights still load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

PROBE_PATH = "/"


class ReadinessProber:
    def __init__(self, timeout_s: float = 2.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    async def probe(self, address: str) -> bool:
        try:
            response = await self._client.get(f"http://{address}{PROBE_PATH}")
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    async def probe_all(self, addresses: Mapping[str, str]) -> dict[str, bool]:
        ids = list(addresses)
        results = await asyncio.gather(*(self.probe(addresses[i]) for i in ids))
        return dict(zip(ids, results, strict=True))

    async def close(self) -> None:
        await self._client.aclose()
