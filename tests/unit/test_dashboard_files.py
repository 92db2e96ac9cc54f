"""The dashboard's files as shipped in the package: what they may and may not contain,
and what the routes that serve them answer (``api/dashboard.py``)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from fastapi import FastAPI

from moorage.api import dashboard
from moorage.api.errors import install_error_handlers

FILES = dashboard.load_files()
SCRIPTS = {name: body.decode() for name, (body, _) in FILES.items() if name.endswith(".js")}
# Ways to turn data into markup or code: the scripts use textContent instead.
FORBIDDEN = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(")


def _get(path: str, method: str = "GET") -> httpx.Response:
    """One request to an app that has the dashboard's routes only (in process)."""
    app = FastAPI(redirect_slashes=False)  # as create_api builds it
    install_error_handlers(app)
    dashboard.install(app)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://moorage") as client:
            return await client.request(method, path)

    return asyncio.run(call())


def test_the_package_holds_the_page_its_scripts_and_styles() -> None:
    assert {"index.html", "app.js", "app.css", "api.js", "traffic.js", "edit.js"} <= set(FILES)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_script_parses_data_as_html(name: str) -> None:
    for word in FORBIDDEN:
        assert word not in SCRIPTS[name], f"{name} uses {word}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_import_only_packaged_modules(name: str) -> None:
    for target in re.findall(r"""^import .* from "([^"]+)";""", SCRIPTS[name], re.MULTILINE):
        assert target.startswith("./"), (name, target)
        assert target[2:] in FILES, (name, target)


def test_nothing_is_loaded_from_elsewhere() -> None:
    for name, (body, _) in FILES.items():
        text = body.decode()
        if name.endswith(".svg"):
            text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name
        assert "localStorage" not in text, f"{name}: the token is kept per tab only"


def test_the_page_has_no_inline_script_or_style() -> None:
    page = FILES["index.html"][0].decode()
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="/ui/app.js">']
    assert "<style" not in page
    assert " style=" not in page
    assert re.search(r" on[a-z]+=", page) is None
    assert '<meta name="viewport"' in page


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/app.js", "/ui/app.css"])
def test_served_with_strict_headers(path: str) -> None:
    answer = _get(path)
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == dashboard.CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in dashboard.CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in dashboard.CONTENT_SECURITY_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../dashboard.py",
        "/ui/%2e%2e/dashboard.py",
        "/ui/..%2fdashboard.py",
        "/ui/%2e%2e%2fapp.py",
        "/ui/__init__.py",
        "/ui/nothing.js",
        "/ui/.hidden.js",
        "/ui/app.js/",
    ],
)
def test_only_the_table_is_served(path: str) -> None:
    answer = _get(path)
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


def test_other_methods_are_refused_naming_the_allowed_ones() -> None:
    answer = _get("/ui", "POST")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert answer.json()["message"] == "POST is not allowed here; use GET, HEAD"
    assert _get("/ui/app.js", "HEAD").status_code == 200
