"""build-test-deploy, promote and rollback against a real Prefect server, Docker engine and registry."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.errors import ImageNotFound
from docker.models.containers import Container
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, ParameterTypeError
from prefect.flow_runs import resume_flow_run

from blocks import DEFAULT_DOCUMENT, ContainerRegistry, PlatformSettings
from deployments.serve import declared_deployments
from flows.delivery import build_test_deploy, promote, rollback
from slipway.errors import BuildError, DeployError, GateRefused, InvalidRequest, ServiceNotFound
from tasks.images import LABEL_REVISION
from tasks.release import (
    LiveContainer,
    deploy_slot,
    deployment_history,
    live_container,
    slot_name,
)
from tests.conftest import free_port
from tests.flows.approval_helpers import give_group, issue_tokens
from tests.flows.delivery_fixtures import (
    BASE_IMAGE,
    HEALTH_TIMEOUT,
    Delivery,
    Poller,
    container_events,
    delivery_platform,
    manifest_digest,
    registry_block,
    wait_for,
)

pytestmark = pytest.mark.docker

REF = "refs/heads/main"
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def delivery(
    prefect_server: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Delivery]:
    with delivery_platform(request, tmp_path_factory) as configured:
        give_group("delivery", members=("alice", "bob"), approvers=("alice", "bob"))
        yield configured


@pytest.fixture(scope="module")
def tokens(delivery: Delivery) -> dict[str, str]:
    """Approver tokens of the service's owning group's approvers."""
    return issue_tokens("alice", "bob")


# -- helpers -------------------------------------------------------------------------


def live(delivery: Delivery, environment: str = "dev") -> LiveContainer | None:
    return live_container(delivery.client, delivery.service, environment)  # type: ignore[arg-type]


def ensure_live(delivery: Delivery, environment: str = "dev") -> LiveContainer:
    """Something healthy in ``environment``, deployed now if nothing is."""
    if live(delivery, environment) is None:
        if environment == "dev":
            build_test_deploy(delivery.service, delivery.commit(), REF)
        else:
            ensure_live(delivery)
            promote(delivery.service, "dev", environment)
    found = live(delivery, environment)
    assert found is not None
    return found


def served_version(delivery: Delivery, environment: str = "dev") -> str:
    return str(httpx.get(delivery.url(environment), timeout=5).json()["version"])


def any_slot(service: str, environment: str) -> bool:
    """Whether the release slot (a global concurrency limit) of a service environment exists."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(slot_name(service, environment))
        except ObjectNotFound:
            return False
    return True


def runs_of(flow_name: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=50,
            offset=0,
        )


def run_with(flow_name: str, state: StateType, **parameters: str) -> FlowRun | None:
    for run in runs_of(flow_name):
        if run.state_type == state and all(
            run.parameters.get(k) == v for k, v in parameters.items()
        ):
            return run
    return None


def events(api: str, name: str, service: str) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [f"slipway.service.{service}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    return list(httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"])


def latest_artifact(key: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        ).json()
    assert found, f"no artifact {key}"
    return dict(found[0])


class Background:
    """A flow called in a thread; ``state`` is its final state."""

    def __init__(self, flow: Any, **parameters: Any) -> None:
        self.state: Any = None
        self._thread = threading.Thread(
            target=lambda: setattr(self, "state", flow(**parameters, return_state=True)),
            daemon=True,
        )
        self._thread.start()

    def join(self, timeout: float = 180) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flow did not finish in time"
        return self.state


# -- build-test-deploy ---------------------------------------------------------------


def test_a_passing_push_ends_deployed_and_healthy_with_its_record(
    delivery: Delivery, prefect_server: str
) -> None:
    sha = delivery.commit("first")
    record = build_test_deploy(delivery.service, sha, REF, triggered_by="ada")

    assert record.outcome == "succeeded" and record.sha == sha and record.triggered_by == "ada"
    assert record.image.startswith(f"{delivery.registry}/{delivery.service}@sha256:")
    assert served_version(delivery) == sha
    running = live(delivery)
    assert running is not None and running.image == record.image
    assert running.name == f"{delivery.service}-dev-{sha[:12]}"
    assert manifest_digest(delivery.registry, delivery.service, sha) == record.digest
    assert record.committed_at and datetime.fromisoformat(record.committed_at) <= datetime.now(UTC)

    assert deployment_history(delivery.service, "dev")[0] == record
    tests = latest_artifact(f"tests-{delivery.service}")
    assert "Tests passed" in tests["description"] and '"passed"' in tests["data"]
    assert tests["task_run_id"], "published beside the push, yet still verify-image's"
    link = latest_artifact(f"service-{delivery.service}--dev")
    assert f"(http://127.0.0.1:{delivery.ports['dev']}/)" in link["data"]
    found = wait_for(
        lambda: [
            e
            for e in events(prefect_server, "slipway.deployment.succeeded", delivery.service)
            if e["payload"]["sha"] == sha
        ],
        timeout=30,
        what="the deployment event",
    )
    assert found[0]["payload"]["environment"] == "dev"  # type: ignore[index]
    assert found[0]["payload"]["image"] == record.image  # type: ignore[index]


def test_failing_tests_stop_before_push_and_deploy(delivery: Delivery) -> None:
    before = ensure_live(delivery)
    sha = delivery.commit(failing_tests=True)
    with pytest.raises(BuildError, match=r"tests of .* failed") as error:
        build_test_deploy(delivery.service, sha, REF)
    assert "deliberately failing" in str(error.value)
    assert manifest_digest(delivery.registry, delivery.service, sha) is None
    with pytest.raises(ImageNotFound):
        delivery.client.images.get(f"{delivery.registry}/{delivery.service}:{sha}")  # type: ignore[attr-defined]
    left = delivery.client.images.list(f"{delivery.registry}/{delivery.service}")  # type: ignore[attr-defined]
    assert not [i for i in left if i.labels.get(LABEL_REVISION) == sha]  # nor its inputs tag
    assert live(delivery) == before
    # The candidate started beside the tests is gone too.
    assert [c.name for c in _containers(delivery)] == [before.name]
    assert deployment_history(delivery.service, "dev")[0].sha != sha


def _containers(delivery: Delivery) -> list[Container]:
    """Every container of the delivery's service in dev, live or candidate."""
    return delivery.client.containers.list(  # type: ignore[attr-defined,no-any-return]
        all=True,
        filters={
            "label": [f"dev.slipway.service={delivery.service}", "dev.slipway.environment=dev"]
        },
    )


def test_a_failing_health_check_leaves_the_old_version_serving_without_a_failed_request(
    delivery: Delivery,
) -> None:
    before = ensure_live(delivery)
    sha = delivery.commit(unhealthy=True)
    PlatformSettings(base_image=BASE_IMAGE, health_timeout_seconds=5).save(
        DEFAULT_DOCUMENT, overwrite=True
    )
    try:
        with (
            Poller(delivery.url()) as poller,
            pytest.raises(DeployError, match="did not become healthy within 5 s") as error,
        ):
            build_test_deploy(delivery.service, sha, REF)
    finally:
        PlatformSettings(
            base_image=BASE_IMAGE,
            health_timeout_seconds=HEALTH_TIMEOUT,
            gate_block_known_exploited=False,
        ).save(DEFAULT_DOCUMENT, overwrite=True)
    assert "HTTP 503" in str(error.value)
    assert poller.ok > 20 and poller.failures == []
    assert poller.versions == [before.sha]
    assert live(delivery) == before
    assert [c.name for c in _containers(delivery)] == [before.name]
    latest = deployment_history(delivery.service, "dev")[0]
    assert (latest.sha, latest.outcome) == (sha, "failed")
    assert "HTTP 503" in latest.detail


def test_a_registry_that_is_down_is_retried_then_nothing_is_deployed(delivery: Delivery) -> None:
    before = ensure_live(delivery)
    sha = delivery.commit()
    dead = f"127.0.0.1:{free_port()}"
    ContainerRegistry(url=dead).save(DEFAULT_DOCUMENT, overwrite=True)
    try:
        began = time.monotonic()
        with pytest.raises(BuildError, match="after 4 attempts"):
            build_test_deploy(delivery.service, sha, REF)
        assert time.monotonic() - began >= 7  # backed off 1 + 2 + 4 s
    finally:
        registry_block(delivery.registry).save(DEFAULT_DOCUMENT, overwrite=True)
    assert live(delivery) == before
    with pytest.raises(ImageNotFound):
        delivery.client.images.get(f"{dead}/{delivery.service}:{sha}")  # type: ignore[attr-defined]


def test_two_quick_pushes_end_with_only_the_newer_deployed(delivery: Delivery) -> None:
    ensure_live(delivery)
    older, newer = delivery.commit("older"), delivery.commit("newer")
    with deploy_slot(delivery.service, "dev"):  # a release in progress: both pushes queue
        first = Background(build_test_deploy, service=delivery.service, commit=older, ref=REF)
        wait_for(
            lambda: run_with("build-test-deploy", StateType.RUNNING, commit=older), what="older run"
        )
        second = Background(build_test_deploy, service=delivery.service, commit=newer, ref=REF)
        cancelled = first.join(60)  # gives way while still queued
    assert cancelled.is_cancelled(), cancelled
    assert "superseded by the newer run" in str(cancelled.message)
    assert second.join().is_completed()
    assert served_version(delivery) == newer
    # The older run cloned while it waited for the slot: it left no checkout behind.
    assert not list(Path(tempfile.gettempdir()).glob(f"slipway-{delivery.service}-*"))
    assert older not in {r.sha for r in deployment_history(delivery.service, "dev")}


def test_the_candidate_starts_while_the_image_is_pushed(delivery: Delivery) -> None:
    before = ensure_live(delivery)
    sha = delivery.commit(uuid.uuid4().hex)  # new code: built, tested and pushed again
    began = datetime.now(UTC)
    state = build_test_deploy(delivery.service, sha, REF, return_state=True)
    assert state.is_completed(), state
    # The candidate was created once the tests' container had started, not beside it.
    tests_started, candidate_created = _engine_events(delivery, began, sha)
    assert tests_started < candidate_created
    flow_run_id = state.state_details.flow_run_id

    def ended() -> dict[str, TaskRun] | None:
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])
                )
            )
        runs = {t.name.rsplit("-", 1)[0]: t for t in found if t.end_time is not None}
        wanted = {"start-trial", "push-image", "find-serving-build", "verify-image"}
        return runs if wanted <= runs.keys() else None

    runs = wait_for(ended, timeout=30, what="the trial's, tests' and push's task runs")
    trial, push = runs["start-trial"], runs["push-image"]  # type: ignore[index]
    assert trial.start_time is not None and push.end_time is not None
    assert trial.start_time < push.end_time
    # Whether the build already serves was looked up while its tests ran, not after them.
    look, tests = runs["find-serving-build"], runs["verify-image"]  # type: ignore[index]
    assert look.end_time is not None and tests.end_time is not None
    assert look.end_time < tests.end_time
    assert served_version(delivery) == sha
    latest = deployment_history(delivery.service, "dev")[0]
    assert (latest.sha, latest.outcome, latest.detail) == (
        sha,
        "succeeded",
        f"replaced {before.name}",
    )
    containers = delivery.client.containers.list(  # type: ignore[attr-defined]
        all=True,
        filters={
            "label": [f"dev.slipway.service={delivery.service}", "dev.slipway.environment=dev"]
        },
    )
    assert [c.name for c in containers] == [f"{delivery.service}-dev-{sha[:12]}"]  # no candidate


def _engine_events(delivery: Delivery, since: datetime, sha: str) -> tuple[int, int]:
    """When the engine started the tests' container of ``sha``, and created its candidate (ns)."""
    found = container_events(delivery.client, since, event=["create", "start"])
    tests = [
        int(e["timeNano"])
        for e in found
        if e["Action"] == "start"
        and e["Actor"]["Attributes"].get("dev.slipway.purpose") == "tests"
        and e["Actor"]["Attributes"].get("image", "").endswith(f":{sha}")
    ]
    candidate = [
        int(e["timeNano"])
        for e in found
        if e["Action"] == "create"
        and e["Actor"]["Attributes"].get("name") == f"{delivery.service}-dev-{sha[:12]}-candidate"
    ]
    assert len(tests) == 1 and len(candidate) == 1, (tests, candidate)
    return tests[0], candidate[0]


def test_a_newer_push_arriving_during_the_build_stops_the_older_before_its_switch(
    delivery: Delivery,
) -> None:
    before = ensure_live(delivery)
    # The newer run is created once the older is built; its tests then hold it
    # for seconds more, well before it pushes and looks for a newer push.
    older = delivery.commit(uuid.uuid4().hex, slow_tests=4)
    running = Background(build_test_deploy, service=delivery.service, commit=older, ref=REF)
    built = f"{delivery.registry}/{delivery.service}:{older}"

    def tagged() -> bool:
        try:
            delivery.client.images.get(built)  # type: ignore[attr-defined]
        except ImageNotFound:
            return False
        return True

    wait_for(tagged, timeout=120, poll=0.05, what="the older push's build")  # past the slot
    with get_client(sync_client=True) as client:
        newer = client.create_flow_run(
            build_test_deploy,
            parameters={"service": delivery.service, "commit": "b" * 40, "ref": REF},
        )
    try:
        cancelled = running.join()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(newer.id)
    assert cancelled.is_cancelled(), cancelled
    assert f"superseded by the newer run {newer.name}" in str(cancelled.message)
    assert "was pushed but not deployed" in str(cancelled.message)
    assert live(delivery) == before and served_version(delivery) == before.sha
    assert [c.name for c in _containers(delivery)] == [before.name]  # its candidate is gone


def test_an_image_identical_to_a_tested_one_reuses_its_passed_tests(delivery: Delivery) -> None:
    code = uuid.uuid4().hex  # new code: no image with these layers was tested before
    tested = delivery.commit(code)
    build_test_deploy(delivery.service, tested, REF)
    first = latest_artifact(f"tests-{delivery.service}")
    assert "Not run again" not in first["description"]

    docs_only = delivery.commit(code, docs="A paragraph that no layer of the image holds.")
    record = build_test_deploy(delivery.service, docs_only, REF)

    assert record.outcome == "succeeded" and served_version(delivery) == docs_only
    reused = latest_artifact(f"tests-{delivery.service}")
    assert "Tests passed" in reused["description"]
    assert (
        f"Not run again: the image is identical to that of `{tested[:12]}`" in reused["description"]
    )
    assert reused["data"] == first["data"]  # the same cases and results

    changed = delivery.commit(uuid.uuid4().hex)
    build_test_deploy(delivery.service, changed, REF)
    assert "Not run again" not in latest_artifact(f"tests-{delivery.service}")["description"]


def test_building_the_serving_commit_again_restarts_nothing(delivery: Delivery) -> None:
    sha = delivery.commit(uuid.uuid4().hex)
    first = build_test_deploy(delivery.service, sha, REF)
    serving = live(delivery)
    assert serving is not None
    running = delivery.client.containers.get(serving.name)  # type: ignore[attr-defined]
    records = len(deployment_history(delivery.service, "dev"))
    time.sleep(1.1)  # a build now would label, so identify, its image apart from the first

    again = build_test_deploy(delivery.service, sha, REF)

    assert again.outcome == "unchanged", again
    assert (again.sha, again.image, again.url) == (sha, first.image, first.url)
    images = delivery.client.images  # type: ignore[attr-defined]
    tag = f"{delivery.registry}/{delivery.service}:{sha}"
    assert images.get(tag).id == images.get(first.image).id  # the first build, not built again
    tests = latest_artifact(f"tests-{delivery.service}")  # looked up again, and reused
    assert f"Not run again: the image is identical to that of `{sha[:12]}`" in tests["description"]
    assert manifest_digest(delivery.registry, delivery.service, sha) == first.digest  # not pushed
    now = delivery.client.containers.get(running.id)  # type: ignore[attr-defined]
    assert now.attrs["State"]["StartedAt"] == running.attrs["State"]["StartedAt"]
    assert served_version(delivery) == sha
    assert len(deployment_history(delivery.service, "dev")) == records


def test_a_serving_release_missing_from_the_history_is_recorded_when_built_again(
    delivery: Delivery,
) -> None:
    sha = delivery.commit(uuid.uuid4().hex)
    first = build_test_deploy(delivery.service, sha, REF)
    newest = latest_artifact(f"deployments-{delivery.service}--dev")
    with get_client(sync_client=True) as client:  # as if the run had died before recording
        client.request("DELETE", f"/artifacts/{newest['id']}")  # type: ignore[arg-type]
    assert first.image not in {r.image for r in deployment_history(delivery.service, "dev")}

    again = build_test_deploy(delivery.service, sha, REF)

    assert again.outcome == "succeeded" and "recorded late" in again.detail
    assert deployment_history(delivery.service, "dev")[0] == again
    assert again.image == first.image


def test_hostile_input_is_refused_before_anything_runs(delivery: Delivery) -> None:
    before = ensure_live(delivery)
    sha = delivery.commit()
    # Refused as the run's parameters, by the rule each broke, before the flow body runs.
    cases: list[tuple[dict[str, str], type[Exception], str]] = [
        ({"ref": "--upload-pack=x"}, ParameterTypeError, "ref: .* is not a valid git ref"),
        ({"ref": "refs/heads/$(id)"}, ParameterTypeError, "ref: .* is not a valid git ref"),
        ({"ref": "main;rm -rf /"}, ParameterTypeError, "ref: .* is not a valid git ref"),
        ({"commit": "$(id)"}, ParameterTypeError, "commit: .* is not a commit id"),
        ({"commit": "--upload-pack=x"}, ParameterTypeError, "commit: .* is not a commit id"),
        ({"commit": "main"}, ParameterTypeError, "commit: .* is not a commit id"),
        ({"service": "../x"}, ParameterTypeError, "service: .* not a DNS-1123 label"),
        ({"service": "--rm"}, ParameterTypeError, "service: .* not a DNS-1123 label"),
        ({"environment": "$(id)"}, ParameterTypeError, "environment: .* not a DNS-1123 label"),
        ({"environment": "qa"}, InvalidRequest, "has no environment 'qa'"),
        ({"service": "no-such-service"}, ServiceNotFound, "no service 'no-such-service'"),
    ]
    for change, error, rule in cases:
        arguments = {"service": delivery.service, "commit": sha, "ref": REF, **change}
        with pytest.raises(error, match=rule):
            build_test_deploy(**arguments)
    assert live(delivery) == before
    assert manifest_digest(delivery.registry, delivery.service, sha) is None
    # The clone that starts beside the stage's opening was removed with the refusal.
    assert not list(Path(tempfile.gettempdir()).glob(f"slipway-{delivery.service}-*"))
    # Nor was a release slot made for what does not exist.
    assert not any_slot(delivery.service, "qa") and not any_slot("no-such-service", "dev")
    # One left from an environment since removed is tried before the refusal, then freed.
    with deploy_slot(delivery.service, "gone"):
        pass
    with pytest.raises(InvalidRequest, match="has no environment 'gone'"):
        build_test_deploy(delivery.service, sha, REF, environment="gone")
    with get_client(sync_client=True) as client:
        gone = client.read_global_concurrency_limit_by_name(slot_name(delivery.service, "gone"))
        client.delete_global_concurrency_limit_by_name(gone.name)
    assert gone.active_slots == 0, "the refused run kept the slot it tried first"


# -- promote and rollback ------------------------------------------------------------


def test_promotion_runs_the_same_digest_without_a_rebuild(delivery: Delivery) -> None:
    source = ensure_live(delivery)
    images_before = len(delivery.client.images.list())  # type: ignore[attr-defined]
    record = promote(delivery.service, "dev", "staging", triggered_by="ada")
    staged = live(delivery, "staging")
    assert staged is not None and staged.image == source.image and staged.sha == source.sha
    assert (record.action, record.from_environment, record.image) == (
        "promote",
        "dev",
        source.image,
    )
    assert served_version(delivery, "staging") == source.sha
    assert served_version(delivery) == source.sha  # dev untouched
    assert len(delivery.client.images.list()) == images_before  # type: ignore[attr-defined]


def test_promotion_to_prod_waits_for_approval_and_a_rejection_changes_nothing(
    delivery: Delivery, tokens: dict[str, str]
) -> None:
    source = ensure_live(delivery, "staging")
    for approve, comment in ((False, "not this week"), (True, "go")):
        began = datetime.now(UTC)

        def paused_since(began: datetime = began) -> FlowRun | None:
            for run in runs_of("promote"):
                if run.state_type == StateType.PAUSED and run.created and run.created >= began:
                    return run
            return None

        pending = Background(
            promote,
            service=delivery.service,
            from_env="staging",
            to_env="prod",
            approval_timeout_seconds=120,
        )
        paused = wait_for(paused_since, timeout=90, what="the paused promotion")
        assert live(delivery, "prod") is None
        answer = {"approve": approve, "comment": comment, "approver": "bob", "token": tokens["bob"]}
        resume_flow_run(paused.id, run_input=answer)  # type: ignore[attr-defined]
        state = pending.join()
        if not approve:
            assert state.is_failed() and "bob rejected" in str(state.message)
            assert "not this week" in str(state.message)
            assert live(delivery, "prod") is None
    assert state.is_completed()
    prod = live(delivery, "prod")
    assert prod is not None and prod.image == source.image
    assert served_version(delivery, "prod") == source.sha


def test_the_security_gate_refuses_prod_naming_the_finding_before_anyone_is_asked(
    delivery: Delivery,
) -> None:
    began = datetime.now(UTC)
    build_test_deploy(delivery.service, delivery.commit(insecure=True), REF)
    prod_before = live(delivery, "prod")
    with pytest.raises(GateRefused, match=r"security gate refuses .*B602 at app/ops\.py"):
        promote(delivery.service, "dev", "prod", approval_timeout_seconds=60)
    assert live(delivery, "prod") == prod_before
    assert not [
        run
        for run in runs_of("promote")
        if run.state_type == StateType.PAUSED and run.created and run.created >= began
    ], "a human was asked although the gate refused"


def test_rollback_restores_the_previous_healthy_version_and_can_go_to_a_sha(
    delivery: Delivery, prefect_server: str
) -> None:
    previous = ensure_live(delivery)
    current = build_test_deploy(delivery.service, delivery.commit("current"), REF)
    assert served_version(delivery) == current.sha

    record = rollback(delivery.service, "dev", triggered_by="ops")
    assert (record.action, record.sha, record.image) == ("rollback", previous.sha, previous.image)
    assert served_version(delivery) == previous.sha
    assert live(delivery) == previous
    wait_for(
        lambda: [
            e
            for e in events(prefect_server, "slipway.deployment.rolled-back", delivery.service)
            if e["payload"]["sha"] == previous.sha
        ],
        timeout=30,
        what="the rolled-back event",
    )

    forward = rollback(delivery.service, "dev", to=current.sha[:10])
    assert forward.sha == current.sha and served_version(delivery) == current.sha
    with pytest.raises(InvalidRequest, match="no healthy deployment"):
        rollback(delivery.service, "dev", to="0" * 40)


def test_the_deployments_are_declared_and_build_on_default_branch_pushes() -> None:
    declared = {d.name: d for d in declared_deployments(PROJECT)}
    assert declared["build-test-deploy"].entrypoint == "flows/delivery.py:build_test_deploy"
    assert declared["promote"].entrypoint == "flows/delivery.py:promote"
    assert declared["rollback"].entrypoint == "flows/delivery.py:rollback"
    [trigger] = declared["build-test-deploy"].config.triggers or []
    trigger = dict(trigger)
    assert trigger["expect"] == ["slipway.git.push"]
    assert trigger["match"]["slipway.git.default-branch"] == "true"
    assert trigger["parameters"]["commit"] == "{{ event.payload.after }}"


class _CountingLabels:
    """Stands in for the DNS-1123 pattern and counts the names it is asked to check."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern
        self.checked: list[str] = []

    def fullmatch(self, value: str) -> Any:
        self.checked.append(value)
        return self.pattern.fullmatch(value)


def test_one_push_checks_its_service_name_where_it_enters_and_trusts_it_after(
    delivery: Delivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slipway.names

    sha = delivery.commit(uuid.uuid4().hex)
    counting = _CountingLabels(slipway.names._DNS_LABEL)
    monkeypatch.setattr(slipway.names, "_DNS_LABEL", counting)
    record = build_test_deploy(delivery.service, sha, REF)
    assert record.outcome == "succeeded"
    # Once as the run's parameter; once as the name in its catalog file, read from git for
    # the release; once as Prometheus' targets are rewritten from the whole catalog after
    # the switch (release analysis).
    assert counting.checked.count(delivery.service) == 3, counting.checked
