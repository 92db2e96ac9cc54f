"""An endpoint as the API answers it, built in memory for tests of what clients do with
one (the CLI's lines, the SDK's waits) without a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moorage.api.schemas import Endpoint

# (state, revision, last_failure) of each replica, in order.
ReplicaSpec = tuple[str, int, str | None]


def endpoint_object(
    *,
    status: str = "initializing",
    info: str | None = None,
    wanted: int = 2,
    revision: int = 1,
    replicas: Sequence[ReplicaSpec] = (),
    deleted: bool = False,
    price_per_hour: float = 0.0,
) -> Endpoint:
    listed: list[dict[str, Any]] = [
        {
            "replica_id": f"{n % 10}" * 32,
            "state": state,
            "address": None,
            "revision": of,
            "since": None,
            "last_failure": failure,
        }
        for n, (state, of, failure) in enumerate(replicas)
    ]
    return Endpoint.model_validate(
        {
            "service_id": "s1",
            "name": "web",
            "description": "",
            "user_id": "u1",
            "status": status,
            "status_info": info,
            "resource_metadata": {
                "resource_display_name": "CPU",
                "scale_type": "manual",
                "flavor_id": "cpu",
                "target_instance_number": wanted,
                "scale_policy": None,
                "VRAM": None,
                "image_size": None,
            },
            "billing_metadata": {
                "payment_type": "usd",
                "price_per_instance_hour": 0.05,
                "instance_number": wanted,
                "price_per_hour": price_per_hour,
                "cost_so_far": 0,
                "cost_this_month": 0,
            },
            "endpoint_metadata": {
                "endpoint_url": "http://127.0.0.1:8080/inference-api/v1/inference_service/s1",
                "ready_replicas": sum(1 for state, _, _ in replicas if state == "ready"),
                "replicas": listed,
            },
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": None,
                "port": 8080,
                "gpu_num": 0,
                "env": {},
                "readiness_probe": {},
                "resources": {},
                "args": [],
                "volumes": [],
                "shm_size_mb": None,
                "revision": revision,
            },
            "gateway_metadata": {},
            "service_type": "custom",
            "created_at": None,
            "updated_at": None,
            "deleted_at": None,
            "is_deleted": deleted,
            "payment_type": "usd",
        }
    )
