"""The route table as JSON: what the control plane sends standalone gateways, and the
file a gateway can be given instead.

Tokens travel as sha256 digests (``token_sha256``), never in clear; a static
file may also list plain ``tokens``, hashed on load. ``version`` is a digest of
the content, so a gateway asks "anything newer than V?" and an unchanged table
costs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from types import MappingProxyType
from typing import Any

from moorage.routing.schema import parse_route_table
from moorage.routing.table import EndpointRoute, ReplicaRoute, RouteTable
from moorage.tokens import hash_token


def table_to_json(table: RouteTable) -> dict[str, Any]:
    endpoints = [
        {
            "service_id": route.service_id,
            "token_sha256": sorted(route.owner_token_hashes),
            "replicas": [
                {"replica_id": r.replica_id, "address": r.address} for r in route.replicas
            ],
            "status": route.status_hint,
            "gateway_metadata": dataclasses.asdict(route.admission),
            "scales_from_zero": route.scales_from_zero,
            "cannot_start": route.cannot_start,
        }
        for route in sorted(table.endpoints.values(), key=lambda r: r.service_id)
    ]
    body: dict[str, Any] = {
        "endpoints": endpoints,
        "known_token_sha256": sorted(table.known_token_hashes),
    }
    body["version"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


def table_from_json(body: Any, source: str) -> RouteTable:
    """Reads a table; a malformed one raises ``MoorageError`` naming ``source`` and
    each wrong field (``routing/schema.py``)."""
    parsed = parse_route_table(body, source)
    routes: dict[str, EndpointRoute] = {}
    known: set[str] = set(parsed.known_token_sha256)
    for entry in parsed.endpoints:
        hashes = frozenset({*entry.token_sha256, *map(hash_token, entry.tokens)})
        routes[entry.service_id] = EndpointRoute(
            service_id=entry.service_id,
            owner_token_hashes=hashes,
            replicas=tuple(
                ReplicaRoute(r.replica_id or f"r{i}", r.address)
                for i, r in enumerate(entry.replicas)
            ),
            status_hint=entry.status,
            admission=entry.gateway_metadata.to_settings(),
            scales_from_zero=entry.scales_from_zero,
            cannot_start=entry.cannot_start,
        )
        known |= hashes
    return RouteTable(MappingProxyType(routes), frozenset(known))
