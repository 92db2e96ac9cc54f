"""The layers of ``src/moorage`` import downward only; read from the source with ``ast``.

A package may import its own modules and those of strictly lower layers, never a
peer's: the API, the controller and the gateway meet only in ``routing`` (the
route table) and the store, so each can later run as a process of its own. The
API and the services name users, tokens and flavors by their ``models`` types;
from the store they take only repositories and ``Database``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import moorage

SRC = Path(moorage.__file__).parent

# Lowest first. A top-level module or package missing here fails the test: give it
# the layer of the lowest thing that may import it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"__init__", "errors", "clock", "wire", "tokens", "logformat", "secretbox", "fakellm"}
    ),
    frozenset({"settings"}),
    frozenset({"models"}),
    frozenset({"routing", "lifecycle", "refusals", "inventory"}),
    frozenset({"store"}),
    frozenset({"runtimes"}),
    frozenset({"services", "controller", "gateway"}),
    frozenset({"api"}),
    frozenset({"sdk"}),  # the Python client: the API's response models, over HTTP
    frozenset({"composition"}),  # the composition root
    frozenset({"runner"}),  # runs what composition.py built
    frozenset({"cli"}),
)
# Never import one another, whatever their layers: each becomes a process of its own.
APART = frozenset({"api", "controller", "gateway"})
# ``import moorage`` offers the SDK (``from moorage import Client``): the root package
# names it for type checkers and loads it on first use, never at import, so the
# server's modules, which all import the root package, never load the client.
REEXPORT = ("moorage", "moorage.sdk")
# Store names the API and the services may import: a repository, or the database.
STORE_CLIENTS = frozenset({"api", "services"})


@dataclass(frozen=True)
class Import:
    where: str  # file:line, for the message
    importer: str  # dotted module name of the importing file
    target: str  # dotted module imported from
    name: str | None  # the name taken from it (None for ``import x``)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative).is_dir()


def imports_of(module: str, source: str, where: str) -> Iterator[Import]:
    """Every ``moorage`` import in ``source`` (under ``TYPE_CHECKING`` too)."""
    package = module.split(".") if where.endswith("__init__.py") else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("moorage"):
                    yield Import(f"{where}:{node.lineno}", module, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("moorage"):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if _is_module(submodule):
                    yield Import(f"{where}:{node.lineno}", module, submodule, None)
                else:
                    yield Import(f"{where}:{node.lineno}", module, base, alias.name)


def layer_of(dotted: str) -> tuple[str, int]:
    parts = dotted.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return top, rank
    raise AssertionError(f"moorage.{top} has no layer: add it to LAYERS in {__file__}")


def violation(found: Import) -> str | None:
    """What is wrong with one import, or None."""
    own, own_rank = layer_of(found.importer)
    other, other_rank = layer_of(found.target)
    if own == other or (found.importer, found.target) == REEXPORT:
        return None
    if own in APART and other in APART:
        return f"{found.where}: {own}/ imports {found.target} (they meet in routing/ only)"
    if other_rank >= own_rank:
        relation = "a peer" if other_rank == own_rank else "a layer above it"
        return f"{found.where}: {own}/ imports {found.target} ({other}/ is {relation})"
    if own in STORE_CLIENTS and other == "store":
        allowed = found.target == "moorage.store.db" or (
            found.name is not None and found.name.endswith("Repository")
        )
        if not allowed:
            what = found.name or found.target
            return (
                f"{found.where}: {own}/ imports {what} from the store; take the type from "
                "models/ (only repositories and Database come from store/)"
            )
    return None


def all_imports() -> Iterator[Import]:
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        where = str(path.relative_to(SRC.parent.parent))
        yield from imports_of(_module_name(path), path.read_text(), where)


def test_every_import_points_down_a_layer() -> None:
    problems = [p for found in all_imports() if (p := violation(found)) is not None]
    assert problems == []


def test_every_package_and_module_has_a_layer() -> None:
    tops = {p.stem for p in SRC.glob("*.py")} | {
        p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    for top in sorted(tops):
        layer_of(f"moorage.{top}")


def _problems(module: str, source: str) -> list[str]:
    found = imports_of(module, source, "x.py")
    return [p for i in found if (p := violation(i)) is not None]


def test_the_check_catches_each_kind_of_wrong_import() -> None:
    """The rules above would pass vacuously if the parser saw no imports."""
    assert len(list(all_imports())) > 200
    assert _problems("moorage.gateway.router", "from moorage.api.app import create_api")
    assert _problems("moorage.gateway.router", "from moorage.controller import plan")
    assert _problems("moorage.api.app", "import moorage.gateway.metrics")
    assert _problems("moorage.controller.plan", "from moorage.gateway.dispatch import Lease")
    assert _problems("moorage.services.accounts", "from moorage.store.accounts import User")
    assert _problems("moorage.api.render", "from moorage.store import tables")
    assert _problems("moorage.models.status", "from moorage.services.endpoints import x")
    assert _problems("moorage.routing.table", "from ..store.db import Database")


def test_the_check_allows_what_the_layers_allow() -> None:
    assert not _problems("moorage.services.accounts", "from moorage.store.db import Database")
    assert not _problems(
        "moorage.services.accounts", "from moorage.store.accounts import AccountRepository"
    )
    assert not _problems("moorage.controller.reconciler", "from moorage.store.endpoints import X")
    assert not _problems("moorage.gateway.router", "from moorage.routing.table import RouteTable")
    assert not _problems("moorage.api.app", "from . import schemas")
