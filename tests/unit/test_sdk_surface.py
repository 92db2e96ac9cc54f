"""The SDK's public face: what ``import moorage`` offers, and what the SDK is built on.

``moorage.__all__`` is a promise to users: a name leaving it breaks their code, so the
list is spelled out here and changes only on purpose. The SDK reads the server's own
response models and nothing else of the server: it must run where only the API's
HTTP is reachable.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import moorage
import moorage.sdk

PUBLIC = {
    "__version__",
    "ApiError",
    "AsyncClient",
    "Budget",
    "BudgetList",
    "Client",
    "CreateEndpointRequest",
    "Endpoint",
    "EndpointEvent",
    "EndpointPage",
    "EventPage",
    "Flavor",
    "IssuedToken",
    "MoorageError",
    "Quota",
    "Token",
    "UpdateEndpointRequest",
    "UsageReport",
    "User",
    "WaitFailed",
    "WaitTimeout",
}
# What of the server the SDK may import: the response and request models.
SDK_MAY_IMPORT = (
    "moorage.sdk",
    "moorage.api.schemas",
    "moorage.api.account_schemas",
    "moorage.models",
)


def test_the_public_names_are_exactly_these() -> None:
    assert set(moorage.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(moorage, name) is not None
    assert moorage.Client is moorage.sdk.Client
    assert set(moorage.__all__) - {"__version__"} <= set(moorage.sdk.__all__)


def test_every_name_the_sdk_exports_exists() -> None:
    for name in moorage.sdk.__all__:
        assert hasattr(moorage.sdk, name), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = moorage.NoSuchThing


def test_importing_moorage_does_not_load_the_client() -> None:
    """The server imports the root package everywhere; the SDK loads on first use."""
    code = "import sys, moorage; print('moorage.sdk' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = "import sys; from moorage import Client; print('moorage.sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_the_sdk_imports_only_the_servers_models() -> None:
    root = Path(moorage.sdk.__file__).parent
    seen: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("moorage"):
                seen.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                seen.update(a.name for a in node.names if a.name.startswith("moorage"))
    assert seen, "the check found no imports"
    wrong = sorted(m for m in seen if not m.startswith(SDK_MAY_IMPORT))
    assert wrong == []


def test_the_package_says_it_is_typed() -> None:
    """Without py.typed a user's type checker ignores the SDK's annotations."""
    assert (Path(moorage.__file__).parent / "py.typed").is_file()
