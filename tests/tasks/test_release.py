"""Blue-green releases on the real Docker engine, and the history and slot kept in Prefect."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from blocks import DeployTarget
from slipway.errors import DeployError, InvalidRequest, Superseded
from slipway.home import SlipwayHome
from slipway.signing import ensure_signing_key
from tasks.containers import is_confined
from tasks.images import build_image, image_repository, push_image
from tasks.release import (
    LABEL_ENVIRONMENT,
    LABEL_IMAGE,
    LABEL_LIVE,
    LABEL_PORT,
    LABEL_SERVICE,
    LABEL_SHA,
    DeploymentRecord,
    Release,
    already_serving,
    container_name,
    deploy_release,
    deploy_slot,
    deployment_history,
    first_try_at_slot,
    let_go,
    live_container,
    record_deployment,
    rollback_target,
    start_trial,
)
from tasks.release.candidate import Trial
from tasks.release.slot import LEASE_SECONDS, recent_runs, slot_name
from tests.conftest import free_port
from tests.flows.delivery_fixtures import (
    BASE_IMAGE,
    Poller,
    container_events,
    docker_or_skip,
    registry_block,
    remove_service_containers,
    remove_service_images,
    render_source,
    shared_registry,
    variant,
)

pytestmark = pytest.mark.docker

TARGET = DeployTarget()
TIMEOUT = 10.0
DRAIN_SECONDS = 4.0


@dataclass(frozen=True)
class Shipped:
    sha: str
    image: str


@dataclass
class Images:
    client: object
    service: str
    v1: Shipped
    v2: Shipped
    unhealthy: Shipped
    v1_rebuilt: Shipped
    """v1's tree and commit built again: the same content, its own build time and digest."""
    rooted: Shipped
    """A Dockerfile with ``USER root``: never released."""
    draining: Shipped
    """Lets its port go on SIGTERM, then exits only `DRAIN_SECONDS` later."""

    def containers(self, environment: str) -> list[object]:
        return self.client.containers.list(  # type: ignore[attr-defined, no-any-return]
            all=True,
            filters={
                "label": [f"{LABEL_SERVICE}={self.service}", f"{LABEL_ENVIRONMENT}={environment}"]
            },
        )

    def deploy(
        self,
        shipped: Shipped,
        environment: str,
        port: int,
        *,
        timeout: float = TIMEOUT,
        trial: Trial | None = None,
    ) -> object:
        release = Release(self.service, environment, shipped.sha, shipped.image, port)
        return deploy_release.fn(
            self.client, release, target=TARGET, health_timeout=timeout, trial=trial
        )


@pytest.fixture(scope="module")
def images(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Images]:
    client = docker_or_skip()
    root = tmp_path_factory.mktemp("release")
    service = f"rel-{uuid.uuid4().hex[:8]}"
    registry = registry_block(shared_registry(request, tmp_path_factory))
    source = render_source(root / "src", service, 8080)

    trees: dict[str, Path] = {}

    # The same base under another name: another build argument, so v1 is built again, not reused.
    base_alias = f"{BASE_IMAGE.partition(':')[0]}:rebuild-{service}"
    client.images.get(BASE_IMAGE).tag(base_alias)

    def ship(*, again: Shipped | None = None, rooted: bool = False, **breakage: Any) -> Shipped:
        sha = again.sha if again else uuid.uuid4().hex + "0" * 8
        if sha not in trees:
            trees[sha] = variant(source, root / sha, marker=uuid.uuid4().hex, **breakage)
        tree = trees[sha]
        if rooted:
            dockerfile = tree / "Dockerfile"
            dockerfile.write_text(dockerfile.read_text().replace("USER 65534", "USER root"))
        built = build_image.fn(
            client,
            tree,
            service=service,
            sha=sha,
            repository=image_repository(registry, service),
            base_image=base_alias if again else BASE_IMAGE,
        )
        return Shipped(sha, push_image.fn(client, built, registry=registry).reference)

    try:
        v1 = ship()
        v2, unhealthy = ship(), ship(unhealthy=True)
        time.sleep(1.1)  # the build time label has whole seconds
        draining = ship(drain_seconds=DRAIN_SECONDS)
        rebuilt, rooted = ship(again=v1), ship(rooted=True)
        yield Images(client, service, v1, v2, unhealthy, rebuilt, rooted, draining)
    finally:
        remove_service_containers(client, service)
        remove_service_images(client, image_repository(registry, service))
        client.images.remove(base_alias)


def _version(port: int) -> str:
    return str(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["version"])


def test_a_first_release_follows_the_container_contract(
    images: Images, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_platform_secret")
    port = free_port()
    deployed = images.deploy(images.v1, "first", port)
    assert deployed.url == f"http://127.0.0.1:{port}/"  # type: ignore[attr-defined]
    assert deployed.replaced is None  # type: ignore[attr-defined]
    [container] = images.containers("first")
    assert container.name == f"{images.service}-first-{images.v1.sha[:12]}"  # type: ignore[attr-defined]
    assert container.name == container_name(images.service, "first", images.v1.sha)  # type: ignore[attr-defined]
    assert container.labels == {  # type: ignore[attr-defined]
        **container.labels,  # type: ignore[attr-defined]
        LABEL_SERVICE: images.service,
        LABEL_ENVIRONMENT: "first",
        LABEL_SHA: images.v1.sha,
        LABEL_IMAGE: images.v1.image,
        LABEL_PORT: str(port),
        LABEL_LIVE: "true",
    }
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"  # type: ignore[attr-defined]
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"  # type: ignore[attr-defined]
    assert _version(port) == images.v1.sha
    host = container.attrs["HostConfig"]  # type: ignore[attr-defined]
    assert container.attrs["Config"]["User"] == "65534"  # type: ignore[attr-defined]
    assert (host["ReadonlyRootfs"], host["CapDrop"], host["Privileged"]) == (True, ["ALL"], False)
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (512 * 2**20, 10**9, 256)
    assert list(host["Tmpfs"]) == ["/tmp"] and container.attrs["Mounts"] == []  # type: ignore[attr-defined]
    assert is_confined(container.attrs)  # type: ignore[attr-defined]
    env = {e.partition("=")[0] for e in container.attrs["Config"]["Env"]}  # type: ignore[attr-defined]
    assert {"HOST", "PORT", "GIT_SHA"} <= env and not any(k.startswith("PREFECT") for k in env)
    live = live_container(images.client, images.service, "first")  # type: ignore[arg-type]
    assert live is not None and live.image == images.v1.image and live.port == port


def test_a_switch_serves_the_new_version_after_a_gap_of_one_start(images: Images) -> None:
    port = free_port()
    images.deploy(images.v1, "switch", port)
    with Poller(f"http://127.0.0.1:{port}/healthz") as poller:
        deployed = images.deploy(images.v2, "switch", port)
        deadline = time.monotonic() + 5
        while poller.versions[-1] != images.v2.sha and time.monotonic() < deadline:
            time.sleep(0.05)
    assert poller.versions == [images.v1.sha, images.v2.sha]
    assert deployed.replaced == container_name(images.service, "switch", images.v1.sha)  # type: ignore[attr-defined]
    assert 0 < deployed.switch_seconds < 5  # type: ignore[attr-defined]
    assert poller.outage_seconds() <= deployed.switch_seconds + 0.5  # type: ignore[attr-defined]
    [container] = images.containers("switch")
    assert container.labels[LABEL_SHA] == images.v2.sha  # type: ignore[attr-defined]


def test_the_new_version_starts_once_the_old_one_lets_its_port_go_not_after_its_drain(
    images: Images,
) -> None:
    port = free_port()
    images.deploy(images.draining, "drain", port)
    with Poller(f"http://127.0.0.1:{port}/healthz") as poller:
        began = time.monotonic()
        deployed = images.deploy(images.v2, "drain", port)
        took = time.monotonic() - began
    assert poller.versions == [images.draining.sha, images.v2.sha]
    assert poller.outage_seconds() < DRAIN_SECONDS / 2
    assert deployed.switch_seconds < DRAIN_SECONDS / 2  # type: ignore[attr-defined]
    assert took >= DRAIN_SECONDS  # the old version was let drain, not killed
    [container] = images.containers("drain")  # the old one was stopped, then removed
    assert container.labels[LABEL_SHA] == images.v2.sha  # type: ignore[attr-defined]


def test_an_unhealthy_candidate_leaves_the_old_version_serving_without_a_failed_request(
    images: Images,
) -> None:
    port = free_port()
    images.deploy(images.v1, "guarded", port)
    began = time.monotonic()
    with Poller(f"http://127.0.0.1:{port}/healthz") as poller:
        with pytest.raises(DeployError, match="did not become healthy") as error:
            images.deploy(images.unhealthy, "guarded", port, timeout=5)
        time.sleep(0.3)
    assert time.monotonic() - began >= 5
    assert "HTTP 503" in str(error.value) and "never ready" in str(error.value)
    assert poller.ok > 20 and poller.failures == []
    assert poller.versions == [images.v1.sha]
    [container] = images.containers("guarded")  # the candidate is gone
    assert container.labels[LABEL_SHA] == images.v1.sha  # type: ignore[attr-defined]
    assert container.status == "running"  # type: ignore[attr-defined]


def _trial(images: Images, shipped: Shipped, environment: str, port: int, **kw: Any) -> Trial:
    """A trial of ``shipped``'s local image, as build-test-deploy starts one beside its tests."""
    image_id = str(images.client.images.get(shipped.image).id)  # type: ignore[attr-defined]
    repository = shipped.image.partition("@")[0]
    release = Release(images.service, environment, shipped.sha, f"{repository}@{image_id}", port)
    return start_trial.fn(images.client, release, image_id, target=TARGET, **kw)  # type: ignore[arg-type]


def _created(images: Images, environment: str, since: datetime) -> list[str]:
    """The names of the containers the engine created in ``environment`` since ``since``."""
    labels = [f"{LABEL_SERVICE}={images.service}", f"{LABEL_ENVIRONMENT}={environment}"]
    found = container_events(images.client, since, event="create", label=labels)
    return [str(e["Actor"]["Attributes"]["name"]) for e in found]


def test_a_trial_started_before_the_push_is_the_switchs_candidate(images: Images) -> None:
    began, port = datetime.now(UTC), free_port()
    images.deploy(images.v1, "trial", port)
    trial = _trial(images, images.v2, "trial", port, health_timeout=TIMEOUT)
    assert trial.candidate is not None and trial.failure is None
    assert _version(trial.port) == images.v2.sha and _version(port) == images.v1.sha
    assert trial.candidate.labels[LABEL_LIVE] == "false"  # type: ignore[attr-defined]
    # It yields the cores to the tests it runs beside; the serving container does not.
    assert trial.candidate.attrs["HostConfig"]["CpuShares"] == 128  # type: ignore[attr-defined]

    deployed = images.deploy(images.v2, "trial", port, trial=trial)

    old, new = (container_name(images.service, "trial", v.sha) for v in (images.v1, images.v2))
    assert _created(images, "trial", began) == [old, f"{new}-candidate", new]  # no other candidate
    assert deployed.replaced == container_name(images.service, "trial", images.v1.sha)
    [container] = images.containers("trial")  # the trial's candidate is gone after the switch
    assert container.labels[LABEL_IMAGE] == images.v2.image  # type: ignore[attr-defined]
    assert container.attrs["HostConfig"]["CpuShares"] == 0  # type: ignore[attr-defined]
    assert _version(port) == images.v2.sha


def test_a_trial_of_another_image_is_removed_and_a_candidate_started_again(
    images: Images,
) -> None:
    began, port = datetime.now(UTC), free_port()
    images.deploy(images.v1, "mistried", port)
    trial = _trial(images, images.v1_rebuilt, "mistried", port, health_timeout=TIMEOUT)
    assert trial.candidate is not None

    images.deploy(images.v2, "mistried", port, trial=trial)

    old, name = (container_name(images.service, "mistried", v.sha) for v in (images.v1, images.v2))
    assert _created(images, "mistried", began) == [
        old,
        f"{old}-candidate",  # the trial, of v1's content built again
        f"{name}-candidate",
        name,
    ]
    assert [c.name for c in images.containers("mistried")] == [name]  # type: ignore[attr-defined]
    assert _version(port) == images.v2.sha


def test_a_release_whose_gate_raises_changes_nothing(images: Images) -> None:
    began, port = datetime.now(UTC), free_port()
    images.deploy(images.v1, "gated", port)
    trial = _trial(images, images.v2, "gated", port, health_timeout=TIMEOUT)
    release = Release(images.service, "gated", images.v2.sha, images.v2.image, port)

    def newer_push() -> None:
        raise Superseded("superseded by a newer push")

    with pytest.raises(Superseded):
        deploy_release.fn(
            images.client,  # type: ignore[arg-type]
            release,
            target=TARGET,
            health_timeout=TIMEOUT,
            before_switch=newer_push,
            trial=trial,
        )
    old, new = (container_name(images.service, "gated", v.sha) for v in (images.v1, images.v2))
    assert _created(images, "gated", began) == [old, f"{new}-candidate"]  # only the trial's
    assert _version(port) == images.v1.sha
    trial.discard()  # as build-test-deploy does when its release ends early
    assert [c.name for c in images.containers("gated")] == [old]  # type: ignore[attr-defined]


def test_a_failed_trial_fails_the_release_and_the_old_version_keeps_serving(
    images: Images,
) -> None:
    port = free_port()
    images.deploy(images.v1, "trial-failed", port)
    with Poller(f"http://127.0.0.1:{port}/healthz") as poller:
        trial = _trial(images, images.unhealthy, "trial-failed", port, health_timeout=3)
        assert trial.candidate is None and trial.failure is not None
        deploying = time.monotonic()
        with pytest.raises(DeployError, match="did not become healthy within 3 s") as error:
            images.deploy(images.unhealthy, "trial-failed", port, trial=trial)
        assert time.monotonic() - deploying < 2  # its failure, not a second candidate's
    assert "HTTP 503" in str(error.value)
    assert poller.ok > 10 and poller.failures == [] and poller.versions == [images.v1.sha]
    [container] = images.containers("trial-failed")  # the failed candidate is gone
    assert container.labels[LABEL_SHA] == images.v1.sha  # type: ignore[attr-defined]


def test_an_abandoned_trial_stops_waiting_and_leaves_no_container(images: Images) -> None:
    """build-test-deploy abandons its trial when the tests it ran beside fail."""
    port = free_port()
    images.deploy(images.v1, "abandoned", port)
    began = time.monotonic()
    trial = _trial(
        images,
        images.unhealthy,  # never answers healthy: only abandoning ends the wait
        "abandoned",
        port,
        health_timeout=TIMEOUT,
        abandoned=lambda: time.monotonic() - began > 1.5,
    )
    assert time.monotonic() - began < 5
    assert trial.candidate is None and trial.failure is not None
    assert "abandoned" in trial.failure.message
    [container] = images.containers("abandoned")  # only the serving version
    assert container.labels[LABEL_SHA] == images.v1.sha  # type: ignore[attr-defined]
    assert _version(port) == images.v1.sha


def test_with_nothing_serving_a_trial_starts_nothing(images: Images) -> None:
    port = free_port()
    trial = _trial(images, images.v1, "trial-first", port, health_timeout=TIMEOUT)
    assert trial.candidate is None and trial.failure is None
    assert images.containers("trial-first") == []


def test_deploying_the_running_commit_again_replaces_it_under_the_same_name(images: Images) -> None:
    port = free_port()
    images.deploy(images.v1, "again", port)
    deployed = images.deploy(images.v1, "again", port)
    [container] = images.containers("again")
    assert container.name == container_name(images.service, "again", images.v1.sha)  # type: ignore[attr-defined]
    assert deployed.replaced == f"{container.name}-previous"  # type: ignore[attr-defined]
    assert _version(port) == images.v1.sha


def test_a_release_that_already_runs_is_recognised_by_content_port_and_environment(
    images: Images,
) -> None:
    port = free_port()
    images.deploy(images.v1, "serving", port)
    client = images.client

    def serving(shipped: Shipped, *, at: int = port, **env_vars: str) -> object:
        release = Release(images.service, "serving", images.v1.sha, shipped.image, at, env_vars)
        return already_serving(client, release, target=TARGET)  # type: ignore[arg-type]

    assert images.v1_rebuilt.image != images.v1.image  # its own digest...
    found = serving(images.v1_rebuilt)  # ...but the same content: nothing to restart
    assert found is not None and found.image == images.v1.image and found.port == port
    assert serving(images.v1) == found
    assert serving(images.v2) is None  # other content under the same commit
    assert serving(images.v1, at=free_port()) is None
    assert serving(images.v1, FEATURE="on") is None
    other = Release(images.service, "serving", images.v2.sha, images.v2.image, port)
    assert already_serving(client, other, target=TARGET) is None  # type: ignore[arg-type]
    assert already_serving(client, replace(other, environment="nowhere"), target=TARGET) is None  # type: ignore[arg-type]


def test_releases_of_several_services_at_once_never_fail_each_other(images: Images) -> None:
    """Switches race for spare ports while other containers come and go on the same engine."""
    client = images.client
    services = [f"{images.service}-c{i}" for i in range(4)]
    ports = {service: free_port() for service in services}
    switching = threading.Barrier(len(services))
    stop = threading.Event()

    def churn() -> None:  # candidates of other releases: labelled, created and removed at once
        while not stop.is_set():
            labels = {LABEL_PORT: "1", LABEL_SERVICE: f"{images.service}-churn"}
            created = client.containers.create(  # type: ignore[attr-defined]
                BASE_IMAGE, command=["true"], labels=labels, network_mode="none"
            )
            created.remove(force=True)

    def release(service: str) -> str:
        first = Release(service, "dev", images.v1.sha, images.v1.image, ports[service])
        deploy_release.fn(client, first, target=TARGET, health_timeout=30)  # type: ignore[arg-type]
        switching.wait()  # every switch looks for a spare port at the same moment
        second = replace(first, sha=images.v2.sha, image=images.v2.image)
        deployed = deploy_release.fn(client, second, target=TARGET, health_timeout=30)  # type: ignore[arg-type]
        return str(deployed.replaced)

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        with ThreadPoolExecutor(len(services)) as pool:
            replaced = list(pool.map(release, services))  # re-raises the first failure
        versions = {_version(ports[s]) for s in services}
    finally:
        stop.set()
        churner.join()
        for service in [*services, f"{images.service}-churn"]:
            remove_service_containers(client, service)
    assert replaced == [container_name(s, "dev", images.v1.sha) for s in services]
    assert versions == {images.v2.sha}


def test_an_image_that_runs_as_root_is_refused_and_the_old_version_keeps_serving(
    images: Images,
) -> None:
    port = free_port()
    images.deploy(images.v1, "rooted", port)
    with pytest.raises(DeployError) as refused:
        images.deploy(images.rooted, "rooted", port)
    assert "runs as root (USER root): it was not released" in str(refused.value)
    assert "Fix: remove `USER root`" in str(refused.value)
    [container] = images.containers("rooted")
    assert container.labels[LABEL_SHA] == images.v1.sha  # type: ignore[attr-defined]
    assert _version(port) == images.v1.sha


def test_a_port_held_by_another_process_is_refused_and_nothing_is_left(images: Images) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(DeployError, match=f"port {port} .* is taken"):
            images.deploy(images.v1, "taken", port)
    assert images.containers("taken") == []


def test_a_release_must_name_an_image_by_digest_and_valid_names(images: Images) -> None:
    tagged = images.v1.image.split("@")[0] + ":latest"
    with pytest.raises(DeployError, match="not pinned by digest"):
        Release(images.service, "dev", images.v1.sha, tagged, 8080)
    with pytest.raises(InvalidRequest):
        Release("--rm", "dev", images.v1.sha, images.v1.image, 8080)
    with pytest.raises(InvalidRequest):
        Release(images.service, "$(id)", images.v1.sha, images.v1.image, 8080)


# -- history and slot, in Prefect -----------------------------------------------------


def _record(service: str, sha: str, outcome: str, minutes: int) -> DeploymentRecord:
    return DeploymentRecord(
        service=service,
        environment="dev",
        sha=sha,
        image=f"127.0.0.1:5001/{service}@sha256:{sha[0] * 64}",
        action="build-test-deploy",
        outcome=outcome,  # type: ignore[arg-type]
        at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        triggered_by="ada",
    )


def test_the_history_reads_back_newest_first_and_rollback_skips_what_runs(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = SlipwayHome(tmp_path / "home")  # records are signed with its key, as on a platform host
    ensure_signing_key(home)
    monkeypatch.setenv("SLIPWAY_HOME", str(home.root))
    service = f"hist-{uuid.uuid4().hex[:8]}"
    first, broken, second = (
        _record(service, c * 40, o, i)
        for i, (c, o) in enumerate([("a", "succeeded"), ("b", "failed"), ("c", "succeeded")])
    )
    for record in (first, broken, second):
        record_deployment(record)
    record_deployment(_record(f"{service}-other", "d" * 40, "succeeded", 9))

    signed = deployment_history(service, "dev")
    assert all(r.signature for r in signed)  # each signed as it was recorded
    history = [r.model_copy(update={"signature": ""}) for r in signed]
    assert history == [second, broken, first]
    assert rollback_target(history, current_digest=second.digest) == first
    assert rollback_target(history, current_digest=None) == first
    assert rollback_target(history, current_digest=first.digest, to="cccccccc") == second
    with pytest.raises(InvalidRequest, match="no healthy deployment of bbbbbbbb"):
        rollback_target(history, current_digest=second.digest, to="bbbbbbbb")
    with pytest.raises(InvalidRequest, match="no earlier healthy deployment"):
        rollback_target([second], current_digest=second.digest)
    assert [r.event for r in history] == [
        "slipway.deployment.succeeded",
        "slipway.deployment.failed",
        "slipway.deployment.succeeded",
    ]


def test_the_slot_admits_one_holder_and_a_waiting_push_gives_way_to_a_newer_one(
    prefect_server: str,
) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    service = f"slot-{uuid.uuid4().hex[:8]}"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with deploy_slot(service, "dev"):
            held.set()
            release.wait(60)

    @flow(name="build-test-deploy")
    def push(service: str, commit: str, environment: str = "dev") -> str:
        with deploy_slot(service, environment, give_way=True, poll_seconds=0.5):
            return "deployed"

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(30)
    waiting: dict[str, Any] = {}
    older = threading.Thread(
        target=lambda: waiting.update(state=push(service, "a" * 40, return_state=True))
    )
    older.start()
    # Only running runs: the session's server holds hundreds, and a page of
    # the first fifty need not include this one.
    running = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
    )
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while not [
            r
            for r in client.read_flow_runs(flow_run_filter=running, limit=200)
            if r.parameters.get("service") == service
        ]:
            assert time.monotonic() < deadline, "the older push never started waiting"
            time.sleep(0.1)
        newer = client.create_flow_run(push, parameters={"service": service, "commit": "b" * 40})
    try:
        older.join(30)
        error = waiting["state"].result(raise_on_failure=False)
        assert isinstance(error, Superseded), error
        assert error.message == f"superseded by the newer run {newer.name} of bbbbbbbbbbbb"
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(newer.id)
        release.set()
        thread.join(30)
    began = time.monotonic()
    with deploy_slot(service, "dev"):
        pass
    assert time.monotonic() - began < 10


def test_the_first_try_at_the_slot_is_made_before_it_and_used_by_it(prefect_server: str) -> None:
    from prefect import flow, get_client

    service = f"look-{uuid.uuid4().hex[:8]}"
    created: list[Any] = []

    @flow(name="build-test-deploy")
    def push(service: str, commit: str, environment: str = "dev") -> str:
        with deploy_slot(service, environment):
            pass  # its limit exists from here on
        trying = first_try_at_slot(service, environment)
        assert trying.result().held is not None  # made before the newer push arrived
        with get_client(sync_client=True) as client:
            created.append(
                client.create_flow_run(push, parameters={"service": service, "commit": "b" * 40})
            )
        with deploy_slot(service, environment, give_way=True, first_try=trying):
            pass  # taken on that try: the next look is the one after the build
        trying = first_try_at_slot(service, environment)  # in the background, in this run
        with deploy_slot(service, environment, give_way=True, first_try=trying):
            return "deployed"

    try:
        state = push(service, "a" * 40, return_state=True)
        error = state.result(raise_on_failure=False)
        assert isinstance(error, Superseded), error
        assert error.message == f"superseded by the newer run {created[0].name} of bbbbbbbbbbbb"
    finally:
        with get_client(sync_client=True) as client:
            for run in created:
                client.delete_flow_run(run.id)


def test_a_first_try_never_makes_the_slot_and_a_slot_it_took_is_let_go(prefect_server: str) -> None:
    from prefect import flow, get_client
    from prefect.exceptions import ObjectNotFound

    service = f"try-{uuid.uuid4().hex[:8]}"

    def active() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(
                slot_name(service, "dev")
            ).active_slots

    @flow(name="build-test-deploy")
    def push(service: str, commit: str) -> None:
        refused = first_try_at_slot(service, "dev")
        assert refused.result().held is None and refused.result().refused is not None
        let_go(refused, service, "dev")  # nothing to free
        with pytest.raises(ObjectNotFound):
            active()  # a service that may not exist got no slot
        with deploy_slot(service, "dev"):
            pass  # a release made it
        unclaimed = first_try_at_slot(service, "dev")
        assert unclaimed.result().held is not None and active() == 1
        let_go(unclaimed, service, "dev")  # the run ended before its release claimed it
        assert active() == 0
        let_go(unclaimed, service, "dev")  # once only

    push(service, "a" * 40)
    began = time.monotonic()
    with deploy_slot(service, "dev"):
        pass
    assert time.monotonic() - began < 5, "the slot stayed held until its lease ran out"


def test_a_look_for_a_newer_push_reads_recent_runs_not_the_history(prefect_server: str) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.filters import FlowRunFilterId
    from prefect.states import Completed, Pending, Scheduled

    @flow(name="build-test-deploy")
    def push(service: str, commit: str) -> None:
        pass

    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        old = client.create_flow_run(
            push,
            parameters={"service": "s"},
            state=Scheduled(scheduled_time=now - timedelta(hours=1)),
        )
        client.set_flow_run_state(old.id, Completed(), force=True)
        later = client.create_flow_run(
            push,
            parameters={"service": "s"},
            state=Scheduled(scheduled_time=now + timedelta(hours=1)),
        )
        new = client.create_flow_run(push, parameters={"service": "s"}, state=Pending())
        try:
            mine = FlowRunFilterId(any_=[old.id, later.id, new.id])
            found = client.read_flow_runs(
                flow_run_filter=recent_runs(now).model_copy(update={"id": mine})
            )
            assert {r.id for r in found} == {later.id, new.id}
        finally:
            for run in (old, later, new):
                client.delete_flow_run(run.id)


def test_a_slot_handed_back_after_the_switch_admits_a_newer_release_and_is_retaken_after_it(
    prefect_server: str,
) -> None:
    service = f"slot-{uuid.uuid4().hex[:8]}"
    newer_holds, newer_leaves = threading.Event(), threading.Event()

    def newer_release() -> None:
        with deploy_slot(service, "dev"):
            newer_holds.set()
            newer_leaves.wait(30)

    retook: list[bool] = []
    with deploy_slot(service, "dev") as slot:
        slot.hand_back()  # switched: the analysis runs without the slot
        newer = threading.Thread(target=newer_release)
        newer.start()
        assert newer_holds.wait(10), "the slot stayed held after it was handed back"

        def roll_back() -> None:
            with slot.retaken():
                retook.append(newer_leaves.is_set())

        rollback = threading.Thread(target=roll_back)
        rollback.start()
        rollback.join(1.0)
        assert rollback.is_alive(), "the slot was retaken while the newer release held it"
        newer_leaves.set()
        rollback.join(30)
        newer.join(30)
    assert retook == [True]
    began = time.monotonic()
    with deploy_slot(service, "dev"):  # nothing left held
        pass
    assert time.monotonic() - began < 10


def test_a_prefect_error_while_handing_back_the_slot_is_logged_and_the_lease_kept(
    prefect_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    import http.server

    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = f"slot-{uuid.uuid4().hex[:8]}"
    try:
        with deploy_slot(service, "dev") as slot:
            url = f"http://127.0.0.1:{server.server_address[1]}/api"
            with temporary_settings({PREFECT_API_URL: url}):  # the API answers 500 now
                slot.hand_back()
            assert slot.handed_back
    finally:
        server.shutdown()
        server.server_close()
    assert f"Could not hand back the release slot {slot_name(service, 'dev')}" in caplog.text
    assert f"its lease frees it within {LEASE_SECONDS} s" in caplog.text
    from prefect import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(slot_name(service, "dev"))
    assert limit.active_slots == 1, "the slot was freed, so the 500 was never seen"
