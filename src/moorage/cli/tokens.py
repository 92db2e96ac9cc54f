"""``moorage tokens``: ``create`` issues a token on the host moorage runs on, straight
in its store (how the first user gets one); ``list`` reads them through the API
(the admin's token)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from moorage.api.schemas import TokenList
from moorage.cli.common import TokenOption, UrlOption, connect
from moorage.cli.output import Format, OutputOption, cell, new_table, show
from moorage.cli.shown import line
from moorage.errors import MoorageError

app = typer.Typer(
    help="Manage API tokens (create: run where moorage keeps its data).", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True, highlight=False)
SERVE_FIRST = (
    "start `moorage serve` with the same MOORAGE_HOME (or MOORAGE_DATABASE_URL) once, "
    "then run this again"
)


@app.command()
def create(
    user: Annotated[str, typer.Option("--user", help="User name; created if it does not exist.")],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "cli",
) -> None:
    """Create a token for USER and print it on its own line (it is not shown again)."""
    # Imported here: `moorage gateway` shares this CLI and needs none of the store.
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from moorage.clock import SystemClock
    from moorage.services.accounts import AccountService
    from moorage.settings import Settings
    from moorage.store.db import Database

    settings = Settings()
    url = make_url(settings.resolved_database_url)
    store_file = Path(url.database or "") if url.get_backend_name() == "sqlite" else None
    if store_file is not None and not store_file.exists():
        # A new, empty store would issue a token that no running server knows.
        err.print(
            line(
                ("error:", "red"),
                f" no moorage store at {store_file.resolve()}; run this with the MOORAGE_HOME "
                f"(or MOORAGE_DATABASE_URL) that `moorage serve` uses, or {SERVE_FIRST}",
            )
        )
        raise typer.Exit(2)
    shown = url.render_as_string(hide_password=True)
    os.umask(0o077)  # like the server: whatever this writes is moorage's alone
    db = Database(settings.resolved_database_url)
    try:
        try:
            with db.engine.connect() as connection:
                has_schema = inspect(connection).has_table("alembic_version")
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            err.print(
                line(
                    ("error:", "red"),
                    f" cannot open the moorage store {shown}: {reason}; check "
                    f"MOORAGE_DATABASE_URL, or {SERVE_FIRST}",
                )
            )
            raise typer.Exit(2) from None
        if not has_schema:
            # Migrating here would make a store no running server uses.
            err.print(
                line(
                    ("error:", "red"),
                    f" the database {shown} holds no moorage store yet; {SERVE_FIRST}",
                )
            )
            raise typer.Exit(2)
        db.migrate()
        issued = AccountService(db, SystemClock()).create_token(
            user_name=user, name=name, create_user=True
        )
    except MoorageError as exc:
        err.print(line(("error:", "red"), f" {exc.message}"))
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    err.print(line(f"token for user {issued.user.name} ({issued.user.user_id}):"))
    print(issued.token, flush=True)


def tokens_table(found: TokenList) -> Table:
    table = new_table("TOKEN ID", "USER ID", "NAME", "PREFIX", "CREATED", "REVOKED")
    for t in found.token_list:
        table.add_row(
            t.token_id, t.user_id, cell(t.name), t.prefix, cell(t.created_at), cell(t.revoked_at)
        )
    return table


@app.command("list")
def list_(
    output: OutputOption = Format.table, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List every token (the admin's token; never the tokens themselves)."""
    with connect(url, token) as client:
        found = TokenList(token_list=client.list_tokens())
        show(found, output, lambda: tokens_table(found))
