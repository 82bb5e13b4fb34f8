"""prefect.yaml's security-scan triggers on a real Prefect server: when a push's scan starts.

A default-branch push is scanned when its build says so (``scan-due``), or,
should the build never say so (it crashed), by the proactive trigger after
its window; a push to another branch is scanned at once. The triggers are
prefect.yaml's own, aimed at a deployment of the test server; only the
window is shortened to Prefect's minimum, 10 s, so the test can wait it out.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.project import read_project
from tasks.scanners.due import SCAN_DUE_EVENT, SCAN_DUE_WITHIN, scan_due_id

REPO = Path(__file__).resolve().parents[2]
SHORT_WINDOW = 10.0


@pytest.fixture(scope="module")
def scan_deployment(prefect_server: str) -> str:
    """A deployment with prefect.yaml's security-scan triggers (window: 10 s); returns its id."""
    from prefect.events.schemas.automations import Posture

    http = httpx.Client(base_url=prefect_server, timeout=30)
    flow = http.post("/flows/", json={"name": f"scan-triggers-{uuid.uuid4().hex[:8]}"}).json()
    deployment = http.post(
        "/deployments/", json={"name": "security-scan", "flow_id": flow["id"]}
    ).json()
    [spec] = [d for d in read_project(REPO).deployments if d.name == "security-scan"]
    triggers = spec.deployment_triggers()
    proactive = [t for t in triggers if getattr(t, "posture", None) == Posture.Proactive]
    assert [t.within.total_seconds() for t in proactive] == [SCAN_DUE_WITHIN]  # type: ignore[attr-defined]
    for trigger in triggers:
        if trigger in proactive:
            trigger.within = timedelta(seconds=SHORT_WINDOW)  # type: ignore[attr-defined]
        trigger.set_deployment_id(uuid.UUID(deployment["id"]))
        automation = trigger.as_automation().model_dump(mode="json")
        http.post("/automations/", json=automation).raise_for_status()
    return str(deployment["id"])


def _event(
    name: str, service: str, sha: str, *, default_branch: bool, **payload: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": f"slipway.service.{service}",
            "slipway.git.default-branch": str(default_branch).lower(),
            "slipway.git.commit": sha,
        },
        "payload": {"service": service, **payload},
    }


def _push(service: str, sha: str, *, default_branch: bool) -> dict[str, Any]:
    return _event("slipway.git.push", service, sha, default_branch=default_branch, after=sha)


def _scan_due(service: str, sha: str) -> dict[str, Any]:
    event = _event(SCAN_DUE_EVENT, service, sha, default_branch=True, commit=sha)
    return event | {"id": str(scan_due_id(service, sha))}


def _runs(server: str, deployment: str, service: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment]}}, "limit": 50}
    found = httpx.post(f"{server}/flow_runs/filter", json=body, timeout=30).json()
    return [r for r in found if r["parameters"].get("service") == service]


def _wait_runs(
    server: str, deployment: str, service: str, count: int, within: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while len(runs := _runs(server, deployment, service)) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return runs


def _post(server: str, *events: dict[str, Any]) -> None:
    httpx.post(f"{server}/events", json=list(events), timeout=30).raise_for_status()


def test_each_push_is_scanned_once_after_its_build_or_its_window_or_at_once_off_default(
    prefect_server: str, scan_deployment: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    built, crashed, branch = f"built-{tag}", f"crashed-{tag}", f"branch-{tag}"
    sha = uuid.uuid4().hex + "abcdefgh"
    _post(
        prefect_server,
        _push(built, sha, default_branch=True),
        _push(crashed, sha, default_branch=True),
        _push(branch, sha, default_branch=False),
    )
    # Another branch: scanned at once, nothing is built.
    [run] = _wait_runs(prefect_server, scan_deployment, branch, 1, within=30)
    assert run["parameters"] == {"service": branch, "commit": sha}
    # The default branch: no scan beside the build.
    assert _runs(prefect_server, scan_deployment, built) == []
    due = _scan_due(built, sha)
    _post(prefect_server, due, due)  # said at the switch and again at the run's end
    [run] = _wait_runs(prefect_server, scan_deployment, built, 1, within=30)
    assert run["parameters"] == {"service": built, "commit": sha}
    # A build that never said so (it crashed): scanned once its window passed.
    runs = _wait_runs(prefect_server, scan_deployment, crashed, 1, within=SHORT_WINDOW + 30)
    assert [r["parameters"] for r in runs] == [{"service": crashed, "commit": sha}]
    # ...while the push whose build said so is not scanned a second time.
    time.sleep(5)  # one more evaluation of the proactive trigger (every 5 s)
    assert len(_runs(prefect_server, scan_deployment, built)) == 1
    assert len(_runs(prefect_server, scan_deployment, branch)) == 1


def test_a_scan_due_event_scans_what_its_labels_pair_never_its_payload(
    prefect_server: str, scan_deployment: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    service, other = f"forged-{tag}", f"elsewhere-{tag}"
    paired, claimed = uuid.uuid4().hex + "abcdefgh", uuid.uuid4().hex + "12345678"
    _post(prefect_server, _push(service, paired, default_branch=True))
    # Posted early by any API caller, with the event id the build's own will carry:
    # labels say `paired`, the payload another service and commit.
    forged = _scan_due(service, paired)
    forged["payload"] = {"service": other, "commit": claimed}
    _post(prefect_server, forged)
    # It starts the scan of the commit it pairs (the build's event, same id, is dropped).
    [run] = _wait_runs(prefect_server, scan_deployment, service, 1, within=30)
    assert run["parameters"] == {"service": service, "commit": paired}
    assert _runs(prefect_server, scan_deployment, other) == []
