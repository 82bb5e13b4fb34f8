"""The logger of the run a line belongs to, wherever the code runs.

Code in ``tasks/`` runs inside a flow or task run (the UI shows its lines
under that run) and also outside one, e.g. from `slipway status` or a bench.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

__all__ = ["run_logger"]


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run; the logger ``name`` outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
