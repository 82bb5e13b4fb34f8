"""Delivery: every push to a default branch ends healthy in ``dev``, or with the old version serving.

Three flows, after Argo CD (sync history, rollback) and Argo Rollouts
(blue-green with a promotion gate), on a single Docker host:

* `build_test_deploy`: check out the exact commit, build the image, run its
  tests inside it without network, push it, and release it blue-green; the
  new version is watched in Prometheus and rolled back by itself if it fails
  its release analysis (`roll_out`).
* `promote`: run the image digest that serves one environment in another;
  ``prod`` waits for an approver of the owning group first.
* `rollback`: return an environment to its previous healthy deployment, or to
  a given sha.

One release at a time touches a service's environment (`deploy_slot`). A push
that is still waiting for that slot when a newer push of the same service and
environment arrives gives way: its run ends Cancelled, without deploying. The
slot is handed back after the switch: a newer push deploys during the older
one's release analysis, which then stops as superseded (`roll_out`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import ParamSpec, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.states import Cancelled

from blocks import GitServer
from flows.security_scan import security_scan
from slipway.background import alongside, meanwhile
from slipway.errors import InvalidRequest, Superseded
from slipway.home import SlipwayHome
from slipway.names import EnvironmentName, GitRef, GitSha, ServiceName
from tasks.actors import run_creator
from tasks.git import Checkout, checkout
from tasks.images import BuiltImage, build_image, push_image, removed_unless_pushed
from tasks.release import (
    BUILD_FLOW,
    Attempt,
    DeploymentRecord,
    ReleaseSlot,
    Serving,
    Stage,
    deploy_slot,
    first_try_at_slot,
    give_way_to_newer_push,
    let_go,
    live_release,
    look_for_newer_push,
    open_stage,
    record_unchanged,
    roll_out,
    rollback_attempt,
    serving_build,
    stage_blocks,
    trial_beside,
)
from tasks.release.authority import approve_release
from tasks.scanners.due import scan_due
from tasks.scanners.gate import enforce_gate, scanned
from tasks.test_history import verify_image

__all__ = ["PROD", "build_test_deploy", "promote", "rollback"]

DEV = EnvironmentName.parse("dev")
PROD = EnvironmentName.parse("prod")
"""Deploying here, by any flow but rollback, waits for an approver."""
APPROVAL_TIMEOUT_SECONDS = 3600

P = ParamSpec("P")
R = TypeVar("R")


def _gives_way(story: Callable[P, R]) -> Callable[P, R]:
    """End the run Cancelled, not Failed, when it gives way to a newer push (`Superseded`).

    Prefect makes a state that a flow returns its final state; whoever calls
    the flow then gets that state's `CancelledRun`, never the state, so the
    flow's own type stays ``R``.
    """

    @functools.wraps(story)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return story(*args, **kwargs)
        except Superseded as e:
            get_run_logger().warning("Not deploying: %s", e.message)
            return cast(R, Cancelled(message=e.message))

    return run


@flow(name=BUILD_FLOW)
@_gives_way
def build_test_deploy(
    service: ServiceName,
    commit: GitSha,
    ref: GitRef,
    environment: EnvironmentName = DEV,
    triggered_by: str = "",
) -> DeploymentRecord:
    """Build, test, push and release one commit of a service.

    Its security scan waits until the new version serves, or the run ended
    otherwise, so that it does not share the host with this build
    (`tasks.scanners.due`).

    Args:
        service: The service's name in the catalog.
        commit: The commit to build: its hex sha (a push's ``after``).
        ref: What was pushed, e.g. ``refs/heads/main``; recorded with the deployment.
        environment: Where to release it.
        triggered_by: Who pushed; defaults to what created the run.
    """
    # Its scan starts once the release switched or the run ended (tasks.scanners.due);
    # prod's gate scans an unscanned commit itself, before anything is released.
    due = None if environment == PROD else functools.partial(scan_due, service, commit)
    try:
        return _deliver(service, commit, ref, environment, triggered_by, on_switch=due)
    finally:
        if due is not None:
            due()


def _deliver(
    service: ServiceName,
    commit: GitSha,
    ref: GitRef,
    environment: EnvironmentName,
    triggered_by: str,
    *,
    on_switch: Callable[[], None] | None,
) -> DeploymentRecord:
    """The story of `build_test_deploy`; ``on_switch`` is called once the new version serves.

    The stage's blocks are read first, alone: the slot's first try, a heavier
    request, made Prefect's server answer them 30-50 ms later when it came
    first. Then the slot is tried (not for prod: its gate waits first) and
    the commit cloned, side by side, while the stage opens.
    """
    blocks = stage_blocks()
    first_try = None if environment == PROD else first_try_at_slot(service, environment)
    try:
        with _checkout_beside(blocks[GitServer], service, commit) as work:
            stage = open_stage(service, environment, blocks)  # refuses before the slot
            approved = _prod_gate(stage, commit, triggered_by) if environment == PROD else ""
            with deploy_slot(service, environment, give_way=True, first_try=first_try) as slot:
                return _build_and_release(
                    stage,
                    slot,
                    work.result(),
                    ref=ref,
                    triggered_by=triggered_by,
                    approved=approved,
                    on_switch=on_switch,
                )
    finally:
        if first_try is not None:
            let_go(first_try, service, environment)  # unless its release took the slot


def _build_and_release(
    stage: Stage,
    slot: ReleaseSlot,
    work: Checkout,
    *,
    ref: GitRef,
    triggered_by: str,
    approved: str,
    on_switch: Callable[[], None] | None,
) -> DeploymentRecord:
    """Build ``work``, test, push and release it to ``stage``, holding its slot."""
    built = build_image(
        stage.client,
        work.path,
        service=stage.service,
        sha=work.sha,
        repository=stage.repository,
        base_image=stage.settings.base_image,
        target=stage.target,
        wheelhouses=SlipwayHome.from_env().wheelhouses,
    )
    with (
        removed_unless_pushed(stage.client, built),
        trial_beside(stage, built, work.sha) as (begin_trial, take_trial),
        _beside_tests(stage, built, work) as looked_up,
        meanwhile(name="tests-report") as hand_off,  # the push need not wait for it
    ):
        verify_image(
            stage.client,
            stage.store,
            built,
            target=stage.target,
            reuse=stage.settings.reuse_test_results,
            started=begin_trial,
            hand_off=hand_off,
        )
        serving, committed_at = looked_up.result()
        if serving is not None:
            unchanged = Attempt(serving.release, BUILD_FLOW, triggered_by, ref=ref)
            return record_unchanged(stage, unchanged, serving.live)
        gate = _newer_push_gate(stage, built.tag)  # looks beside the push
        pushed = push_image(stage.client, built, registry=stage.registry)
        trial = take_trial()
    try:
        release = stage.release(work.sha, pushed.reference)
        attempt = Attempt(
            release, BUILD_FLOW, triggered_by, ref, committed_at, approved_by=approved
        )
        return roll_out(
            stage,
            attempt,
            slot,
            on_switch=on_switch,
            before_switch=gate,
            trial=trial,
            known_new=True,  # serving_build found it not serving, under this slot
        )
    finally:
        trial.discard()  # the switch removed it already, unless the run ended before


def _newer_push_gate(stage: Stage, image: str) -> Callable[[], None]:
    """What the release waits for right before its switch (`deploy_release`'s ``before_switch``).

    The look for a newer push starts now, beside the push of ``image`` (a
    request that Prefect answered in 50-70 ms while the run's release began,
    which then waited for it); the gate raises `Superseded` when it found one.
    """
    return functools.partial(
        give_way_to_newer_push,
        look_for_newer_push(stage.service, stage.environment),
        note=f"{image} was pushed but not deployed",
    )


def _beside_tests(
    stage: Stage, built: BuiltImage, work: Checkout
) -> AbstractContextManager[Future[tuple[Serving | None, str]]]:
    """What the release needs besides the verdict, looked up while ``built`` is tested.

    Whether it already serves (`serving_build`) and when its commit was made:
    neither depends on the tests, and both are needed right after them. The
    slot is held, so what serves cannot change meanwhile.
    """
    return alongside(
        lambda: (serving_build(stage, built), work.committed_at().isoformat()),
        name="beside-tests",
    )


@contextmanager
def _checkout_beside(
    server: GitServer, service: ServiceName, commit: GitSha
) -> Iterator[Future[Checkout]]:
    """``commit`` being cloned from ``server`` beside the block; removed on leaving.

    The build waits for it, once the stage is open and the slot held. A run
    refused or giving way meanwhile leaves no clone behind: leaving waits for
    the clone, then removes it. A clone that failed raises where the build
    asks for it, never over the run's own error.
    """
    with ExitStack() as made:

        def clone() -> Checkout:
            return made.enter_context(checkout(server, service, commit))

        with alongside(clone, name="checkout") as cloning:
            yield cloning


@flow(name="promote")
def promote(
    service: ServiceName,
    from_env: EnvironmentName,
    to_env: EnvironmentName,
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
    if from_env == to_env:
        raise InvalidRequest(f"from_env and to_env are both {from_env!r}")
    stage = open_stage(service, to_env)
    source = live_release(stage, from_env)
    get_run_logger().info(
        "Promoting %s (%s) from %s to %s", service, source.image, from_env, to_env
    )
    sha = GitSha.parse(source.sha)  # read from the container's labels
    approved = ""
    if to_env == PROD:
        approved = _prod_gate(stage, sha, triggered_by, timeout=approval_timeout_seconds)
    with deploy_slot(service, to_env) as slot:
        release = stage.release(sha, source.image)
        attempt = Attempt(
            release, "promote", triggered_by, from_environment=from_env, approved_by=approved
        )
        return roll_out(stage, attempt, slot)


@flow(name="rollback")
def rollback(
    service: ServiceName,
    environment: EnvironmentName,
    to: GitSha | None = None,
    triggered_by: str = "",
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
    stage = open_stage(service, environment)
    with deploy_slot(service, environment) as slot:
        return roll_out(stage, rollback_attempt(stage, to=to, triggered_by=triggered_by), slot)


def _prod_gate(
    stage: Stage, sha: GitSha, requester: str, *, timeout: int = APPROVAL_TIMEOUT_SECONDS
) -> str:
    """Ask the security gate, then an approver, before a release to prod; returns the approver.

    A commit that was never scanned is scanned first (the push-triggered scan
    may still be running); the gate then refuses, naming the findings, or an
    approver of the service's owning group who neither pushed nor wrote the
    commit nor asked for the release approves or rejects (`tasks.release.authority`).
    """
    service = stage.service
    if not scanned(service, sha):
        get_run_logger().info("%s %s has no scan yet: scanning before the gate", service, sha[:12])
        # A scan with an errored tool fails but is stored; the gate reads and judges it.
        security_scan(service=service, commit=sha, return_state=True)
    enforce_gate(service, sha)
    return approve_release(
        stage.git, stage.entry, stage.environment, sha, requester or run_creator(), timeout=timeout
    )
