"""An endpoint as the user asked for it, and as the store holds it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class EndpointStatus(enum.StrEnum):
    """The four statuses of the reference API, in the words it uses."""

    INITIALIZING = "initializing"
    AVAILABLE = "available"
    STOPPED = "stopped"
    UNAVAILABLE = "unavailable"


class DesiredState(enum.StrEnum):
    """What the user last asked for: replicas running, or none."""

    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeploySpec:
    """What each replica runs; a change to it starts a new revision."""

    image_url: str
    command: str
    port: int
    gpu_num: int = 0
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    service_id: str
    user_id: str
    name: str
    description: str
    payment_type: str
    flavor_id: str
    scale_type: str
    target_instance_number: int
    deploy: DeploySpec
    revision: int
    desired_state: DesiredState
    service_type: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def wanted_replicas(self) -> int:
        """How many replicas the controller should keep running right now."""
        if self.is_deleted or self.desired_state is DesiredState.STOPPED:
            return 0
        return self.target_instance_number
