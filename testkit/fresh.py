"""Code run in a fresh interpreter from the repository root, as a forkserver or a run's process starts.

Patches to Prefect are applied when a module is imported, once per process:
a test of what an import does must look at a process that never imported
anything else.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from slipway.process import run

__all__ = ["json_printed_by", "printed_by"]

REPO = Path(__file__).resolve().parents[1]


def printed_by(code: str) -> list[str]:
    """The words on the last line ``code`` prints; a failed run raises `CommandError` with its stderr."""
    done = run([sys.executable, "-c", code], cwd=REPO, timeout=120)
    return done.stdout.strip().splitlines()[-1].split()


def json_printed_by(code: str, *args: str) -> Any:
    """The JSON value on the last line ``code`` prints, run with ``args`` against this Prefect API.

    The child gets the API's URL as the settings have it (without the auth
    string), so that it uses the test's server. A failed run raises
    `CommandError` with its stderr.
    """
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = run([sys.executable, "-c", code, *args], cwd=REPO, env=env, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])
