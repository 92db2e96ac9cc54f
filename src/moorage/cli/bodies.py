"""The API bodies ``moorage endpoints create`` and ``update`` send, from their flags.

Pure: a flag a person left out is left out of the body (the server's default
holds), and a malformed ``--env`` is a ValueError naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--env: expected NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def create_body(
    *,
    name: str,
    image: str,
    command: str | None,
    port: int,
    flavor_id: str,
    replicas: int,
    gpus: int,
    env: Sequence[str],
    payment_type: str | None,
    description: str | None,
) -> dict[str, Any]:
    """A create body: the reference's shape, with what the flags say."""
    deploy: dict[str, Any] = {"image_url": image, "port": port, "gpu_num": gpus}
    if command is not None:
        deploy["command"] = command
    if env:
        deploy["env"] = parse_env(env)
    body: dict[str, Any] = {
        "name": name,
        "resource_metadata": {
            "flavor_id": flavor_id,
            "scale_type": "manual",
            "target_instance_number": replicas,
        },
        "deploy_metadata": deploy,
    }
    if payment_type is not None:
        body["payment_type"] = payment_type
    if description is not None:
        body["description"] = description
    return body


def update_body(
    *,
    name: str | None = None,
    description: str | None = None,
    image: str | None = None,
    command: str | None = None,
    port: int | None = None,
    flavor_id: str | None = None,
    replicas: int | None = None,
    gpus: int | None = None,
    env: Sequence[str] = (),
) -> dict[str, Any]:
    """A partial update: only the fields given. ``env`` replaces the whole mapping."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    resource: dict[str, Any] = {}
    if flavor_id is not None:
        resource["flavor_id"] = flavor_id
    if replicas is not None:
        resource["target_instance_number"] = replicas
    if resource:
        body["resource_metadata"] = resource
    deploy: dict[str, Any] = {}
    for key, value in (("image_url", image), ("command", command), ("port", port)):
        if value is not None:
            deploy[key] = value
    if gpus is not None:
        deploy["gpu_num"] = gpus
    if env:
        deploy["env"] = parse_env(env)
    if deploy:
        body["deploy_metadata"] = deploy
    return body
