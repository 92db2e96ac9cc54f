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

from pydantic import ValidationError

from moorage.errors import MoorageError
from moorage.models.requests import GatewayMetadataIn
from moorage.models.states import DesiredState
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
        }
        for route in sorted(table.endpoints.values(), key=lambda r: r.service_id)
    ]
    body: dict[str, Any] = {
        "endpoints": endpoints,
        "known_token_sha256": sorted(table.known_token_hashes),
    }
    body["version"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


def _replica(index: int, value: Any) -> ReplicaRoute:
    if isinstance(value, str):
        return ReplicaRoute(f"r{index}", value)
    return ReplicaRoute(str(value["replica_id"]), str(value["address"]))


def _listed(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    """A list field; a lone string would otherwise be taken one character at a time."""
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise MoorageError(f"{where}.{key}: give a list, not {type(value).__name__}")
    return value


def _status(entry: dict[str, Any], where: str) -> DesiredState:
    value = entry.get("status", DesiredState.RUNNING)
    try:
        return DesiredState(value)
    except ValueError:
        choices = " or ".join(repr(str(s)) for s in DesiredState)
        raise MoorageError(f"{where}.status: give {choices}, not {value!r}") from None


def table_from_json(body: dict[str, Any], source: str) -> RouteTable:
    """Reads a table; a malformed one raises ``MoorageError`` naming the field."""
    routes: dict[str, EndpointRoute] = {}
    try:
        known: set[str] = set(_listed(body, "known_token_sha256", source))
        for position, entry in enumerate(body["endpoints"]):
            where = f"{source}: endpoints[{position}]"
            tokens = _listed(entry, "tokens", where)
            hashes = {*_listed(entry, "token_sha256", where), *map(hash_token, tokens)}
            if not hashes:
                raise MoorageError(f"{where}: give 'tokens' (or 'token_sha256') allowed to call it")
            try:
                admission = GatewayMetadataIn(**entry.get("gateway_metadata", {})).to_settings()
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(part) for part in error["loc"])
                raise MoorageError(f"{where}.gateway_metadata.{field}: {error['msg']}") from exc
            route = EndpointRoute(
                service_id=str(entry["service_id"]),
                owner_token_hashes=frozenset(hashes),
                replicas=tuple(
                    _replica(i, r) for i, r in enumerate(_listed(entry, "replicas", where))
                ),
                status_hint=_status(entry, where),
                admission=admission,
            )
            routes[route.service_id] = route
            known |= hashes
    except (KeyError, TypeError, AttributeError) as exc:
        raise MoorageError(
            f"{source}: not a route table ({exc!r}); expected "
            '{"endpoints": [{"service_id": ..., "tokens": [...], "replicas": ["host:port"]}]}'
        ) from exc
    return RouteTable(MappingProxyType(routes), frozenset(known))
