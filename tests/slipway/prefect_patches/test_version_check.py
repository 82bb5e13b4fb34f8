"""A flow run checks its server's version once, and its suspension observer still works.

Each case runs in a new process, as a flow run does: the version check is
cached once per process, and Prefect's suspension observer is its own
(private) code, which only the patch package imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from slipway.prefect_patches import version_check
from testkit.fresh import printed_by

REPO = Path(__file__).resolve().parents[3]

_A_RUN_STARTS = """
import asyncio, json, logging, sys
import httpx
if sys.argv[1] == "patched":
    from slipway.prefect_patches import version_check
    assert version_check.apply() and version_check.apply()
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import SyncClientContext
from prefect.events.clients import check_server_version
from prefect.settings import PREFECT_API_URL
from prefect.states import Suspended
from prefect._flow_run_suspension import FlowRunSuspensionRequest, observe_flow_run_suspension

checks = []
real_send = httpx.AsyncClient.send
async def counting(self, request, *args, **kwargs):
    if request.url.path.endswith("/admin/version"):
        checks.append(str(request.url))
    return await real_send(self, request, *args, **kwargs)
httpx.AsyncClient.send = counting
real_sync_send = httpx.Client.send
def counting_sync(self, request, *args, **kwargs):
    if request.url.path.endswith("/admin/version"):
        checks.append(str(request.url))
    return real_sync_send(self, request, *args, **kwargs)
httpx.Client.send = counting_sync

@flow
def suspended_soon():
    pass

# What a run of a deployment does: its engine's client checks, then its suspension observer.
with SyncClientContext.get_or_create() as context:
    client = context.client
    deployment = client.create_deployment(
        flow_id=client.create_flow(suspended_soon), name="version-check"
    )
    suspended = client.create_flow_run_from_deployment(deployment)
    client.set_flow_run_state(suspended.id, Suspended(timeout_seconds=300), force=True)
    untouched = client.create_flow_run_from_deployment(deployment)
    requests = {}
    for name, run in (("suspended", suspended), ("untouched", untouched)):
        request = FlowRunSuspensionRequest()
        with observe_flow_run_suspension(run.id, request):
            requests[name] = request.is_requested()
    asyncio.run(check_server_version(str(PREFECT_API_URL.value()), logging.getLogger("probe")))
print(json.dumps({"checks": checks, "requested": requests}))
"""


def _a_run_starts(prefect_server: str, patched: bool) -> dict[str, Any]:
    """The version checks and suspension requests two runs of a deployment see as they start."""
    from prefect.settings import PREFECT_API_URL  # the server's, without the auth string

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [sys.executable, "-c", _A_RUN_STARTS, "patched" if patched else "upstream"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_the_patch_the_observer_checks_the_version_again(prefect_server: str):
    seen = _a_run_starts(prefect_server, patched=False)

    assert len(seen["checks"]) == 2


def test_with_the_patch_a_run_checks_the_version_once_and_honours_a_suspension(
    prefect_server: str,
):
    """The observer still learns, before the run may propose Running, that it was suspended."""
    seen = _a_run_starts(prefect_server, patched=True)

    assert len(seen["checks"]) == 1
    assert seen["requested"] == {"suspended": True, "untouched": False}


def test_one_api_is_one_key_however_spelled():
    key = version_check._api_version_check_key

    assert key("http://127.0.0.1:4200/api/", "3") == key("http://127.0.0.1:4200/api", "3")
    assert key("http://127.0.0.1:4200/api", "3") != key("http://127.0.0.1:4201/api", "3")
    assert key("http://127.0.0.1:4200/api", "3") != key("http://127.0.0.1:4200/api", "4")


def test_a_warm_parent_of_runs_has_the_patch_and_the_observers_imports():
    probe = (
        "import sys\n"
        "import slipway.prefect_patches.flow_run_process\n"
        "import prefect.client.orchestration as o\n"
        "print(o._api_version_check_key.__module__,"
        " 'prefect._internal.observers' in sys.modules,"
        " 'anyio._backends._asyncio' in sys.modules)\n"
    )
    assert printed_by(probe) == ["slipway.prefect_patches.version_check", "True", "True"]
