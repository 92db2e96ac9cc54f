"""``moorage serve`` on a port something else holds: it says so and creates nothing."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.server import MOORAGE, MoorageServer


def test_a_port_in_use_is_refused_before_any_token_or_store_is_made(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = int(holder.getsockname()[1])
        server = MoorageServer(
            home=home, database_url=f"sqlite:///{home / 'moorage.db'}", admin_token=None, port=port
        )

        result = subprocess.run(
            [MOORAGE, "serve"], env=server.env(), capture_output=True, text=True, timeout=60
        )

    assert result.returncode != 0
    assert result.stdout == ""  # no admin token, no URL
    said = " ".join(result.stderr.split())
    assert f"127.0.0.1:{port}" in said
    assert "already in use" in said
    assert "--port" in said
    assert "admin token" not in said
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert not home.exists() or not any(home.iterdir())
