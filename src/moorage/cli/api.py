"""``moorage api``: the control API alone (several may run behind a load balancer)."""

from __future__ import annotations

from typing import Annotated

import typer

from moorage.cli.serve import load_settings, port_taken_or_exit, start_failed
from moorage.errors import MoorageError


def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MOORAGE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [MOORAGE_PORT].")] = None,
) -> None:
    """Run the control API alone (/v1, /docs, /metrics, /ui); `moorage controller` runs
    the endpoints and `moorage gateway` serves their traffic.

    Configured by the environment, as every part is (docs/deploy.md): MOORAGE_DATABASE_URL,
    MOORAGE_ADMIN_TOKEN, MOORAGE_SECRETS_KEY, MOORAGE_PUBLIC_URL, and the runtime it reads
    replicas' logs through (MOORAGE_RUNTIME, MOORAGE_DOCKER_HOST, MOORAGE_RAY_*)."""
    from moorage import logformat, runner
    from moorage.cli.serve import announce
    from moorage.composition import MoorageServer

    settings = load_settings({"host": host, "port": port})
    port_taken_or_exit(settings)
    logformat.configure(settings.log_format)
    try:
        server = MoorageServer(settings, role="api")
        generated = server.prepare()
    except MoorageError as exc:
        start_failed(settings, exc)
    announce(settings, server.runtime.name, generated, what="moorage api", role="API /v1")
    try:
        runner.run(server)
    except MoorageError as exc:
        start_failed(settings, exc)
    except OSError as exc:
        start_failed(
            settings,
            MoorageError(
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                "pick another with --port or MOORAGE_PORT"
            ),
        )
