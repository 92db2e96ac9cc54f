"""What ``moorage apply`` would change: the fields an endpoint file sets, compared with
what ``GET`` shows of the endpoint, and the partial ``PUT`` body that changes them.

Pure (no I/O), so that what apply prints and sends can be checked without a server.
Only fields the file sets are compared: a field the file leaves out keeps whatever
the endpoint has (the server's default, or an earlier change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Compared as one value: a mapping of the user's own keys, where a key the file
# leaves out is a key to remove, not one to keep.
_WHOLE = frozenset({("deploy_metadata", "env")})
# Compared key by key (the file may set only some), but a PUT replaces them as a
# whole: one change in them sends the file's whole object, so that its unset keys
# go back to their defaults as in a create.
_REPLACED = frozenset({("deploy_metadata", "readiness_probe"), ("deploy_metadata", "resources")})
# The name finds the endpoint; it is never a change.
_IDENTITY = frozenset({("name",)})
_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One field the file sets to something the endpoint does not have."""

    path: tuple[str, ...]
    old: Any
    new: Any

    @property
    def field(self) -> str:
        return ".".join(self.path)

    def describe(self) -> str:
        """``field: old -> new``, values as JSON (strings quoted, ``null`` for none)."""
        return f"{self.field}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(not set)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def _same(desired: Any, current: Any) -> bool:
    """Equal as the server would store them: the API takes numbers as strings too."""
    if desired == current:
        return True
    if (
        isinstance(desired, str)
        and isinstance(current, int | float)
        and not isinstance(current, bool)
    ):
        try:
            return float(desired) == float(current)
        except ValueError:
            return False
    return False


def changes(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """The fields ``desired`` (an endpoint file: a create body) sets that differ from
    ``current`` (the endpoint as ``GET`` shows it), in the file's order."""
    found: list[Change] = []
    _walk(desired, current, (), found)
    return found


def _walk(
    desired: Mapping[str, Any], current: Any, path: tuple[str, ...], found: list[Change]
) -> None:
    for key, want in desired.items():
        here = (*path, str(key))
        if here in _IDENTITY:
            continue
        have = current.get(key, _MISSING) if isinstance(current, Mapping) else _MISSING
        if isinstance(want, Mapping) and here not in _WHOLE and isinstance(have, Mapping):
            _walk(want, have, here, found)
        elif have is _MISSING or not _same(want, have):
            found.append(Change(here, have, want))


def patch(desired: Mapping[str, Any], found: list[Change]) -> dict[str, Any]:
    """The partial ``PUT`` body that makes each change: the changed fields only, or the
    file's whole object for those a PUT replaces as a whole."""
    body: dict[str, Any] = {}
    for change in found:
        path = next((p for p in _REPLACED if change.path[: len(p)] == p), change.path)
        value: Any = desired
        for key in path:
            value = value[key]
        node = body
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return body
