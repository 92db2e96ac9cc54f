"""The web dashboard at ``/ui``: static files from the package, nothing else.

The dashboard is a client of the public API like any other: its JavaScript
sends the user's own token with every call and the server keeps no session for
it, so it needs no privilege and no route of its own beyond its files. Those are
read once from ``api/ui/`` into a fixed table, and a request names an entry of
that table or gets 404: no path from a request ever reaches the file system.

Endpoint names, ``status_info`` and logs are written by tenants and an admin may
view them, so every page goes out with a Content-Security-Policy that allows
only the package's own scripts and styles (no inline code, no other origin, no
framing), and the scripts build the DOM with ``textContent`` only.
"""

from __future__ import annotations

import re
from importlib import resources

from fastapi import FastAPI, HTTPException, Response

# Names the table may hold: flat, lowercase, one known extension.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|css|js|svg)$")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # A new moorage's files are fetched again, not taken from a stale cache.
    "Cache-Control": "no-cache",
}
INDEX = "index.html"
METHODS = ["GET", "HEAD"]


def load_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files by name, with their content types."""
    folder = resources.files("moorage.api").joinpath("ui")
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[match.group(1)])
    if INDEX not in files:
        raise RuntimeError(f"the dashboard's {INDEX} is missing from the moorage package")
    return files


def install(app: FastAPI) -> None:
    """Adds ``GET /ui`` (the page) and ``GET /ui/{name}`` (its scripts and styles)."""
    files = load_files()

    def serve(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise HTTPException(status_code=404)
        body, content_type = found
        return Response(body, media_type=content_type, headers=SECURITY_HEADERS)

    @app.api_route("/ui", methods=METHODS, include_in_schema=False)
    def page() -> Response:
        return serve(INDEX)

    @app.api_route("/ui/", methods=METHODS, include_in_schema=False)
    def page_slash() -> Response:
        return serve(INDEX)

    @app.api_route("/ui/{name}", methods=METHODS, include_in_schema=False)
    def asset(name: str) -> Response:
        return serve(name)
