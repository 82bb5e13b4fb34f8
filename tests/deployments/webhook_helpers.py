"""A real `slipway up` for webhook tests, and what they send to it and read back from Prefect.

The platform runs a project of its own: one no-op flow with the same kind of
``slipway.git.push`` trigger that build-test-deploy has, so a push costs a
run that finishes at once, not a build.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from blocks import GitServer
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import create_repository
from tests.deployments.conftest import Up

T = TypeVar("T")

PUSH_FLOW = """
from prefect import flow


@flow(name="push-noop")
def noop(service: str, commit: str) -> str:
    return commit
"""

PUSH_PROJECT = """
name: slipway-webhook-test
prefect-version: 3.8.8
deployments:
  - name: push-noop
    entrypoint: push_flow.py:noop
    triggers:
      - type: event
        enabled: true
        expect: [slipway.git.push]
        match:
          prefect.resource.id: "slipway.service.*"
        parameters:
          service: "{{ event.payload.service }}"
          commit: "{{ event.payload.after }}"
"""

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def push_project(directory: Path) -> Path:
    """Write the test project; pass it to `up` with ``--project``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prefect.yaml").write_text(PUSH_PROJECT)
    (directory / "push_flow.py").write_text(PUSH_FLOW)
    return directory


def webhook_secret(up: Up) -> str:
    return up.python(
        "from blocks.webhook import load_webhook_secret as s; print(s().get_secret_value())"
    )


def git_server(up: Up) -> GitServer:
    return GitServer(provider="local", root=up.home / "git")


def register(up: Up, name: str) -> Path:
    """Catalogue ``name`` and give it a bare repository (no hook): the bridge then takes its pushes."""
    entry = CatalogEntry(name=name, owner="group:test", port=8100, repository=name)
    Catalog(git_server(up)).save(entry, message=f"Onboard {name}")
    return create_repository(git_server(up), name)


def new_commit(repository: Path, parent: str | None = None) -> str:
    """A new commit (of the empty tree) in a bare repository, without pushing anything."""
    argv = ["git", "--git-dir", str(repository), "commit-tree", EMPTY_TREE]
    argv += ["-p", parent] if parent else []
    env = {
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
    }
    done = subprocess.run(
        [*argv, "-m", uuid.uuid4().hex], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def push_body(service: str, after: str, **overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "before": "a" * 40,
        "after": after,
        "repository": {"name": service},
        "pusher": {"name": "ada"},
        "commits": [{"added": [], "modified": ["app/server.py"], "removed": []}],
    }
    payload.update(overrides)
    return json.dumps(payload).encode()


def signed(
    secret: str, body: bytes, *, delivery: str | None = None, event: str = "push"
) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }


def send(up: Up, secret: str, body: bytes, **headers: Any) -> httpx.Response:
    url = f"http://127.0.0.1:{up.ports['bridge']}/hooks/github"
    return httpx.post(url, content=body, headers=signed(secret, body, **headers), timeout=30)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def runs_of(api: str, flow: str) -> list[dict[str, Any]]:
    """Every flow run of ``flow``, newest first."""
    runs: list[dict[str, Any]] = []
    while True:
        body = {
            "flows": {"name": {"any_": [flow]}},
            "limit": 200,
            "offset": len(runs),
            "sort": "EXPECTED_START_TIME_DESC",
        }
        page = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
        page.raise_for_status()
        runs += page.json()
        if len(page.json()) < 200:
            return runs


def superseded_commits(api: str, services: list[str]) -> list[str]:
    """The commits that the ``pushes-<service>`` artifacts record as superseded."""
    commits: list[str] = []
    offset = 0
    while True:
        body = {
            "artifacts": {"key": {"any_": [f"pushes-{s}" for s in services]}},
            "limit": 200,
            "offset": offset,
        }
        page = httpx.post(f"{api}/artifacts/filter", json=body, timeout=30)
        page.raise_for_status()
        for artifact in page.json():
            commits += [row["commit"] for row in json.loads(artifact["data"])]
        offset += len(page.json())
        if len(page.json()) < 200:
            return commits


def events_named(api: str, name: str, resource: str) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [resource]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    response = httpx.post(f"{api}/events/filter", json=body, timeout=30)
    response.raise_for_status()
    return list(response.json()["events"])


def bridge_health(up: Up) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{up.ports['bridge']}/healthz", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def commit_and_push(
    repository: Path, work: Path, path: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Clone (once), change ``path``, commit and push to ``main``: the push runs the repository's hook."""
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com"]
    if not work.exists():
        subprocess.run(["git", "clone", "--quiet", str(repository), str(work)], check=True)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(f"{uuid.uuid4()}\n")
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "change"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pushed = subprocess.run(
        ["git", "-C", str(work), "push", "origin", "HEAD:main"], capture_output=True, text=True
    )
    return sha, pushed


def events_for(up: Up, service: str, after: str, *, settle: float = 30) -> list[dict[str, Any]]:
    """The push events of ``service`` at commit ``after``, waiting up to ``settle`` s for them."""
    body = {
        "filter": {
            "event": {"name": ["slipway.git.push"]},
            "resource": {"id": [f"slipway.service.{service}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        events = httpx.post(f"{up.api}/events/filter", json=body, timeout=10).json()["events"]
        matching = [e for e in events if e["payload"].get("after") == after]
        if matching:
            return matching
        time.sleep(0.3)
    return []
