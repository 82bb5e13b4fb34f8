"""The logger of the run a line belongs to, wherever the code runs.

Code in ``tasks/`` runs inside a flow or task run (the UI shows its lines
under that run) and also outside one, e.g. from `slipway status` or a bench.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

__all__ = ["log_to_stderr", "run_logger"]


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run; the logger ``name`` outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def log_to_stderr() -> None:
    """Send this process's INFO lines to stderr: what a child of `slipway up` logs.

    ``force``: a child forked from `up` (`deployments.warm_start`) finds
    Prefect's root handler, at WARNING, already in place, where a cold start
    set up its own before importing Prefect. httpx's line per request is noise.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
