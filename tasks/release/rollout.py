"""Rolling a release out to its stage, and recording what happened either way.

A release that already runs, healthy, from an identical image is left alone,
as Argo CD leaves a synced application alone: restarting it would change
nothing but cost a start during which its port refuses requests. Its record
says ``unchanged``.

After the switch the new version is watched in Prometheus (release analysis,
as Argo Rollouts' AnalysisRun); one whose metrics go bad is rolled back by
itself to the previous healthy deployment, and the run fails `AnalysisFailed`.

The release slot covers the switch only: it is handed back before the
analysis, so a newer push deploys without waiting for the window. A newer
release that switches meanwhile supersedes the analysis: it stops, the
attempt is recorded ``superseded`` (neither failed nor healthy), and it
never rolls back. Every outcome is recorded holding the slot again, so the
history keeps the switches' order and a newer switch that failed (and
restarted this version) does not count as replacing it. A rollback takes the slot again first and checks, holding
it, that its version still serves, so it cannot undo a newer switch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from blocks.monitoring import MonitoringSettings
from slipway.errors import AnalysisFailed, DeployError, InvalidRequest
from slipway.names import EnvironmentName, GitSha
from slipway.run_log import run_logger
from tasks.images import BuiltImage
from tasks.monitoring.analysis import Verdict
from tasks.monitoring.watch import analyse_release, follow_release
from tasks.release.authority import carried_approval, rollback_choice
from tasks.release.blue_green import Deployed, deploy_release
from tasks.release.candidate import Trial
from tasks.release.contract import (
    LiveContainer,
    Release,
    already_serving,
    container_started_at,
    live_container,
)
from tasks.release.history import (
    Attempt,
    DeploymentRecord,
    deployment_history,
    record_deployment,
)
from tasks.release.slot import ReleaseSlot
from tasks.release.stage import Stage

__all__ = [
    "Serving",
    "live_release",
    "record_superseded",
    "record_unchanged",
    "replaced_by",
    "roll_back_failed_analysis",
    "roll_out",
    "rollback_attempt",
    "serving_build",
]


OnSwitch = Callable[[], None] | None
"""What `roll_out` calls once the new version serves, if anything."""


@dataclass(frozen=True)
class Serving:
    """A release that already runs, healthy, and the container that serves it."""

    release: Release
    live: LiveContainer


@task(name="roll-out", cache_policy=NO_CACHE)
def roll_out(
    stage: Stage,
    attempt: Attempt,
    slot: ReleaseSlot,
    *,
    on_switch: OnSwitch = None,
    before_switch: OnSwitch = None,
    trial: Trial | None = None,
    known_new: bool = False,
) -> DeploymentRecord:
    """Deploy blue-green, hand the slot back, watch it, record the outcome, and link the service.

    A release that already runs, healthy, is left alone (`record_unchanged`);
    a rollback is not watched: it is how an incident ends.

    Args:
        stage: Where the release goes.
        attempt: Who asked which action to release what.
        slot: The held release slot of the stage; handed back after the switch.
        on_switch: Called once the new version serves, before it is watched.
        before_switch: Called before anything changes; raising stops the release there.
        trial: The release's candidate, started beside its tests and push (`start_trial`).
        known_new: Found not serving yet, under ``slot`` (`serving_build`): not looked for again.

    Raises:
        DeployError: The new version did not become healthy; the old one still
            serves, and the failure is recorded.
        AnalysisFailed: Its metrics went bad after the switch; it was rolled back.
    """
    release = attempt.release
    live = None if known_new else already_serving(stage.client, release, target=stage.target)
    if live is not None:
        if before_switch is not None:
            before_switch()
        if trial is not None:
            trial.discard()
        return record_unchanged(stage, attempt, live)
    try:
        deployed = deploy_release(
            stage.client,
            release,
            target=stage.target,
            health_timeout=stage.settings.health_timeout_seconds,
            reserved_ports=stage.reserved_ports,
            before_switch=before_switch,
            trial=trial,
        )
    except DeployError as e:
        record_deployment(attempt.record("failed", detail=e.message[:2000]), team=stage.team)
        raise
    if on_switch is not None:
        on_switch()
    mine = live_container(stage.client, release.service, release.environment)
    replaced = functools.partial(replaced_by, stage, mine.id if mine else "")
    served_since = functools.partial(container_started_at, stage.client, mine.id if mine else "")
    settings = follow_release(release)
    slot.hand_back()
    return _conclude(
        stage, attempt, slot, settings, deployed, replaced=replaced, served_since=served_since
    )


def _conclude(
    stage: Stage,
    attempt: Attempt,
    slot: ReleaseSlot,
    settings: MonitoringSettings,
    deployed: Deployed,
    *,
    replaced: Callable[[], str | None],
    served_since: Callable[[], float],
) -> DeploymentRecord:
    """Watch the switched release without the slot, then record its outcome holding it again.

    Holding the slot, no newer switch is in flight: the record lands in
    switch order, and a newer release seen serving is believed only once its
    switch ended. One that failed on the real port restarted this version,
    which serves again and is watched again, not recorded ``superseded``.
    """
    release = attempt.release
    while True:
        verdict = Verdict("skipped", "a rollback is not analysed")
        if attempt.action != "rollback":
            verdict = analyse_release(
                stage.client, release, settings, replaced=replaced, served_since=served_since
            )
        if verdict.failed:
            return roll_back_failed_analysis(stage, attempt, verdict.reason, slot, replaced)
        with slot.retaken():
            if (newer := replaced()) is not None:
                return record_superseded(stage, attempt, newer)
            if verdict.outcome == "superseded":
                run_logger(__name__).warning(
                    "The newer release did not switch and %s serves again: watching it again",
                    release.sha[:12],
                )
                continue
            note = f"replaced {deployed.replaced}" if deployed.replaced else "first deployment"
            done = attempt.record("succeeded", detail=attempt.detail or note, url=deployed.url)
            record = record_deployment(done, team=stage.team)
        create_link_artifact(
            key=f"service-{release.service}--{release.environment}",
            link=deployed.url,
            link_text=f"{release.service} in {release.environment} ({release.sha[:12]})",
            description=f"`{release.service}` serving `{release.image}` in **{release.environment}**.",
        )
        return record


def replaced_by(stage: Stage, container_id: str) -> str | None:
    """What replaced the release's container ``container_id``, or None while it still serves.

    Nothing serving at all is not a newer release: the analysis goes on, and
    its failed probes roll back to the previous healthy deployment.
    """
    live = live_container(stage.client, stage.service, stage.environment)
    if live is None or live.id == container_id:
        return None
    return f"a newer release replaced it: {live.name} serves {live.sha[:12]}"


@task(name="roll-back-failed-analysis", cache_policy=NO_CACHE)
def roll_back_failed_analysis(
    stage: Stage,
    attempt: Attempt,
    reason: str,
    slot: ReleaseSlot,
    replaced: Callable[[], str | None],
) -> DeploymentRecord:
    """Record the release failed, return to the previous healthy one, and fail saying why.

    Holding the slot again, it first checks that the failed version still
    serves: one that a newer release replaced (or is replacing: it then waits
    for that switch) is recorded ``superseded`` and returned, never rolled
    back over the newer release.

    Raises:
        AnalysisFailed: Rolled back, or kept serving when the history has
            nothing healthy to return to.
    """
    release = attempt.release
    why = f"the new version failed its release analysis: {reason}"
    with slot.retaken():
        if (newer := replaced()) is not None:
            return record_superseded(stage, attempt, f"{newer}; not rolled back, though {why}")
        record_deployment(attempt.record("failed", detail=why), team=stage.team)
        try:
            chosen = rollback_choice(
                release.service, release.environment, current_digest=release.digest, to=None
            )
        except InvalidRequest as e:
            raise AnalysisFailed(
                f"{why}; it keeps serving: {e.message}", hint="fix it and push again"
            ) from e
        back = Attempt(
            stage.release(chosen.sha, chosen.image),
            "rollback",
            "release analysis",
            detail=f"automatic, from {release.sha[:12]}: {why}",
            approved_by=carried_approval(chosen, release.environment),
        )
        deployed = deploy_release(
            stage.client,
            back.release,
            target=stage.target,
            health_timeout=stage.settings.health_timeout_seconds,
            reserved_ports=stage.reserved_ports,
        )
        follow_release(back.release)  # Prometheus follows it back
        # Recorded before a newer release may switch: the history keeps their order.
        record_deployment(
            back.record("succeeded", detail=back.detail, url=deployed.url), team=stage.team
        )
    raise AnalysisFailed(
        f"{why}; rolled back to {chosen.sha[:12]}",
        hint="see the logs artifact of this run, fix the cause and push again",
    )


@task(name="record-superseded", cache_policy=NO_CACHE)
def record_superseded(stage: Stage, attempt: Attempt, why: str) -> DeploymentRecord:
    """Record that a newer release replaced this one before its analysis ended.

    Neither failed nor healthy: rollback never returns to it, and it counts
    as no failure.
    """
    run_logger(__name__).warning(
        "%s in %s: %s", attempt.release.sha[:12], attempt.release.environment, why
    )
    return record_deployment(attempt.record("superseded", detail=why), team=stage.team)


@task(name="record-unchanged", cache_policy=NO_CACHE)
def record_unchanged(stage: Stage, attempt: Attempt, live: LiveContainer) -> DeploymentRecord:
    """The record of a release that already ran, healthy: nothing is restarted.

    Nor is it another deployment to count: the record is returned as
    ``unchanged`` and not added to the history. Unless the history lacks it
    (a run that deployed it died before recording): drift and rollback read
    the history, so then it is recorded now, as succeeded.
    """
    logger = run_logger(__name__)
    release = attempt.release
    logger.info(
        "%s already serves %s in %s, healthy, from an identical image: nothing to restart",
        live.name,
        release.sha[:12],
        release.environment,
    )
    record = attempt.record(
        "unchanged",
        detail=f"{live.name} already served it and answered /healthz",
        url=stage.url,
        image=live.image,
    )
    history = deployment_history(release.service, release.environment, limit=20)
    newest = next((r for r in history if r.outcome == "succeeded"), None)
    if newest is not None and newest.image == live.image:
        return record
    logger.warning("The deployment history lacks %s: recording it now", live.image)
    recorded = record.model_copy(
        update={"outcome": "succeeded", "detail": f"{record.detail}; recorded late"}
    )
    return record_deployment(recorded, team=stage.team)


@task(name="find-serving-build", cache_policy=NO_CACHE)
def serving_build(stage: Stage, built: BuiltImage) -> Serving | None:
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
        release = stage.release(GitSha.parse(built.sha), live.image)
    except DeployError:  # a live label not pinned by digest: release properly
        return None
    found = already_serving(stage.client, release, target=stage.target, content_of=built.image_id)
    return Serving(release, found) if found is not None else None


@task(name="find-live-release", cache_policy=NO_CACHE)
def live_release(stage: Stage, environment: EnvironmentName) -> LiveContainer:
    """What serves the stage's service in ``environment`` now, e.g. to promote it.

    Raises:
        InvalidRequest: Nothing of the service runs there.
    """
    live = live_container(stage.client, stage.service, environment)
    if live is None:
        raise InvalidRequest(
            f"nothing of {stage.service} runs in {environment}, so there is nothing to promote",
            hint=f"deploy to {environment} first (push to the default branch)",
        )
    return live


@task(name="choose-rollback", cache_policy=NO_CACHE)
def rollback_attempt(stage: Stage, *, to: GitSha | None, triggered_by: str) -> Attempt:
    """The rollback of the stage to its previous healthy deployment, or to the sha ``to``.

    Raises:
        GateRefused: ``to``'s record was forged or edited, or (prod) it never
            passed the gate and an approval.
        InvalidRequest: The history has no such deployment.
    """
    live = live_container(stage.client, stage.service, stage.environment)
    current = live.image.partition("@")[2] if live else None
    # Genuine records only; in prod, only a release that passed the gate and an approval.
    chosen = rollback_choice(stage.service, stage.environment, current_digest=current, to=to)
    run_logger(__name__).info(
        "Rolling %s in %s back to %s (%s)",
        stage.service,
        stage.environment,
        chosen.sha[:12],
        chosen.image,
    )
    return Attempt(
        stage.release(chosen.sha, chosen.image),
        "rollback",
        triggered_by,
        detail=f"from {live.sha[:12]}" if live else "nothing was running",
        approved_by=carried_approval(chosen, stage.environment),
    )
