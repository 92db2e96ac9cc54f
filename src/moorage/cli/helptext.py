"""How ``--help`` names arguments and value types: ``ENDPOINT REPLICAS``, ``TEXT``,
``INTEGER``, no type after a flag, as a command line reads elsewhere.

Typer from 0.2x on labels parameters with Python's annotations (``<str>``,
``<bool>`` even after ``--no-wait`` and ``--help``, ``<list[str]>``, ``<int
range>``) and writes a required argument as ``{endpoint}``; no setting or metavar
changes that for every parameter (``--help`` has none to set). So the few methods
that write those labels are replaced here, once, when the CLI is imported. Each is
replaced only where that Typer has it: an older Typer, which writes click's own
labels, is left as it is.
"""

from __future__ import annotations

from typing import Any

from typer import core

# Typer's label (the annotation's name) and what click writes for it.
_LABELS = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "bool": "BOOLEAN",
    "int range": "INTEGER RANGE",
    "float range": "FLOAT RANGE",
    "Path": "PATH",
    "datetime": "DATETIME",
}


def readable(label: str) -> str:
    """``<str>`` -> ``TEXT``, ``<list[int]>`` -> ``INTEGER`` (the flag repeats),
    ``<table|json|yaml>`` -> ``[table|json|yaml]``."""
    inner = label.removeprefix("<").removesuffix(">")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[len("list[") : -1]
    if inner in _LABELS:
        return _LABELS[inner]
    if "|" in inner:
        return f"[{inner}]"
    return inner.upper()


def _install() -> None:
    parameter: Any = getattr(core, "_TyperParameter", None)
    argument: Any = getattr(core, "TyperArgument", None)
    option: Any = getattr(core, "TyperOption", None)
    if parameter is None or argument is None or option is None:
        return
    if hasattr(parameter, "display_type"):
        typer_label = parameter.display_type

        def display_type(self: Any, ctx: Any) -> str:
            return readable(typer_label(self, ctx))

        parameter.display_type = display_type
    if hasattr(option, "display_type_rich"):
        typer_rich_label = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return None  # --no-wait, --help: a flag takes no value
            label: str | None = typer_rich_label(self, ctx)
            return label

        option.display_type_rich = display_type_rich
    if isinstance(getattr(argument, "display_name_raw", None), property):
        argument.display_name_raw = property(
            lambda self: self.metavar if self.metavar is not None else self.name.upper()
        )
    if hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name: str = self.display_name_raw
            if not self.required:
                name = f"[{name}]"
            return f"{name}..." if self.nargs != 1 else name

        argument._usage_display_name = usage_name


_install()
