"""No module compares against a status, state or policy name spelt out as a string:
each is read from the registry (``models/states.py``), so a rename or a typo is
caught by the type checker instead of silently never matching."""

from __future__ import annotations

import ast
from pathlib import Path

from moorage.models import states

SRC = Path(__file__).resolve().parents[2] / "src" / "moorage"
REGISTERED = {
    member.value
    for enum in (
        states.EndpointStatus,
        states.DesiredState,
        states.ReplicaState,
        states.PolicyName,
    )
    for member in enum
}
# The Docker Engine's own container states, not moorage's.
ALLOWED = {("runtimes/docker.py", "running")}


def _spelt_out(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant) and operand.value in REGISTERED:
                    found.append((node.lineno, str(operand.value)))
    return found


def test_no_comparison_spells_out_a_registered_name() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        for line, value in _spelt_out(ast.parse(path.read_text()))
        if (str(path.relative_to(SRC)), value) not in ALLOWED
    ]

    assert not offenders, "compare with the enum from models/states.py: " + ", ".join(offenders)


def test_the_check_sees_a_spelt_out_name() -> None:
    assert _spelt_out(ast.parse('if hint == "stopped": pass')) == [(1, "stopped")]
