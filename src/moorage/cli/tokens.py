"""``moorage tokens``: issue tokens on the host moorage runs on, straight in its store."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from moorage.errors import MoorageError

app = typer.Typer(
    help="Manage API tokens (run where moorage keeps its data).", no_args_is_help=True
)
err = Console(stderr=True)


@app.command()
def create(
    user: Annotated[str, typer.Option("--user", help="User name; created if it does not exist.")],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "cli",
) -> None:
    """Create a token for USER and print it on its own line (it is not shown again)."""
    # Imported here: `moorage gateway` shares this CLI and needs none of the store.
    from moorage.clock import SystemClock
    from moorage.services.accounts import AccountService
    from moorage.settings import Settings
    from moorage.store.db import Database

    settings = Settings()
    store_file = settings.home / "moorage.db"
    if settings.database_url is None and not store_file.exists():
        # A new, empty store would issue a token that no running server knows.
        err.print(
            f"[red]error:[/red] no moorage store at {store_file.resolve()}; run this "
            "with the MOORAGE_HOME (or MOORAGE_DATABASE_URL) that `moorage serve` uses"
        )
        raise typer.Exit(2)
    os.umask(0o077)  # like the server: whatever this writes is moorage's alone
    db = Database(settings.resolved_database_url)
    try:
        db.migrate()
        issued = AccountService(db, SystemClock()).create_token(
            user_name=user, name=name, create_user=True
        )
    except MoorageError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    err.print(f"token for user {issued.user.name} ({issued.user.user_id}):")
    print(issued.token, flush=True)
