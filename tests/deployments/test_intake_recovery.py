"""Nothing accepted is lost: Prefect killed mid-burst, the bridge killed before it forwards, redelivery.

A real `slipway up`. The pushes' runs belong to a deployment that nobody
serves, as in bench/webhook_load.py: they are created and wait, so the test
measures the intake and Prefect's triggers, not thousands of flow runs.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deployments.conftest import Up, api_post, free_ports, slipway_env
from tests.deployments.webhook_helpers import (
    bridge_health,
    new_commit,
    push_body,
    push_project,
    register,
    runs_of,
    signed,
    superseded_commits,
    wait_for,
    webhook_secret,
)

SERVICES = [f"burst-{i}" for i in range(4)]
FLOW = "burst-noop"


@dataclass
class Platform:
    up: Up
    secret: str
    repositories: dict[str, Path]
    heads: dict[str, str | None]

    def commit(self, service: str) -> str:
        sha = new_commit(self.repositories[service], self.heads[service])
        self.heads[service] = sha
        return sha

    def send(self, service: str, sha: str, delivery: str | None = None) -> httpx.Response:
        url = f"http://127.0.0.1:{self.up.ports['bridge']}/hooks/github"
        body = push_body(service, sha, repository={"name": service, "pushed_at": time.time()})
        headers = signed(self.secret, body, delivery=delivery)
        return httpx.post(url, content=body, headers=headers, timeout=30)

    def child(self, name: str) -> int:
        state = json.loads((self.up.home / "run" / "up.json").read_text())
        return int(next(c["pid"] for c in state["children"] if c["name"] == name))


def _unserved_deployment(up: Up) -> None:
    """A deployment nobody serves, started by pushes to the burst services: its runs just wait."""
    flow = api_post(up, "/flows/", {"name": FLOW}).json()
    deployment = api_post(
        up,
        "/deployments/",
        {"name": "load", "flow_id": flow["id"], "entrypoint": "burst.py:noop"},
    ).json()
    trigger = {
        "type": "event",
        "posture": "Reactive",
        "expect": ["slipway.git.push"],
        "match": {"prefect.resource.id": "slipway.service.burst-*"},
        "threshold": 1,
        "within": 0,
    }
    action = {
        "type": "run-deployment",
        "source": "selected",
        "deployment_id": deployment["id"],
        "parameters": {"sha": "{{ event.payload.after }}"},
    }
    api_post(up, "/automations/", {"name": "burst", "trigger": trigger, "actions": [action]})


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("recovery")
    ports = free_ports()
    project = push_project(root / "project")
    # The served no-op answers only a service no test pushes to.
    yaml = (
        (project / "prefect.yaml")
        .read_text()
        .replace('"slipway.service.*"', "slipway.service.idle")
    )
    (project / "prefect.yaml").write_text(yaml)
    up = Up(root / "home", ports, slipway_env(), args=["--project", str(project)])
    try:
        up.start()
        _unserved_deployment(up)
        repositories = {s: register(up, s) for s in SERVICES}
        heads: dict[str, str | None] = dict.fromkeys(SERVICES)
        yield Platform(up, webhook_secret(up), repositories, heads)
    finally:
        up.kill()


def _runs(platform: Platform) -> Counter[str]:
    return Counter(r["parameters"]["sha"] for r in runs_of(platform.up.api, FLOW))


def _accounted(platform: Platform, shas: set[str]) -> tuple[Counter[str], set[str]] | None:
    """The runs and superseded records, once they cover ``shas``; None before (or while Prefect is down)."""
    try:
        runs = _runs(platform)
        superseded = set(superseded_commits(platform.up.api, SERVICES))
    except httpx.HTTPError:
        return None
    return (runs, superseded) if shas <= set(runs) | superseded else None


def test_a_push_runs_once_and_only_once(platform: Platform) -> None:
    sha = platform.commit(SERVICES[0])
    assert platform.send(SERVICES[0], sha).status_code == 202
    runs, _ = wait_for("its run", lambda: _accounted(platform, {sha}))
    assert runs[sha] == 1


def test_prefect_killed_during_a_burst_loses_no_accepted_push(platform: Platform) -> None:
    pushes = [(service, platform.commit(service)) for _ in range(40) for service in SERVICES]
    answers: list[tuple[str, int]] = []

    def burst() -> None:
        with ThreadPoolExecutor(8) as pool:
            began = time.monotonic()
            futures = []
            for i, (service, sha) in enumerate(pushes):
                time.sleep(max(0.0, began + i / 40 - time.monotonic()))  # 40 pushes a second
                futures.append((sha, pool.submit(platform.send, service, sha)))
            answers.extend((sha, f.result().status_code) for sha, f in futures)

    sender = threading.Thread(target=burst)
    sender.start()
    time.sleep(1.5)
    os.killpg(platform.child("prefect"), signal.SIGKILL)  # the supervisor restarts it
    sender.join()

    assert {status for _, status in answers} == {202}, Counter(s for _, s in answers)
    shas = {sha for sha, _ in answers}
    runs, superseded = wait_for(
        "every accepted push to run or be recorded as superseded",
        lambda: _accounted(platform, shas),
        timeout=60,  # Prefect is back within seconds, and the forwarder resends at once
    )
    assert [sha for sha, n in runs.items() if n > 1] == []  # resent events start nothing twice
    assert not (set(runs) & superseded)
    for service in SERVICES:
        assert runs[platform.heads[service] or ""] == 1  # every branch's newest push runs
    assert len(superseded & shas) > 0  # the burst was coalesced, not run push by push
    wait_for("an empty queue", lambda: bridge_health(platform.up)["queue"]["waiting"] == 0)


def test_the_bridge_killed_before_it_forwards_loses_nothing(platform: Platform) -> None:
    service = SERVICES[1]
    prefect = platform.child("prefect")
    os.killpg(prefect, signal.SIGSTOP)  # the forwarder's requests hang: nothing goes on
    try:
        shas = [platform.commit(service) for _ in range(5)]
        assert [platform.send(service, sha).status_code for sha in shas] == [202] * 5
        bridge = platform.child("bridge")
        os.killpg(bridge, signal.SIGKILL)
    finally:
        os.killpg(prefect, signal.SIGCONT)
    wait_for("the supervisor to restart the bridge", lambda: platform.child("bridge") != bridge)
    runs, superseded = wait_for(
        "every push accepted before the kill to be accounted for",
        lambda: _accounted(platform, set(shas)),
        timeout=120,
    )
    assert runs[shas[-1]] == 1
    assert set(shas[:-1]) <= superseded | set(runs)


def test_a_redelivery_after_restarts_starts_no_second_run(platform: Platform) -> None:
    service = SERVICES[2]
    sha, delivery = platform.commit(service), str(uuid.uuid4())
    first = platform.send(service, sha, delivery)
    assert first.status_code == 202
    body = first.request.content
    wait_for("its run", lambda: _accounted(platform, {sha}))

    bridge = platform.child("bridge")
    os.killpg(bridge, signal.SIGKILL)
    os.killpg(platform.child("prefect"), signal.SIGKILL)
    wait_for("the bridge back", lambda: platform.child("bridge") != bridge and _healthy(platform))
    url = f"http://127.0.0.1:{platform.up.ports['bridge']}/hooks/github"
    again = httpx.post(url, content=body, headers=first.request.headers, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() | {"status": "duplicate", "reason": again.json()["reason"]}
    wait_for("Prefect back", lambda: _prefect_up(platform))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert _runs(platform)[sha] == 1
        time.sleep(0.5)


def _healthy(platform: Platform) -> bool:
    try:
        return bool(bridge_health(platform.up))
    except httpx.HTTPError:
        return False


def _prefect_up(platform: Platform) -> bool:
    try:
        return httpx.get(f"{platform.up.api}/health", timeout=2).is_success
    except httpx.HTTPError:
        return False
