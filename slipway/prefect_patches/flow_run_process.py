"""The entry point of a process that runs flow runs: importing it applies the flow-run patches.

Importing is the explicit act here, because Python's forkserver can only
import its preload modules: `forkserver` names this module first, so every
served run forks from a process that has the patches; so does a worker
host's run starter (`warm_runs`). Imported so, it also builds ahead what
every run builds first (its settings, its API clients' TLS context), so the
forks start with them.

A pool worker's flow run starts with
``python -m slipway.prefect_patches.flow_run_process``: it hands the run to
the host's warm run starter (`warm_runs.hand_over`), and only when none
answers does it apply the patches here and hand over to Prefect's own
``python -m prefect.engine``. Nothing else imports this module.
"""

from __future__ import annotations

import runpy

__all__: list[str] = []

if __name__ == "__main__":
    from slipway.prefect_patches.warm_runs import hand_over

    hand_over()  # exits with the run when a warm starter takes it

from slipway.prefect_patches import (
    apply_flow_run_patches,
    client_tls,
    settings_memo,
    version_check,
)

apply_flow_run_patches()

if __name__ != "__main__":  # a warm parent of runs: each fork starts with these built
    settings_memo.prime()
    client_tls.prime()
    version_check.prime()

if __name__ == "__main__":
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
