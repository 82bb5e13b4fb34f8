"""The layout rules of docs/contributing.md, checked over the source so they stay true.

Sizes: no product module over 400 lines, no function over 60. Places: every
Prefect task lives in tasks/, flows hold flows. Dependencies: product modules
import each other without a loop and never a layer above their own, and
nothing but the tests imports tests/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("slipway", "flows", "tasks", "blocks", "deployments")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def modules(*packages: str) -> Iterator[Module]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield Module(name, path, ast.parse(path.read_text(), filename=str(path)))


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def imported(module: Module) -> set[str]:
    """Every module name ``module`` imports, at its top, in a function or for type checking."""
    found: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_product_module_is_over_400_lines() -> None:
    sizes = {m.where: len(m.path.read_text().splitlines()) for m in modules(*PRODUCT)}
    assert sizes, "no product modules found"
    too_long = {where: n for where, n in sizes.items() if n > MAX_MODULE_LINES}
    assert too_long == {}, f"split these by concept (docs/contributing.md): {too_long}"


def test_no_product_function_is_over_60_lines() -> None:
    too_long = {
        f"{m.where}:{f.lineno} {f.name}": (f.end_lineno or f.lineno) - f.lineno + 1
        for m in modules(*PRODUCT)
        for f in functions(m.tree)
        if (f.end_lineno or f.lineno) - f.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert too_long == {}, f"tell these as shorter steps (docs/contributing.md): {too_long}"


def _is_task(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Name) and target.id == "task"


def test_every_prefect_task_lives_in_tasks() -> None:
    elsewhere = [
        f"{m.where}:{f.lineno} {f.name}"
        for m in modules(*PRODUCT)
        if not m.name.startswith("tasks.") and m.name != "tasks"
        for f in functions(m.tree)
        if any(_is_task(d) for d in f.decorator_list)
    ]
    assert elsewhere == []


def test_product_modules_import_each_other_without_a_loop() -> None:
    found = {m.name: m for m in modules(*PRODUCT)}
    graph = {
        name: {
            other
            for other in imported(module)
            if other in found and other != name and not name.startswith(f"{other}.")
        }
        for name, module in found.items()
    }
    loops: list[list[str]] = []

    def visit(name: str, path: list[str], done: set[str]) -> None:
        for other in sorted(graph[name]):
            if other in path:
                loop = path[path.index(other) :]
                if sorted(loop) not in [sorted(known) for known in loops]:
                    loops.append(loop)
            elif other not in done:
                visit(other, [*path, other], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert loops == []


def test_no_layer_imports_a_layer_above_it() -> None:
    """The kernel, blocks, tasks, flows, the runtime: each uses only those before it."""
    layer = {"slipway": 0, "blocks": 1, "tasks": 2, "flows": 3, "deployments": 4}
    upward = sorted(
        f"{m.where}: {name}"
        for m in modules(*PRODUCT)
        for name in imported(m)
        if layer.get(name.split(".")[0], -1) > layer[m.name.split(".")[0]]
    )
    assert upward == []


@pytest.mark.parametrize("package", [*PRODUCT, "bench", "testkit"])
def test_nothing_but_the_tests_imports_the_tests(package: str) -> None:
    offending = sorted(
        f"{m.where}: {name}"
        for m in modules(package)
        for name in imported(m)
        if name == "tests" or name.startswith("tests.")
    )
    assert offending == []
