"""Delivery: every push to a default branch ends healthy in ``dev``, or with the old version serving.

Three flows, after Argo CD (sync history, rollback) and Argo Rollouts
(blue-green with a promotion gate), on a single Docker host:

* `build_test_deploy`: check out the exact commit, build the image, run its
  tests inside it without network, push it, and release it blue-green.
* `promote`: run the image digest that serves one environment in another;
  ``prod`` waits for an approval form in the UI first.
* `rollback`: return an environment to its previous healthy deployment, or to
  a given sha.

One release at a time touches a service's environment (`deploy_slot`). A push
that is still waiting for that slot when a newer push of the same service and
environment arrives gives way: its run ends Cancelled, without deploying.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import git
from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled
from pydantic import Field

from blocks import (
    ArtifactStore,
    ContainerRegistry,
    Defaults,
    DeployTarget,
    GitServer,
    PlatformSettings,
)
from flows.security_scan import security_scan
from slipway.errors import AnalysisFailed, BuildError, DeployError, GateRefused, InvalidRequest
from slipway.home import SlipwayHome
from slipway.names import check_dns_label, check_git_ref, check_sha
from tasks.catalog import Catalog, CatalogEntry
from tasks.containers import docker_client
from tasks.git import checkout
from tasks.images import (
    BuiltImage,
    TestReport,
    build_image,
    describe_report,
    image_repository,
    push_image,
    remove_image,
    run_image_tests,
    test_inputs_digest,
)
from tasks.monitoring.events import emit_approval_waiting
from tasks.monitoring.watch import analyse_release
from tasks.release import (
    LiveContainer,
    Release,
    already_serving,
    deploy_release,
    live_container,
    service_url,
)
from tasks.release_history import (
    DeploymentRecord,
    deploy_slot,
    deployment_history,
    record_deployment,
    rollback_target,
)
from tasks.scanners.gate import enforce_gate
from tasks.scanners.history import load_summary
from tasks.storage import ObjectStore, open_store
from tasks.test_history import load_passed_tests, save_passed_tests

if TYPE_CHECKING:
    import docker

__all__ = ["PROD", "Approval", "build_test_deploy", "promote", "rollback"]

BUILD_FLOW = "build-test-deploy"
DEFAULT_ENVIRONMENT = "dev"
PROD = "prod"
"""Deploying here, by any flow but rollback, waits for a human's approval."""
APPROVAL_TIMEOUT_SECONDS = 3600
APPROVAL_POLL_SECONDS = 2
_WAITING = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


class Approval(RunInput):
    """The form a paused deployment to prod shows in the UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Tick to deploy this image to prod."
    )
    comment: str = Field(
        default="",
        max_length=500,
        title="Comment",
        description="Why; kept in the flow run's log and the deployment record.",
    )


@dataclass(frozen=True)
class _Stage:
    """Everything a release to one environment of one service needs."""

    entry: CatalogEntry
    environment: str
    port: int
    env_vars: dict[str, str]
    reserved_ports: frozenset[int]
    target: DeployTarget
    settings: PlatformSettings
    registry: ContainerRegistry
    git: GitServer
    store: ObjectStore
    client: docker.DockerClient = field(repr=False)


@flow(name=BUILD_FLOW)
def build_test_deploy(
    service: str,
    commit: str,
    ref: str,
    environment: str = DEFAULT_ENVIRONMENT,
    triggered_by: str = "",
) -> DeploymentRecord | State[Any]:
    """Build, test, push and release one commit of a service.

    Args:
        service: The service's name in the catalog.
        commit: The commit to build: its hex sha (a push's ``after``).
        ref: What was pushed, e.g. ``refs/heads/main``; recorded with the deployment.
        environment: Where to release it.
        triggered_by: Who pushed; defaults to what created the run.
    """
    service, commit, ref = _checked_names(service, commit, ref)
    stage = _stage(service, environment)
    if environment == PROD:
        _prod_gate(service, commit, environment)
    with (
        deploy_slot(
            service, environment, give_up=lambda: _newer_push(service, environment)
        ) as gave_up,
        ExitStack() as afterwards,  # tidying that need not delay the release
    ):
        if gave_up is not None:
            return _superseded(gave_up)
        registry = stage.registry
        work = afterwards.enter_context(checkout(stage.git, service, commit))
        committed = _commit_time(work.path, work.sha)
        built = build_image(
            stage.client,
            work.path,
            service=service,
            sha=work.sha,
            repository=image_repository(registry, service),
            base_image=stage.settings.base_image,
            target=stage.target,
            wheelhouses=SlipwayHome.from_env().wheelhouses,
        )
        try:
            report = _image_tests(stage, built)
            if report.passed:  # its artifact follows the release, whatever the release does
                afterwards.callback(_tests_artifact, built, report)
            else:
                _tests_artifact(built, report)
                raise BuildError(
                    f"the tests of {service} at {built.sha[:12]} failed; nothing was pushed or deployed:\n{report.tail}",
                    hint="fix the tests (see the tests artifact) and push again",
                )
            serving = _serving_build(stage, built)
            if serving is not None:
                # The registry's tag is the image that runs; this build stays unpushed.
                _drop_build(stage, built)
                return _unchanged(stage, *serving, "build-test-deploy", triggered_by, ref=ref)
            pushed = push_image(stage.client, built, registry=registry)
        except BaseException:
            _drop_build(stage, built)
            raise
        newer = _newer_push(service, environment)
        if newer is not None:
            return _superseded(f"{newer}; {pushed.reference} was pushed but not deployed")
        release = Release(
            service, environment, built.sha, pushed.reference, stage.port, stage.env_vars
        )
        return _release(
            stage, release, "build-test-deploy", triggered_by, ref=ref, committed_at=committed
        )


@flow(name="promote")
def promote(
    service: str,
    from_env: str,
    to_env: str,
    triggered_by: str = "",
    approval_timeout_seconds: int = APPROVAL_TIMEOUT_SECONDS,
) -> DeploymentRecord:
    """Run the exact image digest that serves ``from_env`` in ``to_env``, without a rebuild.

    Promoting to ``prod`` pauses the run for an approval form in the UI
    (**Resume** on the flow run); a rejection or no answer within
    ``approval_timeout_seconds`` fails the run with nothing changed.

    Args:
        service: The service's name in the catalog.
        from_env: The environment whose running image is promoted, e.g. ``staging``.
        to_env: The environment to run it in, e.g. ``prod``.
        triggered_by: Who asked; defaults to what created the run.
        approval_timeout_seconds: How long a promotion to prod waits for approval.
    """
    check_dns_label(service, what="service")
    check_dns_label(from_env, what="from_env")
    if from_env == to_env:
        raise InvalidRequest(f"from_env and to_env are both {from_env!r}")
    stage = _stage(service, to_env)
    source = live_container(stage.client, service, from_env)
    if source is None:
        raise InvalidRequest(
            f"nothing of {service} runs in {from_env}, so there is nothing to promote",
            hint=f"deploy to {from_env} first (push to the default branch)",
        )
    get_run_logger().info(
        "Promoting %s (%s) from %s to %s", service, source.image, from_env, to_env
    )
    if to_env == PROD:
        _prod_gate(service, source.sha, to_env, timeout=approval_timeout_seconds)
    with deploy_slot(service, to_env):
        release = Release(service, to_env, source.sha, source.image, stage.port, stage.env_vars)
        return _release(stage, release, "promote", triggered_by, from_environment=from_env)


@flow(name="rollback")
def rollback(
    service: str, environment: str, to: str | None = None, triggered_by: str = ""
) -> DeploymentRecord:
    """Return ``environment`` to its previous healthy deployment, or to the sha ``to``.

    The image comes from the deployment history by digest, so it is the one
    that ran then, never a rebuild. No approval is asked, even for prod:
    rolling back is how an incident ends.

    Args:
        service: The service's name in the catalog.
        environment: The environment to roll back.
        to: A sha (at least 7 hex characters) deployed there before; empty for
            the previous healthy deployment.
        triggered_by: Who asked; defaults to what created the run.
    """
    to = check_sha(to.strip().lower(), what="to") if to and to.strip() else None
    stage = _stage(service, environment)
    with deploy_slot(service, environment):
        live = live_container(stage.client, service, environment)
        history = deployment_history(service, environment)
        chosen = rollback_target(
            history, current_digest=live.image.partition("@")[2] if live else None, to=to
        )
        get_run_logger().info(
            "Rolling %s in %s back to %s (%s)", service, environment, chosen.sha[:12], chosen.image
        )
        release = Release(
            service, environment, chosen.sha, chosen.image, stage.port, stage.env_vars
        )
        return _release(
            stage,
            release,
            "rollback",
            triggered_by,
            detail=f"from {live.sha[:12]}" if live else "nothing was running",
        )


# -- the steps the flows share ----------------------------------------------------


def _tests_artifact(built: BuiltImage, report: TestReport) -> None:
    """The table of a test run, each test with its result, under the key ``tests-<service>``."""
    create_table_artifact(
        table=report.rows() or [{"test": "(none)", "result": "no tests ran"}],
        key=f"tests-{built.service}",
        description=f"`{built.service}` at `{built.sha[:12]}`: " + describe_report(report),
    )


def _drop_build(stage: _Stage, built: BuiltImage) -> None:
    """Remove the tags this run's build made; a reused earlier build keeps the tags it had."""
    if not built.reused:
        for tag in (built.tag, built.inputs_tag):
            if tag is not None:
                remove_image(stage.client, tag)


def _checked_names(service: str, commit: str, ref: str) -> tuple[str, str, str]:
    """Refuse a name that must never reach git or Docker, before anything happens."""
    check_dns_label(service, what="service")
    sha = check_sha(commit.strip().lower())
    branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    check_git_ref(branch, what="ref")
    return service, sha, ref


def _stage(service: str, environment: str) -> _Stage:
    """The catalog entry, blocks and engine for a release; refuses an unknown environment."""
    check_dns_label(service, what="service")
    check_dns_label(environment, what="environment")
    blocks = Defaults(GitServer, DeployTarget, PlatformSettings, ContainerRegistry, ArtifactStore)
    catalog = Catalog(blocks[GitServer])
    entries = catalog.entries()  # one read: the entry, and every port that is taken
    entry = next((e for e in entries if e.name == service), None) or catalog.get(service)
    if environment not in entry.environments and environment not in entry.outputs:
        raise InvalidRequest(
            f"{service} has no environment {environment!r} (it has: {', '.join(entry.environments)})",
            hint="add the environment to the service (provision-environment) first",
        )
    outputs = entry.outputs.get(environment, {})
    port = int(outputs["port"]) if outputs.get("port", "").isdigit() else entry.port
    reserved = {e.port for e in entries} | {
        int(o["port"]) for e in entries for o in e.outputs.values() if o.get("port", "").isdigit()
    }
    target = blocks[DeployTarget]
    return _Stage(
        entry=entry,
        environment=environment,
        port=port,
        env_vars=_env_vars(outputs.get("env_vars", "")),
        reserved_ports=frozenset(reserved),
        target=target,
        settings=blocks[PlatformSettings],
        registry=blocks[ContainerRegistry],
        git=blocks[GitServer],
        store=open_store(blocks[ArtifactStore]),
        client=docker_client(target),
    )


def _image_tests(stage: _Stage, built: BuiltImage) -> TestReport:
    """The image's tests: an identical image's passed run when there is one, else a run now."""
    digest = _test_inputs(stage, built) if stage.settings.reuse_test_results else None
    earlier = load_passed_tests(stage.store, built.service, digest) if digest else None
    if earlier is not None:
        get_run_logger().info(
            "Not running the tests of %s again: its image is identical to that of %s, "
            "whose tests passed",
            built.tag,
            str(earlier.reused_from)[:12],
        )
        return earlier
    report = run_image_tests(stage.client, built.tag, target=stage.target)
    if digest:
        save_passed_tests(stage.store, built.service, digest, report, sha=built.sha)
    return report


def _test_inputs(stage: _Stage, built: BuiltImage) -> str | None:
    """The image's test-inputs digest, or None (the tests simply run) when it cannot be read."""
    try:
        return test_inputs_digest(stage.client, built.image_id)
    except BuildError as e:
        get_run_logger().warning("Running the tests: %s", e.message)
        return None


def _env_vars(raw: str) -> dict[str, str]:
    """The provisioned ``env_vars`` output (a JSON object), or none."""
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _release(
    stage: _Stage,
    release: Release,
    action: str,
    triggered_by: str,
    **extra: str,
) -> DeploymentRecord:
    """Deploy blue-green, record the outcome either way, and link the running service.

    A release that already runs, healthy, is left alone (`_unchanged`).
    """
    live = already_serving(stage.client, release, target=stage.target)
    if live is not None:
        return _unchanged(stage, release, live, action, triggered_by, **extra)
    base = _record_base(release, action, triggered_by, **extra)
    try:
        deployed = deploy_release(
            stage.client,
            release,
            target=stage.target,
            health_timeout=stage.settings.health_timeout_seconds,
            reserved_ports=stage.reserved_ports,
        )
    except DeployError as e:
        failed = DeploymentRecord.model_validate(
            {**base, "outcome": "failed", "at": datetime.now(UTC), "detail": e.message[:2000]}
        )
        record_deployment(failed)
        raise
    verdict = analyse_release(stage.client, release, watch=action != "rollback")
    if verdict.failed:
        _roll_back_after_analysis(stage, release, base, verdict.reason)
    record = DeploymentRecord.model_validate(
        {
            **base,
            "outcome": "succeeded",
            "at": datetime.now(UTC),
            "url": deployed.url,
            "detail": extra.get("detail")
            or (f"replaced {deployed.replaced}" if deployed.replaced else "first deployment"),
        }
    )
    record_deployment(record)
    create_link_artifact(
        key=f"service-{release.service}--{release.environment}",
        link=deployed.url,
        link_text=f"{release.service} in {release.environment} ({release.sha[:12]})",
        description=f"`{release.service}` serving `{release.image}` in **{release.environment}**.",
    )
    return record


def _roll_back_after_analysis(
    stage: _Stage, release: Release, base: dict[str, str], reason: str
) -> NoReturn:
    """Record the release failed, return to the previous healthy one, and fail saying why."""
    why = f"the new version failed its release analysis: {reason}"
    record_deployment(
        DeploymentRecord.model_validate(
            {**base, "outcome": "failed", "at": datetime.now(UTC), "detail": why}
        )
    )
    history = deployment_history(release.service, release.environment)
    try:
        chosen = rollback_target(history, current_digest=release.digest)
    except InvalidRequest as e:
        raise AnalysisFailed(
            f"{why}; it keeps serving: {e.message}", hint="fix it and push again"
        ) from e
    back = Release(
        release.service, release.environment, chosen.sha, chosen.image, stage.port, stage.env_vars
    )
    deployed = deploy_release(
        stage.client,
        back,
        target=stage.target,
        health_timeout=stage.settings.health_timeout_seconds,
        reserved_ports=stage.reserved_ports,
    )
    analyse_release(stage.client, back, watch=False)  # Prometheus follows it back
    record_deployment(
        DeploymentRecord.model_validate(
            {
                **_record_base(back, "rollback", "release analysis"),
                "outcome": "succeeded",
                "at": datetime.now(UTC),
                "url": deployed.url,
                "detail": f"automatic, from {release.sha[:12]}: {why}",
            }
        )
    )
    raise AnalysisFailed(
        f"{why}; rolled back to {chosen.sha[:12]}",
        hint="see the logs artifact of this run, fix the cause and push again",
    )


def _record_base(release: Release, action: str, triggered_by: str, **extra: str) -> dict[str, str]:
    """The fields every record of ``release`` has, whatever its outcome."""
    return {
        "service": release.service,
        "environment": release.environment,
        "sha": release.sha,
        "image": release.image,
        "action": action,
        "triggered_by": triggered_by or _run_creator(),
        "flow_run_id": _run_id(),
        **extra,
    }


def _serving_build(stage: _Stage, built: BuiltImage) -> tuple[Release, LiveContainer] | None:
    """The live release, when it already runs ``built``'s commit from an identical image.

    Checked before the push: such a build is neither pushed (the registry
    holds the image that runs, in the same repository) nor released.
    """
    live = live_container(stage.client, built.service, stage.environment)
    if live is None or live.sha != built.sha:
        return None
    if live.image.partition("@")[0] != built.tag.rpartition(":")[0]:
        return None  # another registry or repository: this one has not got it
    try:
        release = Release(
            built.service, stage.environment, built.sha, live.image, stage.port, stage.env_vars
        )
    except DeployError:  # a live label not pinned by digest: release properly
        return None
    found = already_serving(stage.client, release, target=stage.target, content_of=built.image_id)
    return (release, found) if found is not None else None


def _unchanged(
    stage: _Stage,
    release: Release,
    live: LiveContainer,
    action: str,
    triggered_by: str,
    **extra: str,
) -> DeploymentRecord:
    """The record of a release that already ran, healthy: nothing is restarted.

    Restarting it would change nothing but cost a start during which its port
    refuses requests, nor is it another deployment to count: the record is
    returned as ``unchanged`` and not added to the history. Unless the history
    lacks it (a run that deployed it died before recording): drift and rollback
    read the history, so then it is recorded now, as succeeded.
    """
    logger = get_run_logger()
    logger.info(
        "%s already serves %s in %s, healthy, from an identical image: nothing to restart",
        live.name,
        release.sha[:12],
        release.environment,
    )
    record = DeploymentRecord.model_validate(
        {
            **_record_base(release, action, triggered_by, **extra),
            "image": live.image,
            "outcome": "unchanged",
            "at": datetime.now(UTC),
            "url": service_url(stage.target, release.port),
            "detail": f"{live.name} already served it and answered /healthz",
        }
    )
    history = deployment_history(release.service, release.environment, limit=20)
    newest = next((r for r in history if r.outcome == "succeeded"), None)
    if newest is not None and newest.image == live.image:
        return record
    logger.warning("The deployment history lacks %s: recording it now", live.image)
    recorded = record.model_copy(
        update={"outcome": "succeeded", "detail": f"{record.detail}; recorded late"}
    )
    record_deployment(recorded)
    return recorded


def _security_gate(service: str, sha: str) -> None:
    if load_summary(open_store(ArtifactStore.load_default()), service, sha) is None:
        get_run_logger().info("%s %s has no scan yet: scanning before the gate", service, sha[:12])
        # A scan with an errored tool fails but is stored; the gate reads and judges it.
        security_scan(service=service, commit=sha, return_state=True)
    enforce_gate(service, sha)


def _prod_gate(
    service: str, sha: str, environment: str, *, timeout: int = APPROVAL_TIMEOUT_SECONDS
) -> None:
    """Ask the security gate, then a human in the UI, before a deployment to prod.

    A commit that was never scanned is scanned first (the push-triggered scan
    may still be running); the gate then refuses, naming the findings, or a
    human approves or rejects.
    """
    logger = get_run_logger()
    _security_gate(service, sha)
    description = (
        f"Deploy `{service}` at `{sha[:12]}` to **{environment}**? "
        "Tick *Approve* and resume, or leave it unticked to reject."
    )
    link = emit_approval_waiting(service, environment, sha)  # the team hears it waits
    logger.info("Waiting for approval: %s", link)
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description),
            timeout=timeout,
            poll_interval=APPROVAL_POLL_SECONDS,
        )
    except FlowPauseTimeout as e:
        raise GateRefused(
            f"nobody approved {service} {sha[:12]} for {environment} within {timeout} s",
            hint="run it again and resume the paused run with Approve ticked",
        ) from e
    if not answer.approve:
        raise GateRefused(
            f"the deployment of {service} {sha[:12]} to {environment} was rejected: {answer.comment or 'no comment'}"
        )
    logger.info("Approved for %s: %s", environment, answer.comment or "no comment")


def _newer_push(service: str, environment: str) -> str | None:
    """Why this build-test-deploy should give way: a newer run of the same target exists.

    Newer means created later, for the same service and environment, and still
    waiting, running or already completed; a failed or cancelled newer run
    does not stop an older one from delivering.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    me = context.flow_run
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[BUILD_FLOW])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[*_WAITING, StateType.COMPLETED])
                )
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=100,
            offset=0,
        )
    for run in runs:
        if (
            run.id == me.id
            or run.created is None
            or me.created is None
            or run.created <= me.created
        ):
            continue
        wanted = run.parameters
        if (
            wanted.get("service") == service
            and wanted.get("environment", DEFAULT_ENVIRONMENT) == environment
        ):
            return f"superseded by the newer run {run.name} of {str(wanted.get('commit', ''))[:12]}"
    return None


def _superseded(reason: str) -> State[Any]:
    get_run_logger().warning("Not deploying: %s", reason)
    return Cancelled(message=reason)


def _commit_time(path: Path, sha: str) -> str:
    return str(git.Repo(path).commit(sha).committed_datetime.astimezone(UTC).isoformat())


def _run_id() -> str:
    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else ""


def _run_creator() -> str:
    """Who started the run when no one was named: its creator, else 'manual'."""
    context = FlowRunContext.get()
    created_by = context.flow_run.created_by if context and context.flow_run else None
    if created_by is not None and created_by.display_value:
        return str(created_by.display_value)
    return "manual"
