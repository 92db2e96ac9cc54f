"""``moorage controller``: the endpoints' controller alone; of several, one leads."""

from __future__ import annotations

import asyncio
import logging

import typer

from moorage.cli.serve import load_settings, start_failed
from moorage.errors import MoorageError

log = logging.getLogger("moorage.controller")


def controller() -> None:
    """Run the controller alone: replicas, usage, spending limits, autoscaling. Of the
    controllers of one store, one leads and the others stand by to take over; stopping
    one leaves its replicas running.

    Configured by the environment, as every part is (docs/deploy.md): MOORAGE_DATABASE_URL,
    MOORAGE_SECRETS_KEY, MOORAGE_CONTROLLER_ID, MOORAGE_LEADER_LEASE_S and _RENEW_S, the
    runtime (MOORAGE_RUNTIME, MOORAGE_DOCKER_HOST, MOORAGE_RAY_ADDRESS and MOORAGE_RAY_*)."""
    from moorage import logformat
    from moorage.composition import ControllerProcess

    settings = load_settings({})
    logformat.configure(settings.log_format)
    try:
        process = ControllerProcess(settings)
        process.prepare()
    except MoorageError as exc:
        start_failed(settings, exc)
    log.info(
        "controller %s started (runtime %s, lease %g s); waiting for the lease",
        process.name,
        process.runtime.name,
        settings.leader_lease_s,
    )
    try:
        asyncio.run(process.run())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
