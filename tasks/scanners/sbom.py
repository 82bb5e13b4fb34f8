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
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import CommandError, ScanError
from slipway.process import installed_tool, run
from tasks.scanners.base import ScanStatus

__all__ = ["SPEC_VERSION", "SbomGenerator", "SbomResult"]

logger = logging.getLogger(__name__)

SPEC_VERSION = "1.6"
"""The CycloneDX specification version written."""

_INSTALL_HINT = "install Slipway with its dependencies: pip install cyclonedx-bom"


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


class SbomGenerator:
    """Runs ``cyclonedx-py requirements`` on a checkout's requirements file.

    Args:
        requirements: The requirements file, relative to the checkout.
        executable: The cyclonedx-py binary; found with `installed_tool` by default.
    """

    tool = "cyclonedx-py"

    def __init__(
        self, *, requirements: str = "requirements.txt", executable: str | None = None
    ) -> None:
        self.requirements = requirements
        self.executable = executable or installed_tool("cyclonedx-py")

    def generate(self, path: Path, *, timeout: float) -> SbomResult:
        """Write the SBOM of ``path``; never raises `ScanError`."""
        started = time.monotonic()
        try:
            document, components = self._generate(path.resolve(), timeout=timeout)
        except ScanError as e:
            logger.warning("SBOM of %s errored: %s", path, e)
            return SbomResult(
                self.tool, ScanStatus.ERRORED, error=str(e), duration_seconds=_since(started)
            )
        return SbomResult(self.tool, ScanStatus.CLEAN, document, components, None, _since(started))

    def _generate(self, root: Path, *, timeout: float) -> tuple[bytes, int]:
        file = root / self.requirements
        if not file.is_file():
            raise ScanError(
                f"cyclonedx-py has no requirements file to describe: {self.requirements} does not exist.",
                hint="add a requirements.txt with pinned versions (an empty one for stdlib-only services)",
            )
        argv = [
            self.executable,
            *("requirements", str(file), "--sv", SPEC_VERSION, "--of", "JSON"),
            *("--output-reproducible", "--validate", "-o", "-"),
        ]
        try:
            done = run(argv, cwd=root, timeout=timeout, hint=_INSTALL_HINT)
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
