"""Every change Slipway makes to Prefect's own behaviour, and nothing else.

Everywhere else Slipway uses Prefect's public API. Where Prefect 3.9 has a
bug or a cost the platform cannot live with, the fix lives here, one module
per patch, each naming the upstream issue or pull request it stands in for:

================  ==========================================  ===========================
Patch             What it fixes                                Upstream
================  ==========================================  ===========================
sqlite_writes     runs that triggers create fail under a        PrefectHQ/prefect#23051
                  burst (deferred SQLite BEGIN)
server_app        the server's own clients stop its loop        PrefectHQ/prefect#14513
                  0.2-0.4 s each (logging set-up per call)
heartbeats        every flow run ends up to 1 s late            PrefectHQ/prefect#19641
forkserver        every served run pays a cold interpreter      PrefectHQ/prefect#16802
run_idempotency   an event sent again after a restart starts    PrefectHQ/prefect#21193
                  its runs a second time
warm_runs         every run on a worker host pays a cold        PrefectHQ/prefect#21944
                  interpreter
client_tls        every API client loads the CA bundle again    PrefectHQ/prefect#19106
                  (23 ms of CPU each)
block_schemas     saving a block builds its JSON schema once    PrefectHQ/prefect#17907
                  per field (2 s of a new home's start)
settings_memo     every Settings() reads the environment and    PrefectHQ/prefect#21944
                  settings files again: twice at each run's
                  start (60-200 ms on a busy host)
settings_         the runner serializes its settings twice      PrefectHQ/prefect#21944
serialized        for every run it starts (0.1 s of CPU)
runner_wakeup     a scheduled run waits for the runner's next  PrefectHQ/prefect#19017
                  poll (0.125 s on average)                    (the same shape)
version_check     every run of a deployment checks the          PrefectHQ/prefect#21875
                  server's version twice before it may run
                  (45-75 ms)
================  ==========================================  ===========================

Importing this package patches nothing. Each process applies what it needs
at its entry point:

- Prefect's server (`deployments.prefect_server`): `apply_server_patches`;
- `slipway up` itself (`deployments.roles`), and the children it forks:
  `apply_client_patches`;
- the embedded runner (`deployments.serve`): `apply_runner_patches`,
  `runner_wakeup.wake_on_scheduled` beside the runner, and
  `forkserver.use_forkserver`, whose forkserver preloads `flow_run_process`
  (the flow-run patches);
- a pool worker's flow run: ``python -m slipway.prefect_patches.flow_run_process``,
  which hands the run to the host's run starter (`warm_runs`, started by
  `slipway up --role worker`), a process that preloaded `flow_run_process`.

`bench/patches.py` measures what each performance patch still buys against
Prefect's own behaviour, in the same run.

Every patch checks that Prefect's code is still what it was written for
(`base.Patch`) and leaves Prefect alone, with a warning, when it is not; the
tests in ``tests/slipway/prefect_patches`` fail then, so a Prefect upgrade
makes someone re-read each patch and drop what upstream fixed.
"""

from __future__ import annotations

from slipway.prefect_patches import (
    block_schemas,
    client_tls,
    forkserver,
    heartbeats,
    run_idempotency,
    runner_wakeup,
    server_app,
    settings_memo,
    settings_serialized,
    sqlite_writes,
    version_check,
    warm_runs,
)
from slipway.prefect_patches.base import Patch

__all__ = [
    "ALL_PATCHES",
    "Patch",
    "apply_client_patches",
    "apply_flow_run_patches",
    "apply_runner_patches",
    "apply_server_patches",
]

ALL_PATCHES: tuple[Patch, ...] = (
    sqlite_writes.PATCH,
    server_app.PATCH,
    heartbeats.PATCH,
    forkserver.PATCH,
    run_idempotency.PATCH,
    warm_runs.PATCH,
    client_tls.PATCH,
    client_tls.SYNC_PATCH,
    block_schemas.PATCH,
    settings_memo.PATCH,
    settings_memo.PROFILE_PATCH,
    settings_serialized.PATCH,
    settings_serialized.CONTEXT_PATCH,
    runner_wakeup.PATCH,
    runner_wakeup.POLLER_PATCH,
    version_check.PATCH,
)
"""Every patch, for the tests that hold each one to the installed Prefect."""


def apply_server_patches() -> dict[str, bool]:
    """Apply the patches of Prefect's server process; returns which are in place."""
    return {
        "sqlite-writes": sqlite_writes.apply(),
        "server-app": server_app.apply(),
        "run-idempotency": run_idempotency.apply(),
    }


def apply_flow_run_patches() -> dict[str, bool]:
    """Apply the patches of a process that runs flow runs; returns which are in place."""
    return {
        "heartbeats": heartbeats.apply(),
        "client-tls": client_tls.apply(),
        "settings-memo": settings_memo.apply(),
        "version-check": version_check.apply(),
    }


def apply_runner_patches() -> dict[str, bool]:
    """Apply the patches of the process that serves deployments; returns which are in place."""
    return {"settings-serialized": settings_serialized.apply()}


def apply_client_patches() -> dict[str, bool]:
    """Apply the patches of a process that reads and saves blocks often; returns which are in place."""
    return {"client-tls": client_tls.apply(), "block-schemas": block_schemas.apply()}
