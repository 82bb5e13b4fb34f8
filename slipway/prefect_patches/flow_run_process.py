"""The entry point of a process that runs flow runs: importing it applies the flow-run patches.

Importing is the explicit act here, because Python's forkserver can only
import its preload modules: `forkserver` names this module first, so every
served run forks from a process that has the patches. A pool worker's flow
run starts with ``python -m slipway.prefect_patches.flow_run_process``, which
applies them and then hands over to Prefect's own ``python -m prefect.engine``.
Nothing else imports this module.
"""

from __future__ import annotations

import runpy

from slipway.prefect_patches import apply_flow_run_patches

__all__: list[str] = []

apply_flow_run_patches()

if __name__ == "__main__":
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
