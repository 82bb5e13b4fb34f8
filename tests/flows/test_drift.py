"""detect-drift against real Terraform state and real containers on the Docker engine.

Each test provisions an environment with the real flow, then plays the release
step itself: it starts a container of the release contract (name
``<service>-<environment>-<sha12>``, ``dev.slipway.*`` labels) with the docker
SDK, serving on a loopback port. Then something drifts, and detect-drift must
say so; with ``reconcile`` it must put it right.
"""

from __future__ import annotations

import fcntl
import io
import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from blocks.deploy_target import DeployTarget
from blocks.terraform_backend import TerraformBackend
from flows.drift import DRIFT_EVENT, EnvironmentStatus, detect_drift
from flows.environments import provision_environment
from slipway.errors import TerraformError
from tasks.catalog import Catalog
from tasks.containers import confinement, docker_client, is_confined
from tasks.terraform import Terraform
from tests.conftest import Platform, configure_platform, free_port
from tests.flows.terraform_helpers import (
    MODULE,
    add_service,
    catalog_entry,
    latest_artifact,
    unique,
    wait_events,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

BASE = "local/python-base:bookworm"
SHA = "3f2a9c1e7b4d" + "0" * 28


@pytest.fixture(scope="module")
def platform(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    configured = configure_platform(tmp_path_factory.mktemp("drift"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLIPWAY_HOME", str(configured.home.root))
        yield configured


@pytest.fixture(scope="module")
def engine(platform: Platform) -> docker.DockerClient:
    """The deploy target's engine; fails with the fix when it is not running."""
    return docker_client(DeployTarget.load_default())


@pytest.fixture(scope="module")
def other_image(engine: docker.DockerClient) -> Iterator[str]:
    """An image that is not the released one: the base with one more label."""
    tag = f"local/slipway-drift-other:{unique('t')}"
    dockerfile = io.BytesIO(f"FROM {BASE}\nLABEL dev.slipway.test=other\n".encode())
    engine.images.build(fileobj=dockerfile, tag=tag, rm=True)
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture
def service(platform: Platform, engine: docker.DockerClient) -> Iterator[str]:
    """A catalog service whose containers and entry go away after the test."""
    name = unique("drift")
    yield name
    for container in engine.containers.list(
        all=True, filters={"label": f"dev.slipway.service={name}"}
    ):
        container.remove(force=True)
    Catalog.load_default().remove(name, message=f"test: remove {name}")


def serve(
    engine: docker.DockerClient,
    service: str,
    environment: str,
    *,
    port: int,
    image: str = BASE,
    label_image: str = BASE,
    label_port: int | None = None,
    env_vars: dict[str, str] | None = None,
    confined: bool = True,
) -> Container:
    """A serving container of the release contract, as build-test-deploy leaves it.

    ``confined=False``: as root, with capabilities and no limits, as one started by hand.
    """
    labels = {
        "dev.slipway.service": service,
        "dev.slipway.environment": environment,
        "dev.slipway.sha": SHA,
        "dev.slipway.image": label_image,
        "dev.slipway.port": str(label_port or port),
        "dev.slipway.live": "true",
    }
    command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    how = confinement(engine, image, DeployTarget()).options() if confined else {}
    return engine.containers.run(
        image,
        command,
        name=f"{service}-{environment}-{SHA[:12]}",
        labels=labels,
        environment=env_vars or {},
        detach=True,
        **{"network_mode": "host", **how},
    )


def status_of(
    statuses: list[EnvironmentStatus], service: str, environment: str
) -> EnvironmentStatus:
    found = [s for s in statuses if (s.service, s.environment) == (service, environment)]
    assert len(found) == 1, statuses
    return found[0]


def provisioned(service: str, **variables: object) -> int:
    """Onboard ``service`` on a free port and provision its dev environment; the port."""
    port = free_port()
    add_service(service, port=port, environments=("dev",))
    provision_environment(service, "dev", dict(variables))
    return port


def test_a_stopped_container_is_out_of_sync_with_an_event_and_reconcile_starts_it(
    engine: docker.DockerClient, service: str
):
    port = provisioned(service, env_vars={"MODE": "blue"})
    container = serve(engine, service, "dev", port=port, env_vars={"MODE": "blue"})
    in_sync = status_of(detect_drift(), service, "dev")
    assert in_sync.status == "InSync", in_sync.reasons

    container.stop(timeout=1)
    drifted = status_of(detect_drift(), service, "dev")
    assert drifted.status == "OutOfSync"
    assert any(f"{container.name} is exited" in r for r in drifted.reasons), drifted.reasons
    events = wait_events(DRIFT_EVENT, f"slipway.environment.{service}.dev")
    assert "is exited" in str(events[0].payload["reasons"])
    assert service in str(latest_artifact("drift-report").data)

    healed = status_of(detect_drift(reconcile=True), service, "dev")
    assert healed.status == "InSync", healed.reasons
    assert f"started {container.name}" in healed.actions
    container.reload()
    assert container.status == "running"


def test_a_container_from_another_image_is_detected_and_reconcile_runs_the_recorded_one(
    engine: docker.DockerClient, service: str, other_image: str
):
    port = provisioned(service)
    serve(engine, service, "dev", port=port).remove(force=True)
    rogue = serve(engine, service, "dev", port=port, image=other_image)  # the release's labels
    drifted = status_of(detect_drift(), service, "dev")
    assert drifted.status == "OutOfSync"
    assert any(f"recorded {BASE}" in r for r in drifted.reasons), drifted.reasons

    healed = status_of(detect_drift(reconcile=True), service, "dev")
    assert healed.status == "InSync", healed.reasons
    assert any(a.startswith(f"replaced {rogue.name} with {BASE}") for a in healed.actions)
    now = engine.containers.get(rogue.name)
    assert now.id != rogue.id and now.status == "running"
    assert now.attrs["Image"] == engine.images.get(BASE).id
    assert now.attrs["Config"]["Cmd"][-1] == str(port)  # its command came along
    names = [
        c.name
        for c in engine.containers.list(
            all=True, filters={"label": f"dev.slipway.service={service}"}
        )
    ]
    assert names == [rogue.name]  # the drifted container is gone


def test_a_container_running_unconfined_is_drift_and_reconcile_replaces_it_confined(
    engine: docker.DockerClient, service: str
):
    port = provisioned(service)
    loose = serve(engine, service, "dev", port=port, confined=False)
    drifted = status_of(detect_drift(), service, "dev")
    assert drifted.status == "OutOfSync"
    assert any(f"{loose.name} runs unconfined" in r for r in drifted.reasons), drifted.reasons

    healed = status_of(detect_drift(reconcile=True), service, "dev")
    assert healed.status == "InSync", healed.reasons
    now = engine.containers.get(loose.name)
    assert now.id != loose.id and now.status == "running" and is_confined(now.attrs)
    assert now.attrs["Config"]["User"] == "65534:65534"
    assert now.attrs["HostConfig"]["NetworkMode"] == "host"


def test_port_environment_and_unclaimed_containers_are_reported_without_values(
    engine: docker.DockerClient, service: str
):
    port = provisioned(service, env_vars={"MODE": "blue"})
    serve(engine, service, "dev", port=port, label_port=port + 1, env_vars={"MODE": "green"})
    ghost = unique("ghost")
    try:
        serve(engine, ghost, "dev", port=free_port())
        statuses = detect_drift()
    finally:
        for c in engine.containers.list(
            all=True, filters={"label": f"dev.slipway.service={ghost}"}
        ):
            c.remove(force=True)
    dev = status_of(statuses, service, "dev")
    assert dev.status == "OutOfSync"
    assert any(f"serves port {port + 1}, state says {port}" in r for r in dev.reasons), dev.reasons
    assert any("other values for MODE" in r for r in dev.reasons)
    assert "green" not in str(dev.reasons)  # values may be secrets: never reported
    unclaimed = status_of(statuses, ghost, "dev")
    assert unclaimed.status == "OutOfSync"
    assert "belongs to no provisioned environment" in unclaimed.reasons[0]


def test_terraform_state_changed_or_lost_outside_slipway_is_detected_and_reapplied(
    platform: Platform, engine: docker.DockerClient, service: str, tmp_path: Path
):
    port = provisioned(service)
    serve(engine, service, "dev", port=port)
    by_hand = Terraform(TerraformBackend.load_default(), workspaces=tmp_path / "by-hand")
    ws = by_hand.workspace(MODULE, service, "dev")
    variables = {"service": service, "environment": "dev", "port": port, "replicas": 2}
    by_hand.apply(ws, by_hand.plan(ws, variables))

    drifted = status_of(detect_drift(), service, "dev")
    assert drifted.status == "OutOfSync"
    assert "configuration not applied: 0 to add, 1 to change, 0 to destroy" in drifted.reasons
    assert "1 running, Terraform state says 2" in drifted.reasons

    healed = status_of(detect_drift(reconcile=True), service, "dev")
    assert healed.status == "InSync", healed.reasons
    assert "applied the checked plan (0 to add, 1 to change, 0 to destroy)" in healed.actions
    assert by_hand.output(ws)["replicas"].value == 1

    (platform.home.terraform / "state" / service / "dev.tfstate").unlink()
    lost = status_of(detect_drift(), service, "dev")
    assert any("Terraform state has no resources" in r for r in lost.reasons), lost.reasons
    healed = status_of(detect_drift(reconcile=True), service, "dev")
    assert healed.status == "InSync", healed.reasons
    assert catalog_entry(service).outputs["dev"].port == port


def test_a_terraform_error_fails_the_run_with_the_diagnostic_and_reports_unknown(
    platform: Platform, engine: docker.DockerClient, service: str
):
    port = provisioned(service)
    serve(engine, service, "dev", port=port)
    state = platform.home.terraform / "state" / service / "dev.tfstate"
    with state.open("r+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another Terraform run would
        with pytest.raises(TerraformError) as caught:
            detect_drift()
    assert "Error acquiring the state lock" in str(caught.value)
    assert any(service in d for d in caught.value.diagnostics)
    data = latest_artifact("drift-report").data
    rows = json.loads(data) if isinstance(data, str) else data
    row = next(r for r in rows if r["service"] == service)
    assert row["status"] == "Unknown" and "state lock" in row["reasons"]
