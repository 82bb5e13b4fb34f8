"""Releases of service images to the deploy target, one environment at a time.

- `contract`: the container contract (names and ``dev.slipway.*`` labels) and
  reading back what runs;
- `blue_green`: the blue-green deploy on one Docker host (`deploy_release`);
- `candidate`: a release's containers, and its candidate started beside
  the tests and the push (`start_trial`);
- `health`: waiting for a new container to answer healthy, or saying why not;
- `stage`: where a release goes: catalog entry, port, variables, engine (`open_stage`);
- `rollout`: a release rolled out and recorded either way (`roll_out`);
- `history`: the records of every attempt, kept in Prefect (`deployment_history`);
- `slot`: one switch at a time per environment, and a push that gives way
  to a newer one (`deploy_slot`, `ReleaseSlot`, `Superseded`).
"""

from __future__ import annotations

from tasks.release.blue_green import Deployed, deploy_release
from tasks.release.candidate import Trial, start_trial, trial_beside
from tasks.release.contract import (
    LABEL_ENVIRONMENT,
    LABEL_IMAGE,
    LABEL_LIVE,
    LABEL_PORT,
    LABEL_SERVICE,
    LABEL_SHA,
    LiveContainer,
    Release,
    already_serving,
    container_name,
    live_container,
    service_url,
)
from tasks.release.health import wait_healthy
from tasks.release.history import (
    Attempt,
    DeploymentRecord,
    deployment_history,
    history_key,
    record_deployment,
    rollback_target,
)
from tasks.release.rollout import (
    Serving,
    live_release,
    record_unchanged,
    roll_out,
    rollback_attempt,
    serving_build,
)
from tasks.release.slot import (
    BUILD_FLOW,
    ReleaseSlot,
    SlotTry,
    deploy_slot,
    first_try_at_slot,
    give_way_to_newer_push,
    let_go,
    look_for_newer_push,
    slot_name,
)
from tasks.release.stage import Stage, open_stage, stage_blocks

__all__ = [
    "BUILD_FLOW",
    "LABEL_ENVIRONMENT",
    "LABEL_IMAGE",
    "LABEL_LIVE",
    "LABEL_PORT",
    "LABEL_SERVICE",
    "LABEL_SHA",
    "Attempt",
    "Deployed",
    "DeploymentRecord",
    "LiveContainer",
    "Release",
    "ReleaseSlot",
    "Serving",
    "SlotTry",
    "Stage",
    "Trial",
    "already_serving",
    "container_name",
    "deploy_release",
    "deploy_slot",
    "deployment_history",
    "first_try_at_slot",
    "give_way_to_newer_push",
    "history_key",
    "let_go",
    "live_container",
    "live_release",
    "look_for_newer_push",
    "open_stage",
    "record_deployment",
    "record_unchanged",
    "roll_out",
    "rollback_attempt",
    "rollback_target",
    "service_url",
    "serving_build",
    "slot_name",
    "stage_blocks",
    "start_trial",
    "trial_beside",
    "wait_healthy",
]
