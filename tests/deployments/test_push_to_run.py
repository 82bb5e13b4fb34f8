"""A real `git push` to a Slipway repository ends in a build-test-deploy run of that commit.

Everything is real: `slipway up` (Prefect, runner, bridge, registry), the
repository's post-receive hook, the webhook bridge, the deployment trigger in
prefect.yaml, and the flow that builds, tests, pushes and deploys on Docker.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BASE_IMAGE
from tests.deployments.conftest import Up, free_port, open_to_others
from tests.deployments.webhook_helpers import wait_for
from tests.flows.delivery_fixtures import docker_or_skip

pytestmark = pytest.mark.docker


# Runs against the `up` instance's Prefect: creates the repository with the
# platform's push hook, renders the service into a work tree and catalogues it.
SETUP = """
import sys
from pathlib import Path
from blocks import GitServer
from slipway.home import Ports, SlipwayHome
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import create_repository, platform_push_hook, repository_url
from tasks.templates import ServiceAnswers, render_service

name, port, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
home = SlipwayHome.from_env()
server = GitServer.load_default()
create_repository(server, name, hook=platform_push_hook(home, Ports.from_env()))
render_service("python-service", work, ServiceAnswers(service_name=name, owner="group:push", port=port))
Catalog(server).save(
    CatalogEntry(name=name, owner="group:push", repository=repository_url(server, name), port=port),
    message=f"Add {name}",
)
print(repository_url(server, name))
"""


def _git(work: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
        "GIT_PUSHER": "ada",  # claims to be someone else: ignored
        "USER": "ada",
        "LOGNAME": "ada",
    }
    done = subprocess.run(
        ["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _runs(up: Up, deployment_flow: str) -> list[dict[str, Any]]:
    body = {
        "flows": {"name": {"any_": [deployment_flow]}},
        "limit": 50,
        "sort": "EXPECTED_START_TIME_DESC",
    }
    response = httpx.post(f"{up.api}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return list(response.json())


def _run_of(up: Up, deployment_flow: str, sha: str) -> dict[str, Any]:
    """The run of ``deployment_flow`` for ``sha``, once it exists."""
    return wait_for(
        f"a {deployment_flow} run of the pushed commit",
        lambda: next(
            (r for r in _runs(up, deployment_flow) if r["parameters"].get("commit") == sha), None
        ),
        timeout=60,
    )


def _task_run(up: Up, flow_run: str, name: str) -> dict[str, Any]:
    body = {"task_runs": {"flow_run_id": {"any_": [flow_run]}}, "limit": 100}
    found = httpx.post(f"{up.api}/task_runs/filter", json=body, timeout=10).json()
    return next(t for t in found if t["name"].rsplit("-", 1)[0] == name)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_a_git_push_to_the_default_branch_ends_in_a_build_test_deploy_run_of_that_commit(
    make_up: Any, tmp_path: Path
) -> None:
    engine = docker_or_skip()
    up: Up = make_up(extra_env={"SLIPWAY_BASE_IMAGE": BASE_IMAGE})
    up.start(timeout=240)
    name, port, work = f"push-{uuid.uuid4().hex[:8]}", free_port(), tmp_path / "work"
    env = {
        **up.client_env(),
        "SLIPWAY_HOME": str(up.home),
        **{f"SLIPWAY_{k.upper()}_PORT": str(v) for k, v in up.ports.items()},
    }
    setup = subprocess.run(
        [sys.executable, "-c", SETUP, name, str(port), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    remote = setup.stdout.strip().splitlines()[-1]
    try:
        _git(work, "init", "--quiet", "--initial-branch=main")
        _git(work, "add", "--all")
        _git(work, "commit", "--quiet", "-m", "First version")
        sha = _git(work, "rev-parse", "HEAD").strip()
        pushed = _git(work, "push", remote, "main:main")
        assert "delivered (202)" in pushed, pushed  # the hook reached the bridge

        run = _run_of(up, "build-test-deploy", sha)
        assert run["parameters"]["service"] == name
        assert run["parameters"]["ref"] == "refs/heads/main"
        # The pusher is the user who ran `git push`, not what its environment claims.
        assert run["parameters"]["triggered_by"] == pwd.getpwuid(os.getuid()).pw_name != "ada"

        def finished() -> dict[str, Any] | None:
            current = httpx.get(f"{up.api}/flow_runs/{run['id']}", timeout=10).json()
            return (
                current
                if current["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                else None
            )

        final = wait_for("the run to finish", finished, timeout=300)
        assert final["state_type"] == "COMPLETED", final["state"]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        assert health == {"status": "ok", "service": name, "version": sha}
        # Its security scan was created only once the release had switched, not beside the build.
        scan = _run_of(up, "security-scan", sha)
        assert scan["parameters"]["service"] == name
        assert _time(scan["created"]) >= _time(
            _task_run(up, run["id"], "deploy-blue-green")["end_time"]
        )

        # A push to another branch provisions that branch's preview environment.
        _git(work, "checkout", "--quiet", "-b", "feature/Fix_login")
        (work / "docs" / "index.md").write_text("# Preview\n")
        _git(work, "commit", "--quiet", "-am", "Try a fix")
        _git(work, "push", remote, "feature/Fix_login:feature/Fix_login")
        preview = wait_for(
            "a provision-environment run of the branch's preview",
            lambda: next(
                (
                    r
                    for r in _runs(up, "provision-environment")
                    if r["parameters"].get("service") == name
                ),
                None,
            ),
            timeout=60,
        )
        assert preview["parameters"]["environment"] == "preview-feature-fix-login"
        run = preview
        final = wait_for("the preview to be provisioned", finished, timeout=300)
        assert final["state_type"] == "COMPLETED", final["state"]
        assert not any(
            r["parameters"].get("commit") != sha
            for r in _runs(up, "build-test-deploy")
            if r["parameters"].get("service") == name
        ), "a push to a branch must not build and deploy"
        # After pushes under this shell's open umask, builds, a registry push, Terraform
        # state and artifacts, every path of the data directory is still its owner's alone.
        assert open_to_others(up.home) == []
    finally:
        for container in engine.containers.list(
            all=True, filters={"label": [f"dev.slipway.service={name}"]}
        ):
            container.remove(force=True)
        for image in engine.images.list(name=f"127.0.0.1:{up.ports['registry']}/{name}"):
            engine.images.remove(image.id, force=True)
