"""A worker's flow runs forked by the host's run starter, against a real Prefect server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from slipway.prefect_patches.warm_runs import STARTER_ENV

FLOW = """
import json, os, sys, time
from prefect import flow

@flow(name="warm-probe")
def warm_probe(record: str, seconds: float = 0.0) -> None:
    print("hello from the run", flush=True)
    with open(record, "w") as f:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                   "marker": os.environ.get("RUN_MARKER"),
                   "platform": sorted(m for m in sys.modules if m.split(".")[0] == "tasks")}, f)
    time.sleep(seconds)
"""


def _plain(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


@pytest.fixture
def run_env(prefect_server: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
    env |= {"PREFECT_API_URL": _plain(prefect_server), "PREFECT_HOME": str(tmp_path / "ph")}
    env |= {STARTER_ENV: str(tmp_path / "run" / "starter.sock"), "PYTHONUNBUFFERED": "1"}
    return env


def _start_starter(run_env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "run").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "slipway.prefect_patches.warm_server", run_env[STARTER_ENV]],
        env=run_env,
        cwd=tmp_path / "run",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "run starter ready" in line, line + process.stdout.read()
    return process


@pytest.fixture
def starter(run_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = _start_starter(run_env, tmp_path)
    yield process
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.fixture
def deployment(prefect_server: str, tmp_path: Path) -> uuid.UUID:
    code = tmp_path / "code"
    code.mkdir()
    (code / "warm_probe.py").write_text(FLOW)
    from prefect.client.orchestration import get_client
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(f"{code}/warm_probe.py:warm_probe")
    with get_client(sync_client=True) as client:
        return client.create_deployment(
            flow_id=client.create_flow(flow),
            name=f"warm-{uuid.uuid4().hex[:8]}",
            entrypoint="warm_probe.py:warm_probe",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(code)}}
            ],
        )


def _flow_run(deployment: uuid.UUID, **parameters: object) -> uuid.UUID:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(deployment, parameters=parameters).id


def _state(run: uuid.UUID) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run).state
        return state.type.value if state else "NONE"


def _command(run_env: dict[str, str], run: uuid.UUID, cwd: Path, **extra: str) -> list[object]:
    """What Prefect's process worker does: the flow-run command, in its directory and environment."""
    cwd.mkdir(exist_ok=True)
    return [
        [sys.executable, "-m", "slipway.prefect_patches.flow_run_process"],
        {**run_env, "PREFECT__FLOW_RUN_ID": str(run), **extra},
        cwd,
    ]


def test_a_run_forks_from_the_starter_with_its_own_environment_and_streams(
    starter, run_env, deployment, tmp_path
):
    record = tmp_path / "record.json"
    run = _flow_run(deployment, record=str(record))
    argv, env, cwd = _command(run_env, run, tmp_path / "work", RUN_MARKER="this-run")
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from the run" in done.stdout  # the client's own stdout, passed over
    assert "starting cold" not in done.stderr
    seen = json.loads(record.read_text())
    assert seen["ppid"] == starter.pid  # forked by the starter, not started cold
    assert seen["marker"] == "this-run"  # the run's environment, not the starter's
    assert seen["cwd"] == str(tmp_path / "code")  # its pull step's directory
    assert seen["platform"] == []  # the starter imported none of the platform's modules
    assert _state(run) == "COMPLETED"


def test_a_failing_run_ends_its_command_as_a_cold_one_does(starter, run_env, deployment, tmp_path):
    codes = []
    for way in ("forkserver", "spawn"):  # spawn: Prefect's own cold start, for comparison
        run = _flow_run(deployment, record=str(tmp_path / "missing" / "record.json"))
        argv, env, cwd = _command(run_env, run, tmp_path / "work", SLIPWAY_RUN_START=way)
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
        assert "FileNotFoundError" in done.stdout + done.stderr
        assert _state(run) == "FAILED"
        codes.append(done.returncode)
    assert codes[0] == codes[1]


def test_when_the_worker_kills_the_command_its_forked_run_dies_too(
    starter, run_env, deployment, tmp_path
):
    record = tmp_path / "record.json"
    run = _flow_run(deployment, record=str(record), seconds=120)
    argv, env, cwd = _command(run_env, run, tmp_path / "work")
    command = subprocess.Popen(argv, env=env, cwd=cwd)
    deadline = time.monotonic() + 90
    while not record.exists():
        assert time.monotonic() < deadline and command.poll() is None
        time.sleep(0.2)
    pid = json.loads(record.read_text())["pid"]
    command.send_signal(signal.SIGKILL)  # what the worker does after a cancel's grace period
    command.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid):
        assert time.monotonic() < deadline, "the forked run outlived its command"
        time.sleep(0.1)


def test_a_run_whose_starter_dies_keeps_its_command_until_it_ends(run_env, deployment, tmp_path):
    starter = _start_starter(run_env, tmp_path)
    record = tmp_path / "record.json"
    run = _flow_run(deployment, record=str(record), seconds=120)
    argv, env, cwd = _command(run_env, run, tmp_path / "work")
    command = subprocess.Popen(argv, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not record.exists():
        assert time.monotonic() < deadline and command.poll() is None
        time.sleep(0.2)
    starter.kill()
    starter.wait(timeout=10)
    time.sleep(1)
    assert command.poll() is None  # the run still works: its command waits for it
    os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)
    assert command.wait(timeout=10) == 1
    assert command.stderr is not None
    assert "the run starter stopped during this flow run" in command.stderr.read()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_without_a_starter_the_run_starts_cold_and_still_completes(run_env, deployment, tmp_path):
    record = tmp_path / "record.json"
    run = _flow_run(deployment, record=str(record))
    argv, env, cwd = _command(run_env, run, tmp_path / "work")
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no warm run starter" in done.stderr and "starting cold" in done.stderr
    assert json.loads(record.read_text())["ppid"] == os.getpid()  # the command ran it itself
    assert _state(run) == "COMPLETED"


def test_the_starter_preloads_libraries_but_none_of_the_platform():
    code = (
        "import sys\n"
        "from slipway.prefect_patches.warm_server import preload\n"
        "loaded = preload()\n"
        "mine = sorted({m.split('.')[0] for m in sys.modules} & {'blocks', 'tasks', 'flows'})\n"
        "print(mine, 'docker' in loaded, 'prefect.flow_engine' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] True True"
