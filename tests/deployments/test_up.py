"""`slipway up`, `status` and `down` against real processes on loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from blocks import DeployTarget, GitServer
from slipway.errors import DockerUnavailable
from tasks.catalog import Catalog, CatalogEntry
from tasks.containers import docker_client
from tasks.git import PushHook, create_repository
from tests.conftest import in_ci, missing_part
from tests.deployments.conftest import alive, api_post, free_port, processes_of_home
from tests.deployments.webhook_helpers import commit_and_push, events_for

HAS_REGISTRY = shutil.which("docker-registry") is not None
HAS_MONITORING = shutil.which("prometheus") is not None


def _wait_for_terminal_run(up, run_id: str, timeout: float = 90) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{up.api}/flow_runs/{run_id}", timeout=10).json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def _deployment(up, name: str) -> dict[str, object]:
    found = api_post(up, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}}).json()
    assert len(found) == 1, found
    return found[0]


def _run_deployment(up, name: str, parameters: dict[str, object]) -> dict[str, object]:
    deployment = _deployment(up, name)
    run = api_post(
        up, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters}
    ).json()
    return _wait_for_terminal_run(up, run["id"])


def test_up_registers_deployments_serves_runs_and_down_leaves_no_process(make_up):
    if not HAS_REGISTRY and in_ci():
        missing_part("docker-registry is not installed", fix="run `make setup` as root")
    up = make_up()
    up.start()
    state = json.loads((up.home / "run" / "up.json").read_text())
    children = {c["name"] for c in state["children"]}
    assert {"prefect", "deployments", "docs"} <= children
    assert ("registry" in children) == HAS_REGISTRY
    assert "monitor" in children
    assert ("prometheus" in children) == HAS_MONITORING
    # The Python children fork from `up`, which imported their modules once (warm_start).
    for name in ("docs", "bridge", "monitor"):
        assert "forked from `up`" in (up.home / "logs" / f"{name}.log").read_text(), name

    assert httpx.get(f"{up.api}/health", timeout=5).is_success
    deployment = _deployment(up, "platform-check")
    assert deployment["schedules"], "the cron schedule of prefect.yaml was not applied"
    # ...and Prefect's scheduler turns it into runs.
    scheduled = {
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        "deployments": {"id": {"any_": [deployment["id"]]}},
    }
    deadline = time.monotonic() + 90
    while api_post(up, "/flow_runs/count", scheduled).json() == 0:
        assert time.monotonic() < deadline, "Prefect's scheduler created no run of the schedule"
        time.sleep(1)

    # Prefect's own CLI against the platform: a run it starts is served promptly (the
    # runner polls every second), and it lists runs, artifacts, deployments and blocks.
    started = prefect_cli(
        up, "deployment", "run", "platform-check/platform-check", "-p", "include_optional=false"
    )
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)  # type: ignore[union-attr]
    run = _wait_for_terminal_run(up, run_id)
    assert run["state"]["type"] == ("COMPLETED" if HAS_REGISTRY else "FAILED"), run["state"]
    assert run["name"] in prefect_cli(up, "flow-run", "ls", "--limit", "50")
    assert "platform-health" in prefect_cli(up, "artifact", "ls")
    listed = prefect_cli(up, "deployment", "ls")
    for name in ("platform-check/platform-check", "build-test-deploy/build-test-deploy"):
        assert name in listed, listed
    assert "slipway-platform-settings/default" in prefect_cli(up, "block", "ls")

    status = up.cli("status")
    for name in ("prefect", "deployments", "docs", "registry", "git", "docker", "artifacts"):
        assert f"  {name} " in status.stdout, status.stdout
    if docker_answers():
        check_base_image_command(up)
    elif in_ci():
        missing_part("no Docker engine answers", fix="run `make setup` as root")
    for name in ("prometheus", "alertmanager", "blackbox", "monitor"):
        line = next(x for x in status.stdout.splitlines() if f"  {name} " in x)
        assert ("healthy" in line.split()) == (HAS_MONITORING or name == "monitor"), line
    targets = json.loads((up.home / "monitoring" / "targets" / "platform.json").read_text())
    assert f"127.0.0.1:{up.ports['monitor']}" in targets[0]["targets"]
    docs = httpx.get(f"http://127.0.0.1:{up.ports['docs']}/", timeout=5)
    assert docs.status_code == 200 and "Slipway portal" in docs.text
    # A new home's portal finds monitoring configured: its configs exist before the gate.
    assert f"Prometheus http://127.0.0.1:{up.ports['prometheus']}" in docs.text, docs.text

    assert processes_of_home(up.home), "children should carry SLIPWAY_HOME"
    up.down()
    # Prefect's clients stop first, while it still answers them: none has to be killed.
    assert not [line for line in up.output if "killed it" in line], up.output
    assert any(line.startswith("stopped prefect") for line in up.output), up.output
    assert processes_of_home(up.home) == []
    # The forked children carry `up`'s own environment, not the home: checked by pid.
    assert [c["name"] for c in state["children"] if alive(c["pid"])] == []
    assert not (up.home / "run" / "up.json").exists()
    for port in up.ports.values():  # no listener is left (TIME_WAIT is fine)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    assert up.cli("status").returncode == 1


def test_second_up_keeps_flow_runs_and_block_settings_and_redelivers_spooled_pushes(
    make_up, tmp_path
):
    first = make_up()
    first.start()
    run = _run_deployment(first, "platform-check", {"include_optional": False})

    # A platform team points the deploy target at an engine that is not there.
    script = (
        "from blocks import DeployTarget\n"
        "t = DeployTarget.load('default')\n"
        "t.docker_host = 'unix:///nonexistent/docker.sock'\n"
        "t.save('default', overwrite=True)\n"
    )
    env = first.client_env()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    # A push while the bridge is unreachable is spooled in the home, not lost.
    read_secret = (
        "from blocks.webhook import load_webhook_secret as s; print(s().get_secret_value())"
    )
    secret = subprocess.run(
        [sys.executable, "-c", read_secret], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    dead_hook = PushHook(
        bridge_url=f"http://127.0.0.1:{free_port()}/hooks/github",
        secret=SecretStr(secret),
        spool=first.home / "spool",
    )
    server = GitServer(provider="local", root=first.home / "git")
    Catalog(server).save(
        CatalogEntry(name="spooled", owner="group:test", port=8100, repository="spooled"),
        message="Onboard spooled",
    )
    repository = create_repository(server, "spooled", hook=dead_hook)
    sha, pushed = commit_and_push(repository, tmp_path / "work", "README.md")
    assert pushed.returncode == 0 and "for redelivery" in pushed.stderr
    assert registry_block(first) == [f"127.0.0.1:{first.ports['registry']}", "slipway"]
    assert monitoring_ui_url(first) == f"http://127.0.0.1:{first.ports['prefect']}"
    first.down()

    assert "block types registered" in (first.home / "logs" / "startup.log").read_text()
    second = make_up(home=first.home)
    second.start()
    # Nothing about the block types changed: the second start does not register them again.
    assert "block types unchanged, kept" in (first.home / "logs" / "startup.log").read_text()
    # At start, hooks point at the new bridge again, and the bridge drains the spool itself.
    hook_settings = json.loads((repository / "slipway-hook.json").read_text())
    assert hook_settings["url"].endswith(f":{second.ports['bridge']}/hooks/github")
    assert events_for(second, "spooled", sha)
    assert list((first.home / "spool").glob("*.json")) == []
    # Prefect has another port too: notification links follow it.
    assert monitoring_ui_url(second) == f"http://127.0.0.1:{second.ports['prefect']}"
    # The second up's registry has another port: the block follows it, with its login.
    if HAS_REGISTRY:
        assert registry_block(second) == [f"127.0.0.1:{second.ports['registry']}", "slipway"]
    again = httpx.get(f"{second.api}/flow_runs/{run['id']}", timeout=10)
    assert again.status_code == 200 and again.json()["state"]["type"] == run["state"]["type"]

    # Docker missing: `up` started anyway, and says what is missing and how to fix it.
    status = second.cli("status")
    docker_line = next(line for line in status.stdout.splitlines() if "  docker " in line)
    assert "unavailable" in docker_line and "apt-get install docker.io" in docker_line
    # A flow that needs Docker fails with that same message.
    failed = _run_deployment(second, "platform-check", {"include_optional": True})
    assert failed["state"]["type"] == "FAILED"
    assert "nonexistent/docker.sock" in failed["state"]["message"]
    second.down()


def registry_block(up) -> list[str]:
    """The registry block's url and user, as the platform's flows load it."""
    read = (
        "from blocks import ContainerRegistry as R; r = R.load('default'); print(r.url, r.username)"
    )
    return block_fields(up, read)


def monitoring_ui_url(up) -> str:
    """The monitoring settings' ``ui_url``, which notification links are built from."""
    read = "from blocks.monitoring import MonitoringSettings as M; print(M.load('default').ui_url)"
    return block_fields(up, read)[0]


def block_fields(up, read: str) -> list[str]:
    """What the Python ``read`` prints, run with the platform's client settings."""
    done = subprocess.run(
        [sys.executable, "-c", read],
        env=up.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_second_up_on_a_running_home_is_refused(make_up):
    up = make_up()
    up.start()
    again = make_up(home=up.home)
    result = subprocess_run(again.argv(), again.env)
    assert result.returncode == 1
    assert "already running" in result.stderr and "slipway down" in result.stderr
    assert "Traceback" not in result.stderr
    up.down()


def test_port_in_use_is_one_line_with_a_fix_and_starts_nothing(make_up):
    up = make_up()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", up.ports["prefect"]))
        holder.listen()
        result = subprocess_run(up.argv(), up.env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {up.ports['prefect']}" in lines[0] and "SLIPWAY_PREFECT_PORT" in lines[0]
    assert processes_of_home(up.home) == []


def test_missing_registry_binary_is_named_and_up_still_starts(make_up, tmp_path):
    # A PATH with Python and git only: no docker-registry to be found.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    up = make_up(extra_env={"PATH": f"{Path(sys.executable).parent}:{tools}"})
    up.start()
    text = "".join(up.output)
    assert "apt-get install docker-registry" in text
    assert "apt-get install prometheus prometheus-alertmanager" in text
    status = up.cli("status")
    lines: dict[str, str] = {}  # each component's first line
    for line in status.stdout.splitlines():
        if line.startswith("  "):
            lines.setdefault(line.split()[0], line)
    assert {"registry", "prometheus", "monitor"} <= set(lines), status.stdout + status.stderr
    assert "docker-registry" in lines["registry"] and "UNHEALTHY" in lines["registry"]
    assert "apt-get install prometheus" in lines["prometheus"]
    assert "UNHEALTHY" in lines["prometheus"]
    assert "healthy" in lines["monitor"].split(), lines["monitor"]

    # A part that cannot be checked is a line of its own; the table is not lost.
    # (The engine refuses this name, as a loaded one times out: both once ended `status`.)
    up.python(
        "from blocks import PlatformSettings as P; s = P.load('default'); "
        "s.base_image = 'Local/Python-Base:bookworm'; s.save('default', overwrite=True)"
    )
    status = up.cli("status")
    table = status.stdout.splitlines()
    assert any(line.startswith("  registry ") for line in table), status.stdout + status.stderr
    base = next(line for line in table if line.startswith("  base-image "))
    assert "not checked" in base and "unavailable" in base, base
    up.down()


def docker_answers() -> bool:
    try:
        docker_client(DeployTarget(), timeout=10).close()
    except DockerUnavailable:
        return False
    return True


def check_base_image_command(up) -> None:
    """`up` wrote a base image the engine has; one command shows and changes it, safely."""
    ready = next(line for line in up.output if "Slipway is up" in line)
    status = up.cli("status").stdout
    shown = up.cli("settings", "base-image")
    assert shown.returncode == 0 and "(present)" in shown.stdout, shown
    # Loading blocks queued events; the events worker's drain warning stays out of the output.
    assert "Still processing items" not in shown.stdout + shown.stderr, shown
    image = shown.stdout.split()[2]
    assert f"  base-image   {image}" in status and "in the engine" in status, status
    if in_ci():
        assert "all healthy" in ready, ready

    bad = up.cli("settings", "base-image", "no such image")
    assert bad.returncode == 1 and "is not an image reference" in bad.stderr, bad
    absent = f"127.0.0.1:{free_port()}/absent:never"  # a registry on loopback that is not there
    refused = up.cli("settings", "base-image", absent)
    assert refused.returncode == 1 and "cannot be pulled" in refused.stderr, refused
    assert "Traceback" not in refused.stderr and "Still processing" not in refused.stderr
    assert up.cli("settings", "base-image").stdout.split()[2] == image  # nothing changed

    forced = up.cli("settings", "base-image", absent, "--no-check")
    assert forced.returncode == 0 and f"{image} -> {absent}" in forced.stdout, forced
    line = next(x for x in up.cli("status").stdout.splitlines() if "  base-image " in x)
    assert "unavailable" in line and "slipway settings base-image" in line, line
    assert up.cli("settings", "base-image", image).returncode == 0
    assert "(present)" in up.cli("settings", "base-image").stdout


def prefect_cli(up, *args: str) -> str:
    """Prefect's stock CLI against ``up``'s server; fails the test unless it succeeds cleanly."""
    env = dict(up.client_env(), COLUMNS="300")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, shown
    assert "Traceback" not in done.stderr, shown
    assert "Unprocessable" not in shown and "Input should be" not in shown, shown  # the 3.8 422
    return done.stdout


def subprocess_run(argv: list[str], env: dict[str, str]):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
