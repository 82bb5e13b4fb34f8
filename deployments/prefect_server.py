"""Prefect's own CLI, as ``python -m prefect`` runs it, with Slipway's fixes to the server first.

`slipway up` and the server role start Prefect's server as
``python -m deployments.prefect_server server start ...``: the same command
and options as ``prefect server start``, in a process where
`slipway.prefect_patches.apply_server_patches` has run (see that package for
each patch and its upstream issue) and `slipway.heap` keeps the server's
modules out of the garbage collector's walks, and full collections rare.
"""

from __future__ import annotations

from slipway import heap
from slipway.prefect_patches import apply_server_patches

__all__ = ["main"]


def main() -> None:
    """Apply the fixes, then hand the command line to Prefect's CLI."""
    apply_server_patches()
    from prefect.cli import app

    heap.settle()  # after the imports above, which are most of the server's modules
    app()


if __name__ == "__main__":
    main()
