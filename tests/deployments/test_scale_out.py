"""Scale-out: a Prefect server on a real PostgreSQL 15 and worker hosts on the work pool.

Two `slipway up --role worker` processes with their own homes stand in for two
hosts. They fetch a throwaway "platform repository" (holding the small
`scale_probe` flow) with the same pull step as prefect.yaml, at the commit the
server pinned, into one shared checkout per host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from deployments.components import Database, check_database, server_api_url
from deployments.pool import (
    COMMIT_VARIABLE,
    CrashDetection,
    check_entrypoints_committed,
    platform_code,
)
from deployments.serve import pull_steps, runner_deployments
from deployments.state import UpState
from slipway.errors import ComponentError, ConfigurationError
from tests.deployments.conftest import (
    REPO,
    SLIPWAY,
    alive,
    api_post,
    processes_of_home,
)
from tests.deployments.conftest import slipway_env as clean_env

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=ci@slipway.test", "-c", "user.name=ci", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _probe_repository(root: Path) -> Path:
    """A git repository standing in for the platform: the probe flow, prefect.yaml's pull step."""
    root.mkdir(parents=True)
    (root / "probe").mkdir()
    shutil.copy(Path(__file__).with_name("scale_probe.py"), root / "probe" / "scale_probe.py")
    platform = yaml.safe_load((REPO / "prefect.yaml").read_text())
    manifest = {
        "name": "scale-probe",
        "pull": platform["pull"],  # the platform's own pull step, unchanged
        "deployments": [
            {
                "name": "scale-probe",
                "entrypoint": "probe/scale_probe.py:scale_probe",
                "work_pool": {"name": "slipway"},
            }
        ],
    }
    (root / "prefect.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    _git("init", "-q", "-b", "main", cwd=root)
    _git("add", "-A", cwd=root)
    _git("commit", "-q", "-m", "probe", cwd=root)
    return root


# -- fast checks: no server ---------------------------------------------------


def test_a_database_url_prefect_cannot_use_is_refused_and_the_password_is_never_shown():
    database = Database.parse("postgresql+asyncpg://slipway:hunter2@db.internal:5432/slipway")
    assert database.redacted == "postgresql+asyncpg://slipway:***@db.internal:5432/slipway"
    assert "hunter2" not in repr(database) and "hunter2" not in database.describe()
    assert database.url.get_secret_value().endswith("hunter2@db.internal:5432/slipway")
    for wrong in ("mysql://u:p@h/db", "postgresql://u:p@h/db", "postgresql+asyncpg:///nohost"):
        with pytest.raises(ConfigurationError, match=r"postgresql\+asyncpg://USER"):
            Database.parse(wrong)
    with pytest.raises(ValueError, match="password hidden"):
        UpState(
            supervisor_pid=1,
            marker="m",
            started_at="2024-01-01T00:00:00Z",
            ports={},
            project_dir="/",
            database="postgresql+asyncpg://slipway:hunter2@db/slipway",
        )


def test_worker_flags_are_checked_against_the_role_before_anything_starts(tmp_path):
    env = clean_env({"SLIPWAY_DATABASE_URL": "postgresql+asyncpg://u:topsecret@h/db"})
    cases = {
        ("--role", "worker"): "--server http://SERVER-HOST:4200",
        ("--role", "worker", "--server", "http://h:4200", "--database", "sqlite+aiosqlite:///x"): (
            "no database of its own"
        ),
        ("--role", "server", "--server", "http://h:4200"): "use --role worker",
        ("--role", "worker", "--server", "ftp://h"): "is not the URL of a Prefect server",
    }
    for flags, expected in cases.items():
        result = subprocess.run(
            [*SLIPWAY, "--home", str(tmp_path / "h"), "up", *flags],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, (flags, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "topsecret" not in result.stderr + result.stdout
    assert server_api_url("http://10.0.0.5:4200/") == "http://10.0.0.5:4200/api"


def test_checking_the_flags_leaves_prefect_unimported_until_up_points_it_at_its_server(
    tmp_path,
):
    # Prefect reads its settings (PREFECT_API_URL, PREFECT_HOME) once, at import:
    # imported earlier, `up` would write its blocks to some other server.
    repository = _probe_repository(tmp_path / "platform")
    script = (
        "import sys\n"
        "from dataclasses import replace\n"
        "from deployments import cli\n"
        "from deployments.supervisor import UpOptions\n"
        "from slipway.home import Ports, SlipwayHome\n"
        f"args = cli._parser().parse_args(['up', '--role', 'all', '--project', '{repository}'])\n"
        f"base = UpOptions(SlipwayHome(sys.argv[1]), Ports(), args.project)\n"
        "options = cli._with_role(base, args)\n"
        "assert options.code is not None and options.worker is not None\n"
        "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "home")],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_crash_detection_refuses_a_window_that_would_crash_healthy_runs():
    with pytest.raises(ConfigurationError, match="would crash healthy runs"):
        CrashDetection(heartbeat_seconds=30, crash_after_seconds=35)
    with pytest.raises(ConfigurationError, match="minimum of 30"):
        CrashDetection(heartbeat_seconds=10, crash_after_seconds=60)


def test_deployments_for_the_pool_pull_the_platform_at_the_commit_the_server_pins(tmp_path):
    steps = pull_steps(REPO)
    clone = steps[0]["slipway.checkouts.reuse_checkout"]
    assert clone["commit_sha"] == "{{ prefect.variables." + COMMIT_VARIABLE + " }}"
    repository = _probe_repository(tmp_path / "platform")
    (deployment,) = runner_deployments(repository, pool_steps=pull_steps(repository))
    assert deployment.work_pool_name == "slipway"
    assert deployment.entrypoint == "probe/scale_probe.py:scale_probe"
    assert deployment.storage is not None and deployment.storage.to_pull_step() == steps

    code = platform_code(repository)
    assert code.commit == _git("rev-parse", "HEAD", cwd=repository)
    assert code.repository == str(repository) and not code.dirty
    check_entrypoints_committed(repository, code)
    (repository / "probe" / "scale_probe.py").write_text("# changed\n")
    assert platform_code(repository).dirty

    # A flow that exists only in the checkout would fail on every worker: refused up front.
    manifest = yaml.safe_load((repository / "prefect.yaml").read_text())
    manifest["deployments"].append({"name": "fresh", "entrypoint": "probe/fresh.py:fresh"})
    (repository / "prefect.yaml").write_text(yaml.safe_dump(manifest))
    (repository / "probe" / "fresh.py").write_text("from prefect import flow\n")
    with pytest.raises(ConfigurationError, match=r"lacks the flow of fresh \(probe/fresh.py\)"):
        check_entrypoints_committed(repository, platform_code(repository))
    with pytest.raises(ConfigurationError, match="--repository URL and --commit SHA"):
        platform_code(tmp_path)


def test_a_wrong_postgres_password_fails_before_prefect_starts_and_is_not_shown(postgres):
    check_database(Database.parse(postgres.url))
    wrong = postgres.url.replace(postgres.password, "not-the-password")
    with pytest.raises(ComponentError, match="password authentication failed") as caught:
        check_database(Database.parse(wrong))
    assert "not-the-password" not in str(caught.value)


# -- the real thing -----------------------------------------------------------


def _runs(server, ids: list[str]) -> dict[str, dict[str, object]]:
    found = api_post(
        server, "/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}, "limit": 200}
    )
    return {run["id"]: run for run in found.json()}


def _wait_terminal(server, ids: list[str], timeout: float) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(server, ids)
        if len(runs) == len(ids) and all(r["state"]["type"] in TERMINAL for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            states = Counter(r["state"]["type"] for r in runs.values())
            raise AssertionError(f"runs not finished after {timeout} s: {dict(states)}")
        time.sleep(1)


def _submit(server, deployment_id: str, count: int, **parameters: object) -> list[str]:
    path = f"/deployments/{deployment_id}/create_flow_run"
    return [api_post(server, path, {"parameters": parameters}).json()["id"] for _ in range(count)]


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _heartbeat_seen(server, run_id: str) -> bool:
    body = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 1,
    }
    return bool(api_post(server, "/events/filter", body).json()["events"])


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.5)


@pytest.mark.timeout(1200)  # ~3 min on 2 idle cores; each flow run starts two Python processes
def test_two_worker_hosts_on_postgres_run_every_flow_run_once_and_survive_losing_one(
    postgres, make_up, tmp_path
):
    repository = _probe_repository(tmp_path / "platform")
    server = make_up(
        home=tmp_path / "server",
        extra_env={"SLIPWAY_DATABASE_URL": postgres.url},
        args=["--role", "server", "--project", str(repository), "--crash-after", "45"],
    )
    server.start(timeout=240)
    url = server.api_url.removesuffix("/api")
    hosts = {
        name: make_up(
            home=tmp_path / name,
            args=[
                *("--role", "worker", "--server", url, "--worker-name", name),
                *("--poll-seconds", "1", "--limit", "2"),
            ],
        )
        for name in ("host-a", "host-b")
    }
    for host in hosts.values():
        host.take_keys_of(server)
        host.launch()
    for host in hosts.values():
        host.wait_ready(timeout=120)

    (deployment,) = api_post(
        server, "/deployments/filter", {"deployments": {"name": {"any_": ["scale-probe"]}}}
    ).json()
    assert deployment["work_pool_name"] == "slipway" and deployment["pull_steps"]
    record = tmp_path / "runs.jsonl"

    # 20 runs: each runs exactly once, and both hosts take some.
    ids = _submit(server, deployment["id"], 20, record=str(record))
    runs = _wait_terminal(server, ids, timeout=480)
    assert {r["state"]["type"] for r in runs.values()} == {"COMPLETED"}
    assert all(r["run_count"] == 1 for r in runs.values())
    records = _records(record)
    assert Counter(str(r["run"]) for r in records) == Counter(ids)
    by_host = Counter(str(r["worker"]) for r in records)
    assert set(by_host) == set(hosts) and min(by_host.values()) >= 2, by_host
    commit = _git("rev-parse", "HEAD", cwd=repository)
    for r in records:  # each host ran the pinned commit, from its own checkout of it
        assert r["cwd"] == str(hosts[str(r["worker"])].home / "checkouts" / commit), r
        assert str(r["module"]).startswith(str(r["cwd"])), r
        assert "slipway.prefect_patches.warm_server" in str(r["parent"]), r  # forked warm

    # A long run; once it has sent a heartbeat, its host dies (every process, at once).
    (slow,) = _submit(server, deployment["id"], 1, record=str(record), seconds=600)
    _wait(lambda: any(r["run"] == slow for r in _records(record)), 120, "the slow run's start")
    _wait(lambda: _heartbeat_seen(server, slow), 60, "the slow run's first heartbeat")
    started = next(r for r in _records(record) if r["run"] == slow)
    victim = hosts[str(started["worker"])]
    survivor = next(h for h in hosts.values() if h is not victim)
    assert victim.process is not None
    victim.process.kill()  # its `slipway up` first, so nothing restarts the worker
    for pid in processes_of_home(victim.home):  # the worker and its flow run
        os.kill(pid, signal.SIGKILL)
    assert victim.process.wait(timeout=30) == -signal.SIGKILL
    _wait(lambda: not alive(int(started["pid"])), 10, "the slow run's end")
    killed_at = time.monotonic()

    # The other host keeps taking new runs.
    after = _submit(server, deployment["id"], 3, record=str(record))
    runs = _wait_terminal(server, after, timeout=180)
    assert {r["state"]["type"] for r in runs.values()} == {"COMPLETED"}
    names = {str(r["worker"]) for r in _records(record) if r["run"] in after}
    assert names == {survivor.home.name}

    # The lost run is marked Crashed by the server, not left Running.
    remaining = 45 + 60 - (time.monotonic() - killed_at)
    (lost,) = _wait_terminal(server, [slow], timeout=max(remaining, 10)).values()
    assert lost["state"]["type"] == "CRASHED", lost["state"]
    assert "No heartbeat for 45 s" in lost["state"]["message"]

    # The database password shows nowhere: not in output, status, state or logs.
    status = server.cli("status")
    assert f"PostgreSQL postgresql+asyncpg://slipway:***@127.0.0.1:{postgres.port}" in status.stdout
    assert "host-" in status.stdout and " workers " in status.stdout
    worker_status = survivor.cli("status")
    worker_line = next(line for line in worker_status.stdout.splitlines() if "  worker " in line)
    assert "healthy" in worker_line and survivor.home.name in worker_line, worker_status.stdout
    texts = [status.stdout, status.stderr, "".join(server.output), worker_status.stdout]
    for home in (server.home, *(h.home for h in hosts.values())):
        texts += [
            p.read_text(errors="replace") for p in home.rglob("*") if p.suffix in (".log", ".json")
        ]
    assert not [t for t in texts if postgres.password in t]

    survivor.down()
    server.down()
