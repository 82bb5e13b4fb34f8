"""What every patch to Prefect declares: what it replaces, why, and the code it was written against.

A patch stays correct only while the Prefect code it replaces or wraps stays
the same. Each `Patch` therefore records a fingerprint of that code, read
from Prefect's own source file. `Patch.applicable` compares it with the
installed Prefect: a patch whose target changed is not applied (Prefect's
own behaviour stays, with a warning), and the patch package's tests fail, so
an upgrade of Prefect makes someone re-read every patch it touches, and drop
the ones that upstream fixed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Patch", "file_stamp", "prefect_source"]

logger = logging.getLogger(__name__)


def prefect_source(module: str, qualname: str) -> str:
    """The source of ``module.qualname`` as Prefect's file has it, patched or not.

    Read from the module's file rather than from the live attribute, so it is
    the same before and after a patch replaced the attribute.

    ``__main__`` names the module's ``if __name__ == "__main__":`` block, what
    ``python -m module`` runs.

    Raises:
        LookupError: the module has no function or class of that name.
    """
    text = inspect.getsource(importlib.import_module(module))
    scope: list[ast.stmt] = ast.parse(text).body
    node: ast.AST | None = None
    if qualname == "__main__":
        node = next((n for n in scope if _is_main_block(n)), None)
        if node is None:
            raise LookupError(f"{module} has no __main__ block")
    for part in qualname.split(".") if node is None else []:
        node = next(
            (
                n
                for n in scope
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ),
            None,
        )
        if node is None:
            raise LookupError(f"{module} has no {qualname}")
        scope = node.body
    segment = ast.get_source_segment(text, node) if node is not None else None
    if segment is None:
        raise LookupError(f"{module} has no source for {qualname}")
    return segment


def file_stamp(path: str | Path) -> tuple[int, int, int, int] | None:
    """What tells a file rewritten or replaced: its inode, size and change times; None if absent.

    For a patch that keeps what it read from a file until the file changes.
    """
    try:
        found = Path(path).stat()
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _is_main_block(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    left, right = node.test.left, node.test.comparators
    return (
        isinstance(left, ast.Name)
        and left.id == "__name__"
        and len(right) == 1
        and isinstance(right[0], ast.Constant)
        and right[0].value == "__main__"
    )


@dataclass(frozen=True)
class Patch:
    """One change to Prefect's behaviour."""

    name: str
    """Short name, e.g. ``heartbeats``."""
    module: str
    """The Prefect module that holds the patched code, e.g. ``prefect.flow_engine``."""
    qualname: str
    """The function or method patched or wrapped, e.g. ``_send_heartbeats``."""
    upstream: str
    """The upstream issue or pull request this patch stands in for, as a URL."""
    fingerprint: str
    """The first 16 hex digits of the SHA-256 of the target's source the patch was written for."""

    def current_fingerprint(self) -> str:
        """The fingerprint of the target in the installed Prefect."""
        source = prefect_source(self.module, self.qualname)
        return hashlib.sha256(source.encode()).hexdigest()[:16]

    def applicable(self) -> bool:
        """Whether the installed Prefect has the code this patch was written for; warns when not."""
        try:
            current = self.current_fingerprint()
        except (ImportError, LookupError, OSError) as e:
            logger.warning("not applying the %s patch: %s (see %s)", self.name, e, self.upstream)
            return False
        if current != self.fingerprint:
            logger.warning(
                "not applying the %s patch: %s.%s changed since it was written "
                "(fingerprint %s, expected %s); check whether %s fixed it",
                self.name,
                self.module,
                self.qualname,
                current,
                self.fingerprint,
                self.upstream,
            )
            return False
        return True
