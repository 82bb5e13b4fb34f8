"""Checks on what a user hands to Terraform, run before any Terraform command.

A bad service name would become a state key and a directory; a variable name
with a '/' or '..' would reach a file path; a value of the wrong type would only
fail half-way through a plan. Each is refused here with the rule it broke.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from slipway.errors import InvalidRequest
from slipway.names import EnvironmentName, ServiceName

__all__ = ["Variables", "check_variables", "check_workspace_names", "declared_variables"]

Variables = Mapping[str, object]
"""Input variables by name; values are str, int, float, bool, lists and string-keyed maps."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_VARIABLE_BLOCK = re.compile(r'^variable\s+"([^"]+)"\s*\{', re.MULTILINE)
_TYPE = re.compile(r"^\s*type\s*=\s*([a-z]+(?:\([a-z]+\))?)\s*$", re.MULTILINE)
_NAME_HINT = "use letters, digits, '_' and '-', starting with a letter or '_'"


def check_workspace_names(service: str, environment: str) -> None:
    """Refuse a service or environment (e.g. ``preview-<branch>``) that is not a DNS label."""
    ServiceName.parse(service)
    EnvironmentName.parse(environment)


def declared_variables(module: Path) -> dict[str, str | None]:
    """The variables that a module's top-level ``.tf`` files declare, with their type.

    The type is the declared primitive or ``map(string)``-style expression, or
    ``None`` when it is absent or more complex; Terraform checks those itself.
    """
    found: dict[str, str | None] = {}
    for path in sorted(module.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        starts = list(_VARIABLE_BLOCK.finditer(text))
        ends = [m.start() for m in starts[1:]] + [len(text)]
        for match, end in zip(starts, ends[: len(starts)], strict=True):
            body = text[match.end() : end]
            declared = _TYPE.search(body)
            found[match.group(1)] = declared.group(1) if declared else None
    return found


def check_variables(variables: Variables, declared: Mapping[str, str | None]) -> None:
    """Refuse unknown or malformed names and values that cannot have the declared type.

    Raises:
        InvalidRequest: naming the variable and the rule it broke.
    """
    for name, value in variables.items():
        if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
            raise InvalidRequest(f"variable name {name!r} is not an identifier", hint=_NAME_HINT)
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidRequest(
                f"variable {name!r} is not declared by the module",
                hint=f"use one of its variables: {known}",
            )
        problem = _type_problem(value, declared[name])
        if problem:
            raise InvalidRequest(
                f"variable {name!r} {problem}", hint="pass a value of the declared type"
            )


def _type_problem(value: object, declared: str | None) -> str | None:
    """Why ``value`` cannot be given to a variable of type ``declared``, if it cannot."""
    if declared in {"string", "number", "bool"}:
        return _primitive_problem(value, declared)
    if declared is not None and (inner := re.fullmatch(r"(map|list|set)\((\w+)\)", declared)):
        kind, element = inner.groups()
        items: list[object]
        if kind == "map" and isinstance(value, Mapping):
            items = list(value.values())
        elif kind != "map" and isinstance(value, list | tuple):
            items = list(value)
        else:
            return f"must be a {kind}, not {type(value).__name__}"
        problem = next((p for v in items if (p := _type_problem(v, element))), None)
        return f"has an element that {problem}" if problem else _json_problem(value)
    return _json_problem(value)


def _primitive_problem(value: object, declared: str) -> str | None:
    if declared == "bool":
        ok = isinstance(value, bool)
    elif declared == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
    else:
        ok = isinstance(value, str)
    return None if ok else f"must be a {declared}, not {type(value).__name__}"


def _json_problem(value: object) -> str | None:
    """Why ``value`` has no Terraform equivalent, if it has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, str | int | float | bool):
        return None
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            return "must have string keys"
        return next((p for v in value.values() if (p := _json_problem(v))), None)
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := _json_problem(v))), None)
    return f"has a value of type {type(value).__name__}, which Terraform cannot take"
