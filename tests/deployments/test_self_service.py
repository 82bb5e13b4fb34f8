"""`slipway onboard`, `slipway catalog` and `slipway dora` against a real running platform.

End to end: the command starts the served onboard-service deployment, the
new repository's hook posts the first push to the bridge, and the bridge,
which knows the service from the catalog, turns it into a Prefect event.
"""

from __future__ import annotations

import time

import git
import httpx

from tests.deployments.conftest import Up


def _push_events(up: Up, service: str, *, settle: float = 30) -> list[dict[str, object]]:
    body = {
        "filter": {
            "event": {"name": ["slipway.git.push"]},
            "resource": {"id": [f"slipway.service.{service}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        }
    }
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        events = httpx.post(f"{up.api}/events/filter", json=body, timeout=10).json()["events"]
        if events:
            return list(events)
        time.sleep(0.5)
    return []


def test_onboard_from_the_shell_registers_the_service_and_its_first_push_is_an_event(
    make_up,
):
    up: Up = make_up()
    up.start()

    refused = up.cli("onboard", "Bad_Name", "--owner", "group:x")
    assert refused.returncode == 1
    assert "DNS-1123" in refused.stderr and "Traceback" not in refused.stderr
    assert not (up.home / "git" / "Bad_Name.git").exists()

    done = up.cli("onboard", "inventory", "--owner", "group:stock", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inventory is onboarded" in done.stdout

    listed = up.cli("catalog", "list")
    assert listed.returncode == 0, listed.stderr
    header, row, _, groups, team = listed.stdout.strip().splitlines()
    assert header.split()[:3] == ["SERVICE", "OWNER", "LIFECYCLE"]
    assert row.split()[:2] == ["inventory", "group:stock"]
    assert groups.split() == ["GROUP", "MEMBERS", "APPROVERS", "SERVICES"]
    assert team.split() == ["stock", "-", "-", "inventory"]  # onboarding created the group

    added = up.cli("catalog", "add-environment", "inventory", "staging", "--no-provision")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "dev, staging" in up.cli("catalog", "list").stdout
    checked = up.cli("catalog", "validate")
    assert checked.returncode == 0, checked.stdout  # an empty team is a warning only
    assert "warning: group:stock: has no members" in checked.stdout
    metrics = up.cli("dora", "inventory")
    assert metrics.returncode == 0, metrics.stderr
    assert [line.split()[:2] for line in metrics.stdout.splitlines()[1:]] == [
        ["component:inventory", "7"],
        ["component:inventory", "30"],
        ["component:inventory", "90"],
    ]
    unknown = up.cli("dora", "nothing")
    assert unknown.returncode == 1 and "no service 'nothing'" in unknown.stderr

    sha = git.Repo(up.home / "git" / "inventory.git").commit("main").hexsha
    events = _push_events(up, "inventory")
    assert [e["payload"]["after"] for e in events] == [sha]  # type: ignore[index]

    taken = up.cli("onboard", "inventory", "--owner", "group:other", timeout=300)
    assert taken.returncode == 1 and "taken by group:stock" in taken.stderr
    up.down()
