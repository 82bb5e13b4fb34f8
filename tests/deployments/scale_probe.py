"""A tiny flow for the scale-out test: it records which worker ran it, and where.

It is copied into a throwaway git repository that stands in for the platform
repository, so workers fetch it with the same pull step as prefect.yaml's.
It imports nothing of Slipway, so a run costs only Prefect's own start-up.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="scale-probe")
def scale_probe(record: str = "", seconds: float = 0.0) -> str:
    """Append one JSON line about this run to ``record``, then sleep ``seconds``."""
    line = json.dumps(
        {
            "run": str(flow_run.id),
            "worker": os.environ.get("SLIPWAY_WORKER_NAME", ""),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "parent": Path(f"/proc/{os.getppid()}/cmdline").read_text().replace("\0", " "),
            "module": __file__,
        }
    )
    if record:
        # One write with O_APPEND: lines of concurrent runs never interleave.
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    time.sleep(seconds)
    return line
