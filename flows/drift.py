"""Nightly drift detection: is every environment what Terraform and the last release say?

For each environment that the catalog records as provisioned:

- **Terraform** (`tasks.terraform.assess`): ``plan -refresh-only`` (2 = the
  real objects drifted) and a normal plan of the recorded variables (2 = the
  configuration is not applied, or state was lost);
- **what runs** (`tasks.runtime.compare`): the serving containers against the
  state's port, replicas and environment variables and the recorded image
  (missing, stopped, another image, port or environment). Serving containers
  of no provisioned environment are reported too.

Each environment is ``InSync``, ``OutOfSync`` (with reasons) or ``Unknown``
(the check itself failed). One ``drift-report`` table artifact lists them all;
each OutOfSync environment emits a ``slipway.drift.detected`` event for
automations. With ``reconcile``, what is safe is undone (see
`reconcile_environment`) and the environment checked again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from blocks.deploy_target import DeployTarget
from blocks.terraform_backend import TerraformBackend
from slipway.errors import DockerUnavailable, SlipwayError, TerraformError
from slipway.home import SlipwayHome
from tasks.catalog import Catalog, CatalogEntry
from tasks.containers import docker_client
from tasks.monitoring.events import team_labels
from tasks.runtime import (
    DesiredRuntime,
    Finding,
    compare,
    image_resolver,
    observe,
    restore,
    unclaimed,
)
from tasks.terraform import (
    EnvironmentRecord,
    OutputValue,
    Terraform,
    TerraformHealth,
    Workspace,
    assess,
    environment_module,
    in_parallel,
    open_terraform,
    record_outputs,
    state_location,
)

if TYPE_CHECKING:
    import docker

__all__ = ["DRIFT_EVENT", "EnvironmentStatus", "Target", "detect_drift", "survey"]

DRIFT_EVENT = "slipway.drift.detected"
"""Emitted once per OutOfSync environment per run; resource ``slipway.environment.<svc>.<env>``."""

Status = Literal["InSync", "OutOfSync", "Unknown"]
Recorded = Callable[[str, str], str | None]
"""(service, environment) → the image of the last successful release, or None."""


@dataclass(frozen=True)
class Target:
    """One provisioned environment to check."""

    ws: Workspace
    variables: dict[str, object]
    record: EnvironmentRecord


@dataclass(frozen=True)
class EnvironmentStatus:
    """One row of the drift report."""

    service: str
    environment: str
    status: Status
    reasons: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    """What reconcile did, or why it did not."""
    health: TerraformHealth | None = field(default=None, repr=False, compare=False)
    findings: tuple[Finding, ...] = field(default=(), repr=False, compare=False)
    error: SlipwayError | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, str]:
        """The report's columns."""
        return {
            "service": self.service,
            "environment": self.environment,
            "status": self.status,
            "reasons": "; ".join(self.reasons) or "-",
            "reconcile": "; ".join(self.actions) or "-",
        }


def targets(
    tf: Terraform, module: Path, entries: Sequence[CatalogEntry]
) -> tuple[list[Target], list[EnvironmentStatus]]:
    """The provisioned environments, and a row for each listed one that never was."""
    found, never = [], []
    for entry in entries:
        for environment in sorted(set(entry.environments) | set(entry.outputs)):
            record = EnvironmentRecord.of(entry, environment)
            if record is None:
                reason = "listed in the catalog but never provisioned: run provision-environment"
                never.append(EnvironmentStatus(entry.name, environment, "OutOfSync", (reason,)))
                continue
            try:
                ws = tf.workspace(module, entry.name, environment)
                found.append(Target(ws, record.variables(), record))
            except SlipwayError as e:
                row = EnvironmentStatus(entry.name, environment, "Unknown", (str(e),), error=e)
                never.append(row)
    return found, never


def survey(
    tf: Terraform,
    client: docker.DockerClient | None,
    checks: Sequence[Target],
    *,
    recorded: Recorded,
    max_parallel: int = 4,
) -> list[EnvironmentStatus]:
    """Check every target in Terraform (in parallel) and against what runs.

    ``client`` None means the engine cannot be reached: every environment is
    then Unknown. This is what the flow runs and ``bench/drift.py`` times.
    """
    run = uuid.uuid4().hex[:12]
    healths = in_parallel(
        lambda t: assess(tf, t.ws, t.variables, name=f"drift-{run}"),
        list(checks),
        max_workers=max_parallel,
    )
    containers = observe(client) if client is not None else []
    resolve = image_resolver(client) if client is not None else None
    statuses = []
    for target, health in zip(checks, healths, strict=True):
        ws = target.ws
        if isinstance(health, SlipwayError):
            status = EnvironmentStatus(
                ws.service, ws.environment, "Unknown", (str(health),), error=health
            )
            statuses.append(status)
            continue
        reasons = list(health.reasons)
        findings: list[Finding] = []
        if resolve is None:
            reasons.append("the deploy target's Docker engine cannot be reached")
        elif health.resources:
            image = recorded(ws.service, ws.environment)
            findings = compare(desired_runtime(ws, health.outputs, image), containers, resolve)
            reasons += [f.message for f in findings]
        verdict: Status = "Unknown" if resolve is None else "OutOfSync" if reasons else "InSync"
        statuses.append(
            EnvironmentStatus(
                ws.service, ws.environment, verdict, tuple(reasons), (), health, tuple(findings)
            )
        )
    known = {(t.ws.service, t.ws.environment) for t in checks}
    for (service, environment), names in sorted(unclaimed(containers, known).items()):
        reason = f"serving container {', '.join(names)} belongs to no provisioned environment"
        statuses.append(EnvironmentStatus(service, environment, "OutOfSync", (reason,)))
    return statuses


def desired_runtime(
    ws: Workspace, outputs: Mapping[str, OutputValue], image: str | None
) -> DesiredRuntime:
    """What should run: the state's outputs (the module contract) and the last release."""
    values = {name: out.value for name, out in outputs.items()}
    return DesiredRuntime.from_outputs(ws.service, ws.environment, values, image)


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
    """Undo an environment's drift where that is safe; one line per action or refusal.

    - Terraform: the saved plan of the check is applied when it destroys
      nothing (it re-creates lost state, or applies configuration that was
      not); a destroying plan is left to provision-environment and its approval.
    - What runs: stopped serving containers are started, and drifted ones are
      replaced by the recorded image with the state's settings, confined as
      ``deploy_target`` says (so is an unconfined one). A missing
      container or a wrong replica count needs a release (rollback).
    """
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
        outputs, target.variables, state=state_location(backend, ws), expires_at=record.expires_at()
    )
    Catalog.load_default().update(
        ws.service,
        lambda e: e.model_copy(update={"outputs": {**e.outputs, ws.environment: values}}),
        message=f"detect-drift: reconciled {ws.service}/{ws.environment}",
    )


def recorded_release(service: str, environment: str) -> str | None:
    """The image of the last successful release, from the release history in Prefect.

    None when nothing was released yet or the history cannot be read; each
    container's own ``dev.slipway.image`` label is then what it is compared with.
    """
    from tasks.release_history import deployment_history

    try:
        history = deployment_history(service, environment, limit=20)
    except Exception as e:  # the history is a hint; its absence must not hide drift
        get_run_logger().warning("release history of %s/%s unreadable: %s", service, environment, e)
        return None
    return next((r.image for r in history if r.outcome == "succeeded"), None)


@task(name="check-environments", cache_policy=NO_CACHE)
def check_environments(
    tf: Terraform, client: docker.DockerClient | None, checks: list[Target], max_parallel: int
) -> list[EnvironmentStatus]:
    """Both Terraform plans of every environment, in parallel, then what runs."""
    return survey(tf, client, checks, recorded=recorded_release, max_parallel=max_parallel)


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


@task(name="publish-drift-report", cache_policy=NO_CACHE)
def publish_report(detected: list[EnvironmentStatus], final: list[EnvironmentStatus]) -> None:
    """The ``drift-report`` table, and one ``slipway.drift.detected`` event per drifted environment."""
    counts = {s: sum(1 for r in final if r.status == s) for s in ("InSync", "OutOfSync", "Unknown")}
    create_table_artifact(
        key="drift-report",
        table=[s.row() for s in final],
        description=", ".join(f"{n} {s}" for s, n in counts.items())
        + f" of {len(final)} environments",
    )
    after = {(s.service, s.environment): s for s in final}
    for status in detected:
        if status.status != "OutOfSync":
            continue
        now = after.get((status.service, status.environment), status)
        emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"slipway.environment.{status.service}.{status.environment}",
                "prefect.resource.name": f"{status.service}/{status.environment}",
                "slipway.service": status.service,
                "slipway.environment": status.environment,
                **team_labels(status.service),  # routes it to the team's channel
            },
            payload={
                "reasons": list(status.reasons),
                "reconcile": list(now.actions),
                "status_after": now.status,
            },
        )


def _engine(target: DeployTarget) -> tuple[docker.DockerClient | None, DockerUnavailable | None]:
    try:
        return docker_client(target), None
    except DockerUnavailable as e:
        return None, e


@flow(name="detect-drift", log_prints=False)
def detect_drift(reconcile: bool = False, max_parallel: int = 4) -> list[EnvironmentStatus]:
    """Check every provisioned environment against Terraform and against what runs.

    Args:
        reconcile: Undo what is safe to undo (see `reconcile_environment`), then check again.
        max_parallel: Environments checked at once; each Terraform command is its own process.
    """
    logger = get_run_logger()
    backend = TerraformBackend.load_default()
    tf = open_terraform(backend, SlipwayHome.from_env())
    checks, never = targets(tf, environment_module(backend), Catalog.load_default().entries())
    deploy_target = DeployTarget.load_default()
    client, unreachable = _engine(deploy_target)
    if unreachable is not None:
        logger.error("%s", unreachable)
    detected = check_environments(tf, client, checks, max_parallel)
    final = detected
    if reconcile:
        final = reconcile_environments(
            tf, backend, client, checks, detected, max_parallel, deploy_target
        )
    detected, final = _merge(never + detected), _merge(never + final)
    publish_report(detected, final)
    for status in final:
        log = logger.info if status.status == "InSync" else logger.warning
        log(
            "%s/%s: %s %s",
            status.service,
            status.environment,
            status.status,
            "; ".join(status.reasons),
        )
    _discard_plans(final)
    failed = [s for s in final if s.status == "Unknown"]
    if unreachable is not None:
        raise unreachable
    if failed:
        raise TerraformError(
            f"the drift check failed for {len(failed)} environments",
            diagnostics=[f"{s.service}/{s.environment}: {'; '.join(s.reasons)}" for s in failed],
            hint="fix the cause named for each; a held state lock clears when its run ends",
        ) from next((s.error for s in failed if s.error), None)
    return [replace(s, health=None, findings=(), error=None) for s in final]


def _merge(statuses: list[EnvironmentStatus]) -> list[EnvironmentStatus]:
    """One row per environment: a never-provisioned one may also have a serving container."""
    rank = {"InSync": 0, "OutOfSync": 1, "Unknown": 2}
    merged: dict[tuple[str, str], EnvironmentStatus] = {}
    for s in statuses:
        key = (s.service, s.environment)
        if (first := merged.get(key)) is None:
            merged[key] = s
            continue
        worst = max(first.status, s.status, key=rank.__getitem__)
        reasons, actions = first.reasons + s.reasons, first.actions + s.actions
        merged[key] = replace(first, status=worst, reasons=reasons, actions=actions)
    return list(merged.values())


def _discard_plans(statuses: list[EnvironmentStatus]) -> None:
    """Saved plans of the check that nobody applied: they hold variable values."""
    for status in statuses:
        if status.health is not None:
            status.health.pending.plan_file.unlink(missing_ok=True)
