"""Prefect's own CLI, as ``python -m prefect`` runs it, with Slipway's fixes to the server first.

`slipway up` and the server role start Prefect's server as
``python -m deployments.prefect_server server start ...``: the same command
and options as ``prefect server start``, in a process where

- `slipway.scheduled_runs` lets cron schedules produce runs;
- `slipway.sqlite_writes` lets runs that triggers start be created under
  load, instead of failing on a stale SQLite snapshot and retrying for minutes;
- `slipway.server_app` lets the server's own clients find its app at once,
  instead of stopping the event loop for 0.2-0.4 s each;
- `slipway.heap` keeps the server's modules out of the garbage collector's
  walks, and full collections rare.
"""

from __future__ import annotations

from slipway import heap, scheduled_runs, server_app, sqlite_writes

__all__ = ["main"]


def main() -> None:
    """Apply the fixes, then hand the command line to Prefect's CLI."""
    scheduled_runs.apply()
    server_app.apply()
    sqlite_writes.apply()
    heap.settle()  # after the imports above, which are most of the server's modules
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
