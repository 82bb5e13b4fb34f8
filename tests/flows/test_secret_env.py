"""A secret environment variable, from its Secret block to the container, and nowhere in between.

Real Prefect, Terraform, git, registry and Docker engine: the environment is
provisioned with a reference to a Secret block, a commit is built and
released into it, and the secret's value is then looked for everywhere an API
caller or a reader of the data directory could see it.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.sorting import FlowRunSort

from flows.delivery import build_test_deploy
from flows.environments import provision_environment
from slipway.errors import InvalidRequest
from tasks.catalog import Catalog
from tasks.release import live_container
from tests.flows.delivery_fixtures import Delivery, delivery_platform

pytestmark = pytest.mark.docker

REF = "refs/heads/main"
VALUE = f"sw-{secrets.token_urlsafe(24)}"
"""The secret: it must reach the container and nothing else."""


@pytest.fixture(scope="module")
def delivery(
    prefect_server: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Delivery]:
    with delivery_platform(request, tmp_path_factory) as configured:
        yield configured


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]


def _git_objects_holding(repository: str, needle: str) -> list[str]:
    """Every object of every commit of the catalog, as git would hand it to a clone."""
    listed = subprocess.run(
        ["git", "--git-dir", repository, "rev-list", "--all", "--objects"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = []
    for sha in {line for line in listed if len(line) == 40}:
        body = subprocess.run(
            ["git", "--git-dir", repository, "cat-file", "-p", sha],
            capture_output=True,
            check=True,
        ).stdout
        if needle.encode() in body:
            found.append(sha)
    return found


def test_a_secret_env_var_reaches_the_container_and_no_record_on_the_way(
    delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service, block = delivery.service, f"{delivery.service}-db-password"
    Secret(value=VALUE).save(block, overwrite=True)
    staging = {"port": delivery.ports["staging"], "env_vars": {"MODE": "staging"}}

    # A value where a reference belongs, or a block that does not exist: refused before Terraform.
    for wrong, message in [
        ("hunter2-Pasted+Value", "must be the name of a Secret block, not a value"),
        ("no-such-block", "does not exist"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            provision_environment(service, "staging", {**staging, "secret_env": {"DB": wrong}})
    assert not (delivery.home.terraform / "state" / service / "staging.tfstate").exists()

    provision_environment(service, "staging", {**staging, "secret_env": {"DB_PASSWORD": block}})
    build_test_deploy(service, delivery.commit(), REF, environment="staging")

    live = live_container(delivery.client, service, "staging")  # type: ignore[arg-type]
    assert live is not None
    container = delivery.client.containers.get(live.name)  # type: ignore[attr-defined]
    environment = container.attrs["Config"]["Env"]
    assert f"DB_PASSWORD={VALUE}" in environment and "MODE=staging" in environment

    catalog = Catalog.load_default()
    assert _git_objects_holding(catalog.url, VALUE) == []
    recorded = catalog.get(service).outputs["staging"]
    assert recorded.variables is not None
    assert recorded.variables["secret_env"] == {"DB_PASSWORD": block}  # the name, not the value
    assert _files_holding(delivery.home.root, VALUE.encode()) == []  # state, tfvars, store
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200)
        artifacts = client.request("POST", "/artifacts/filter", json={"limit": 200}).text
    mine = [r for r in runs if r.parameters.get("service") == service]
    assert {r.name for r in mine} and all(VALUE not in str(r.parameters) for r in mine)
    assert VALUE not in artifacts
    assert VALUE not in caplog.text
