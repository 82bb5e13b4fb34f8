"""Code run in a fresh interpreter from the repository root, as a forkserver or a run's process starts.

Patches to Prefect are applied when a module is imported, once per process:
a test of what an import does must look at a process that never imported
anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path

from slipway.process import run

__all__ = ["printed_by"]

REPO = Path(__file__).resolve().parents[1]


def printed_by(code: str) -> list[str]:
    """The words on the last line ``code`` prints; a failed run raises `CommandError` with its stderr."""
    done = run([sys.executable, "-c", code], cwd=REPO, timeout=120)
    return done.stdout.strip().splitlines()[-1].split()
