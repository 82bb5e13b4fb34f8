"""Reconciling drift: undo what is safe to undo, then check again.

In the spirit of Argo CD's self-heal, and narrow on purpose:

- Terraform: the saved plan of the check is applied when it destroys
  nothing (it re-creates lost state, or applies configuration that was
  not); a destroying plan is left to provision-environment and its approval.
- What runs: stopped serving containers are started, and drifted ones are
  replaced by the recorded image with the state's settings, confined as the
  deploy target says (so is an unconfined one). A missing container or a
  wrong replica count needs a release (rollback).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.deploy_target import DeployTarget
from blocks.terraform_backend import TerraformBackend
from slipway.errors import SlipwayError
from tasks.catalog import Catalog
from tasks.drift.runtime import compare, image_resolver, observe, restore
from tasks.drift.survey import (
    EnvironmentStatus,
    Recorded,
    Target,
    desired_runtime,
    recorded_release,
    survey,
)
from tasks.terraform import OutputValue, Terraform, record_outputs, state_location

if TYPE_CHECKING:
    import docker

__all__ = ["reconcile_environment", "reconcile_environments"]


def reconcile_environment(
    tf: Terraform,
    backend: TerraformBackend,
    client: docker.DockerClient | None,
    target: Target,
    status: EnvironmentStatus,
    *,
    recorded: Recorded,
    deploy_target: DeployTarget,
) -> tuple[str, ...]:
    """Undo an environment's drift where that is safe (see the module); one line per action or refusal."""
    health, ws = status.health, target.ws
    if health is None:
        return ()
    actions: list[str] = []
    outputs, findings = health.outputs, list(status.findings)
    if health.safe_to_apply:
        tf.apply(ws, health.pending)
        outputs = tf.output(ws)
        _record(tf, backend, target, outputs)
        actions.append(f"applied the checked plan ({health.pending.summary.describe()})")
    elif health.pending.has_changes:
        destroys = ", ".join(health.pending.summary.destroys)
        actions.append(f"not applied: the plan destroys {destroys}; run provision-environment")
    if client is None:
        return tuple(actions)
    desired = desired_runtime(ws, outputs, recorded(ws.service, ws.environment))
    if outputs is not health.outputs:  # the state moved: compare with what it says now
        findings = compare(desired, observe(client), image_resolver(client))
    if not findings:
        return tuple(actions)
    try:
        actions += restore(client, desired, findings, target=deploy_target)
    except SlipwayError as e:
        actions.append(f"restore failed: {e}")
    for finding in findings:
        if finding.kind in {"missing", "replicas"}:
            actions.append(f"not restored ({finding.kind}): release it again with rollback")
    return tuple(actions)


def _record(
    tf: Terraform, backend: TerraformBackend, target: Target, outputs: Mapping[str, OutputValue]
) -> None:
    ws, record = target.ws, target.record
    values = record_outputs(
        outputs, target.variables, state=state_location(backend, ws), expires_at=record.expires_at
    )
    Catalog.load_default().update(
        ws.service,
        lambda e: e.model_copy(update={"outputs": {**e.outputs, ws.environment: values}}),
        message=f"detect-drift: reconciled {ws.service}/{ws.environment}",
    )


@task(name="reconcile-environments", cache_policy=NO_CACHE)
def reconcile_environments(
    tf: Terraform,
    backend: TerraformBackend,
    client: docker.DockerClient | None,
    checks: list[Target],
    statuses: list[EnvironmentStatus],
    max_parallel: int,
    deploy_target: DeployTarget,
) -> list[EnvironmentStatus]:
    """Reconcile each OutOfSync environment, then check those again."""
    by_name = {(t.ws.service, t.ws.environment): t for t in checks}
    done: dict[tuple[str, str], tuple[str, ...]] = {}
    for status in statuses:
        target = by_name.get((status.service, status.environment))
        if status.status == "OutOfSync" and target is not None:
            try:
                done[(status.service, status.environment)] = reconcile_environment(
                    tf,
                    backend,
                    client,
                    target,
                    status,
                    recorded=recorded_release,
                    deploy_target=deploy_target,
                )
            except SlipwayError as e:
                done[(status.service, status.environment)] = (f"reconcile failed: {e}",)
    again = [by_name[key] for key in done]
    fresh = {
        (s.service, s.environment): s
        for s in survey(tf, client, again, recorded=recorded_release, max_parallel=max_parallel)
    }
    result = []
    for status in statuses:
        key = (status.service, status.environment)
        if key in done:
            after = fresh.get(key, status)
            result.append(replace(after, actions=done[key]))
        else:
            result.append(status)
    return result
