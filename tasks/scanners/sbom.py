"""A CycloneDX SBOM of a service's declared dependencies, with cyclonedx-py (cyclonedx-bom).

The SBOM lists what the service's requirements file pins; it is built from
the file alone, without resolving or downloading anything, so it works
air-gapped. cyclonedx-py validates its own output against the CycloneDX
schema before printing it.

An SBOM is no scanner: it yields a document, not findings. `SbomGenerator`
keeps the scanners' contract all the same: `generate` never raises, and a
failure is an errored result that says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import CommandError, MissingDependency, ScanError
from slipway.process import run
from tasks.scanners.base import ScanStatus
from tasks.scanners.inputs import input_key, tree_digest
from tasks.scanners.toolenv import SETUP_HINT, ToolEnvironment

__all__ = ["SPEC_VERSION", "SbomGenerator", "SbomResult"]

logger = logging.getLogger(__name__)

SPEC_VERSION = "1.6"
"""The CycloneDX specification version written."""


@dataclass(frozen=True)
class SbomResult:
    """What one SBOM run produced."""

    tool: str
    """``cyclonedx-py``."""
    status: ScanStatus
    """``clean`` when the SBOM was written, ``errored`` otherwise."""
    document: bytes | None = None
    """The CycloneDX JSON document; ``None`` when errored."""
    components: int = 0
    """How many components it lists."""
    error: str | None = None
    """Why it errored."""
    duration_seconds: float = 0.0
    """Wall time of the run."""
    version: str | None = None
    """cyclonedx-bom's version in the scanners' environment; None when unknown."""
    carried_from: str | None = None
    """The commit whose SBOM this is, the requirements being the same; None when generated."""


class SbomGenerator:
    """Runs ``cyclonedx-py requirements`` on a checkout's requirements file.

    Args:
        requirements: The requirements file, relative to the checkout.
        executable: A cyclonedx-py binary to run instead of the scanners' environment's.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
    """

    tool = "cyclonedx-py"

    def __init__(
        self,
        *,
        requirements: str = "requirements.txt",
        executable: str | None = None,
        tools: ToolEnvironment | None = None,
    ) -> None:
        self.requirements = requirements
        self.executable = executable
        self.tools = tools or ToolEnvironment.default()

    def input_key(self, files: Mapping[str, bytes]) -> str | None:
        """What the SBOM depends on: the requirements file in ``files`` (an inventory), the version."""
        version = None if self.executable else self.tools.version("cyclonedx-bom")
        digest = tree_digest(files, lambda relative: relative == self.requirements)
        return input_key(self.tool, version, self.requirements, SPEC_VERSION, digest)

    def generate(self, path: Path, *, timeout: float) -> SbomResult:
        """Write the SBOM of ``path``; never raises `ScanError`."""
        started = time.monotonic()
        version = None if self.executable else self.tools.version("cyclonedx-bom")
        try:
            document, components = self._generate(path.resolve(), timeout=timeout)
        except (ScanError, MissingDependency) as e:
            logger.warning("SBOM of %s errored: %s", path, e)
            return SbomResult(
                self.tool,
                ScanStatus.ERRORED,
                error=str(e),
                duration_seconds=_since(started),
                version=version,
            )
        return SbomResult(
            self.tool, ScanStatus.CLEAN, document, components, None, _since(started), version
        )

    def _generate(self, root: Path, *, timeout: float) -> tuple[bytes, int]:
        file = root / self.requirements
        if not file.is_file():
            raise ScanError(
                f"cyclonedx-py has no requirements file to describe: {self.requirements} does not exist.",
                hint="add a requirements.txt with pinned versions (an empty one for stdlib-only services)",
            )
        argv = [
            self.executable or self.tools.executable("cyclonedx-py"),
            *("requirements", str(file), "--sv", SPEC_VERSION, "--of", "JSON"),
            *("--output-reproducible", "--validate", "-o", "-"),
        ]
        try:
            done = run(argv, cwd=root, timeout=timeout, hint=SETUP_HINT)
        except CommandError as e:
            raise ScanError(f"cyclonedx-py failed on {self.requirements}: {e}") from e
        try:
            bom = json.loads(done.stdout)
            if bom.get("bomFormat") != "CycloneDX":
                raise ValueError("bomFormat is not CycloneDX")
        except (ValueError, AttributeError) as e:
            raise ScanError(f"cyclonedx-py printed no CycloneDX JSON: {e}") from e
        return done.stdout.encode(), len(bom.get("components", []))


def _since(started: float) -> float:
    return time.monotonic() - started
