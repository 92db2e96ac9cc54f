"""Every enumerated name moorage reads or writes, in one place.

Endpoint statuses, what a user asked an endpoint to be, a replica's events,
states and failure reasons, an endpoint's own events, and the gateway's
load-balancing policies, usage groupings and spending limits' periods and states: the API,
the store, the route table and the gateway all take these names from here, so
a spelling exists once and a typo is a type error, not a silent mismatch.
Each enum is a ``StrEnum``: its members are the words on the wire and in the
store.
"""

from __future__ import annotations

import enum

__all__ = [
    "BudgetPeriod",
    "BudgetState",
    "DesiredState",
    "EndpointEventKind",
    "EndpointStatus",
    "FailureReason",
    "GroupBy",
    "PolicyName",
    "ReplicaEventKind",
    "ReplicaState",
]


class EndpointStatus(enum.StrEnum):
    """The four statuses of the reference API, in the words it uses."""

    INITIALIZING = "initializing"
    AVAILABLE = "available"
    STOPPED = "stopped"
    UNAVAILABLE = "unavailable"


class DesiredState(enum.StrEnum):
    """What the user last asked for: replicas running, or none. The route table
    carries it as each endpoint's status hint, so the gateway can tell a caller
    that an endpoint is stopped rather than starting."""

    RUNNING = "running"
    STOPPED = "stopped"


class ReplicaEventKind(enum.StrEnum):
    REQUESTED = "requested"
    STARTED = "started"
    READY = "ready"
    UNREADY = "unready"
    FAILED = "failed"
    STOPPED = "stopped"


class EndpointEventKind(enum.StrEnum):
    """Changes to an endpoint itself, as ``endpoint_events`` records them."""

    CREATED = "created"
    SCALED = "scaled"
    UPDATED = "updated"
    STOPPED = "stopped"
    STARTED = "started"
    DELETED = "deleted"
    ROLLOUT_BEGUN = "rollout_begun"
    ROLLOUT_FINISHED = "rollout_finished"
    ROLLED_BACK = "rolled_back"


class FailureReason(enum.StrEnum):
    """Why a replica failed; the first two mean retrying alone will not help."""

    START_ERROR = "start_error"
    NOT_READY = "not_ready"
    EXITED = "exited"
    UNHEALTHY = "unhealthy"

    @property
    def needs_user(self) -> bool:
        return self in (FailureReason.START_ERROR, FailureReason.NOT_READY)


class ReplicaState(enum.StrEnum):
    """The state the last event leaves a replica in."""

    REQUESTED = "requested"
    STARTING = "starting"
    READY = "ready"
    UNREADY = "unready"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_live(self) -> bool:
        """Still part of its endpoint: running, about to run, or waiting to restart."""
        return self is not ReplicaState.STOPPED

    @property
    def has_process(self) -> bool:
        """The runtime should have something running for it."""
        return self in (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNREADY)


class PolicyName(enum.StrEnum):
    """The gateway's load-balancing policies (``gateway/policies.py`` implements one
    per member and checks at import that none is missing)."""

    LEAST_OUTSTANDING = "least_outstanding"
    POWER_OF_TWO = "power_of_two"
    ROUND_ROBIN = "round_robin"


class GroupBy(enum.StrEnum):
    """What usage totals are grouped by (``group_by`` on the usage API)."""

    ENDPOINT = "endpoint"
    DAY = "day"
    FLAVOR = "flavor"
    USER = "user"


class BudgetPeriod(enum.StrEnum):
    """Which usage counts against a spending limit: this UTC calendar month's, or all."""

    MONTH = "month"
    TOTAL = "total"


class BudgetState(enum.StrEnum):
    """Worst last: comparing by position in the enum tells which status matters most."""

    OK = "ok"
    WARNING = "warning"
    EXCEEDED = "exceeded"

    @property
    def rank(self) -> int:
        return list(BudgetState).index(self)
