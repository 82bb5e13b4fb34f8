"""A deployment's run starts its suspension observer with the run, and a suspended run stays so.

Each case runs in a new process, as a flow run does, against the real
server: two runs of one deployment, one of them suspended before it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slipway.prefect_patches import suspension_observer
from testkit.fresh import json_printed_by, printed_by

REPO = Path(__file__).resolve().parents[3]

_TWO_RUNS = """
import json, sys, threading
if sys.argv[1] == "patched":
    from slipway.prefect_patches import suspension_observer
    assert suspension_observer.apply() and suspension_observer.apply()
from prefect._internal.observers import FlowRunSuspendingObserver
entered = []
real_enter = FlowRunSuspendingObserver.__aenter__
async def counting_enter(self):
    entered.append(threading.current_thread().name)
    return await real_enter(self)
FlowRunSuspendingObserver.__aenter__ = counting_enter
import prefect.flow_engine as engine
from prefect import flow
from prefect.context import SyncClientContext
from prefect.states import Suspended

ran = []

@flow
def body():
    ran.append(True)

outcome = {}
with SyncClientContext.get_or_create() as context:
    client = context.client
    deployment = client.create_deployment(
        flow_id=client.create_flow(body), name="suspension-observer"
    )
    runs = {
        "plain": client.create_flow_run_from_deployment(deployment),
        "suspended": client.create_flow_run_from_deployment(deployment),
    }
    client.set_flow_run_state(runs["suspended"].id, Suspended(timeout_seconds=300), force=True)
    for name, run in runs.items():
        before = len(ran)
        try:
            engine.run_flow(body, flow_run=client.read_flow_run(run.id), return_type="state")
            raised = None
        except BaseException as e:
            raised = type(e).__name__
        state = client.read_flow_run(run.id).state
        outcome[name] = {"ran": len(ran) - before, "raised": raised, "state": state.name}
left = [t.name for t in threading.enumerate() if t.name == "suspension-observer"]
print(json.dumps({"outcome": outcome, "observers": entered, "left": left}))
"""


def _two_runs(prefect_server: str, patched: bool) -> dict[str, Any]:
    result: dict[str, Any] = json_printed_by(_TWO_RUNS, "patched" if patched else "upstream")
    return result


def test_each_run_takes_the_observer_started_with_it_and_a_suspended_run_stays_so(
    prefect_server: str,
):
    upstream = _two_runs(prefect_server, patched=False)
    seen = _two_runs(prefect_server, patched=True)

    assert len(upstream["observers"]) == 2
    assert "suspension-observer" not in upstream["observers"]  # started inside the engine
    assert seen["observers"] == ["suspension-observer", "suspension-observer"]
    assert seen["left"] == []  # each stopped with its run
    assert seen["outcome"] == upstream["outcome"]
    assert seen["outcome"]["plain"] == {"ran": 1, "raised": None, "state": "Completed"}
    suspended = seen["outcome"]["suspended"]
    assert (suspended["ran"], suspended["state"]) == (0, "Suspended")


def test_a_warm_parent_of_runs_has_the_patch():
    probe = (
        "import slipway.prefect_patches.flow_run_process\n"
        "import prefect.flow_engine as e\n"
        "print(e.observe_flow_run_suspension.__module__,"
        " getattr(e.run_flow, '__slipway_patched__', False))\n"
    )
    assert printed_by(probe) == [suspension_observer.__name__, "True"]
