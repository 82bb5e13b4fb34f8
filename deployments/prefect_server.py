"""Prefect's own CLI, as ``python -m prefect`` runs it, with Slipway's fixes to the server first.

`slipway up` and the server role start Prefect's server as
``python -m deployments.prefect_server server start ...``: the same command
and options as ``prefect server start``, in a process where
`slipway.scheduled_runs` has already let cron schedules produce runs.
"""

from __future__ import annotations

from slipway import scheduled_runs

__all__ = ["main"]


def main() -> None:
    """Apply the fixes, then hand the command line to Prefect's CLI."""
    scheduled_runs.apply()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
