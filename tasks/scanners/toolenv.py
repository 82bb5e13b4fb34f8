"""The scanners' own Python environment: where each tool runs from, and which version it is.

checkov pins its libraries exactly (boto3, packaging, cyclonedx), which would
hold the platform's own dependencies years back. So bandit, pip-audit,
detect-secrets, checkov and cyclonedx-py live in a virtualenv of their own,
made by the set-up (`make setup`) from ``scanners.lock`` and reused after, and
the scanners run them there by path. Nothing of theirs is imported into the
platform's interpreter.

The environment is ``<sys.prefix>/scanners`` (``.venv/scanners`` beside the
platform's ``.venv``) unless ``SLIPWAY_SCANNERS_ENV`` names another one.
Each tool's version is read from the environment's installed metadata, so
every scan report records exactly what ran.

Example:
    >>> tools = ToolEnvironment.default()
    >>> tools.executable("bandit")  # doctest: +SKIP
    '/srv/slipway/.venv/scanners/bin/bandit'
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from slipway.errors import MissingDependency

__all__ = ["SCANNERS_ENV", "SETUP_HINT", "ToolEnvironment"]

SCANNERS_ENV = "SLIPWAY_SCANNERS_ENV"
"""Names the scanners' environment when it is not ``<sys.prefix>/scanners``."""

SETUP_HINT = (
    "run `make setup` in the Slipway checkout, which creates it from scanners.lock "
    f"(or point {SCANNERS_ENV} at a virtualenv made from scanners.lock)"
)


@dataclass(frozen=True)
class ToolEnvironment:
    """A virtualenv holding the scanners, as ``scanners.lock`` pins them."""

    root: Path
    """The virtualenv's directory (it has ``bin/python``)."""

    @classmethod
    def default(cls) -> ToolEnvironment:
        """``$SLIPWAY_SCANNERS_ENV``, else ``<sys.prefix>/scanners``."""
        configured = os.environ.get(SCANNERS_ENV, "").strip()
        root = Path(configured).expanduser() if configured else Path(sys.prefix) / "scanners"
        return cls(root.absolute())

    @property
    def python(self) -> Path:
        """The environment's interpreter; checkov's runner script runs with it."""
        return self.root / "bin" / "python"

    def require(self) -> ToolEnvironment:
        """This environment, after checking that it exists.

        Raises:
            MissingDependency: it has no interpreter; names the fix.
        """
        if not self.python.exists():
            raise MissingDependency(
                f"the scanners' tool environment {self.root} does not exist", hint=SETUP_HINT
            )
        return self

    def executable(self, name: str) -> str:
        """The full path of the console script ``name`` in this environment.

        Raises:
            MissingDependency: the environment or the tool is missing; names the fix.
        """
        path = self.require().root / "bin" / name
        if not path.is_file():
            raise MissingDependency(
                f"{name} is not installed in the scanners' tool environment {self.root}",
                hint=SETUP_HINT,
            )
        return str(path)

    def version(self, distribution: str) -> str | None:
        """The installed version of ``distribution`` (e.g. ``checkov``), or None when absent."""
        stamps = tuple(
            (str(p), p.stat().st_mtime_ns)
            for p in sorted(self.root.glob("lib/python*/site-packages"))
        )
        return _versions(stamps).get(_normalized(distribution))


@cache
def _versions(site_packages: tuple[tuple[str, int], ...]) -> dict[str, str]:
    """Every distribution installed in ``site_packages``.

    Keyed by each directory's modification time too, so a long-running runner
    sees an environment that `make setup` re-created, and reads it once.
    """
    paths = [path for path, _ in site_packages]
    if not paths:
        return {}
    return {
        _normalized(d.metadata["Name"]): d.version
        for d in metadata.distributions(path=paths)
        if d.metadata["Name"]
    }


def _normalized(name: str) -> str:
    """PEP 503: ``bc_detect_secrets`` and ``bc-detect-secrets`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()
