"""Code run in a fresh interpreter from the repository root, as a forkserver or a run's process starts.

Patches to Prefect are applied when a module is imported, once per process:
a test of what an import does must look at a process that never imported
anything else.
"""

from __future__ import annotations

import subprocess  # nosec B404 - the test's own interpreter, fixed argv
import sys
from pathlib import Path

__all__ = ["printed_by"]

REPO = Path(__file__).resolve().parents[1]


def printed_by(code: str) -> list[str]:
    """The words the last line of ``code``'s output holds; the run must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1].split()
