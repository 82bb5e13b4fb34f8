"""The drift check: is every provisioned environment what Terraform and the last release say?

For each environment that the catalog records as provisioned:

- **Terraform** (`tasks.terraform.assess`): ``plan -refresh-only`` (2 = the
  real objects drifted) and a normal plan of the recorded variables (2 = the
  configuration is not applied, or state was lost);
- **what runs** (`tasks.drift.runtime.compare`): the serving containers against
  the state's port, replicas and environment variables and the recorded image
  (missing, stopped, another image, port or environment). Serving containers
  of no provisioned environment are reported too.

Each environment is ``InSync``, ``OutOfSync`` (with reasons) or ``Unknown``
(the check itself failed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.container_registry import ContainerRegistry
from blocks.deploy_target import DeployTarget
from slipway.errors import ConfigurationError, DockerUnavailable, SlipwayError
from slipway.run_log import run_logger
from tasks.catalog import Catalog, CatalogEntry, EnvironmentOutputs, EnvironmentRecord
from tasks.containers import docker_client
from tasks.drift.runtime import (
    DesiredRuntime,
    Finding,
    compare,
    image_resolver,
    observe,
    unclaimed,
)
from tasks.registry import login_registry
from tasks.terraform import (
    OutputValue,
    Terraform,
    TerraformHealth,
    Workspace,
    assess,
    in_parallel,
)

if TYPE_CHECKING:
    import docker

__all__ = [
    "EnvironmentStatus",
    "Recorded",
    "Status",
    "Target",
    "check_environments",
    "Engine",
    "deploy_engine",
    "desired_runtime",
    "merged",
    "provisioned_targets",
    "recorded_release",
    "survey",
    "targets",
]

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
            record = entry.outputs.get(environment)
            if record is None:
                reason = "listed in the catalog but never provisioned: run provision-environment"
                never.append(EnvironmentStatus(entry.name, environment, "OutOfSync", (reason,)))
                continue
            try:
                ws = tf.workspace(module, entry.name, environment)
                found.append(Target(ws, record.applied_variables(), record))
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
    # Terraform starts once per core, not once per environment
    with tf.reusing_processes(parallel=min(max_parallel, len(checks))):
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
    """What should run: the state's outputs (the module contract) and the last release.

    Sensitive outputs count too: they are compared, never reported or kept.
    """
    values = EnvironmentOutputs.of({name: out.value for name, out in outputs.items()})
    return DesiredRuntime.from_outputs(ws.service, ws.environment, values, image)


def recorded_release(service: str, environment: str) -> str | None:
    """The image of the last successful release, from the release history in Prefect.

    None when nothing was released yet or the history cannot be read; each
    container's own ``dev.slipway.image`` label is then what it is compared with.
    """
    from tasks.release import deployment_history

    try:
        history = deployment_history(service, environment, limit=20)
    except Exception as e:  # the history is a hint; its absence must not hide drift
        run_logger(__name__).warning(
            "release history of %s/%s unreadable: %s", service, environment, e
        )
        return None
    return next((r.image for r in history if r.outcome == "succeeded"), None)


@task(name="check-environments", cache_policy=NO_CACHE)
def check_environments(
    tf: Terraform, client: docker.DockerClient | None, checks: list[Target], max_parallel: int
) -> list[EnvironmentStatus]:
    """Both Terraform plans of every environment, in parallel, then what runs."""
    return survey(tf, client, checks, recorded=recorded_release, max_parallel=max_parallel)


def merged(statuses: list[EnvironmentStatus]) -> list[EnvironmentStatus]:
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


@dataclass(frozen=True)
class Engine:
    """The deploy target and its Docker engine, or why the engine cannot be reached."""

    client: docker.DockerClient | None = field(repr=False)
    target: DeployTarget
    unreachable: DockerUnavailable | None = None


@task(name="open-deploy-engine", cache_policy=NO_CACHE)
def deploy_engine() -> Engine:
    """The deploy target's engine; one that cannot be reached leaves every environment Unknown."""
    target = DeployTarget.load_default()
    try:
        client = docker_client(target)
    except DockerUnavailable as e:
        run_logger(__name__).error("%s", e)
        return Engine(None, target, e)
    try:  # a reconcile may pull the recorded image, which takes the registry's login
        login_registry(client, ContainerRegistry.load_default())
    except ConfigurationError as e:
        run_logger(__name__).warning("Reconcile cannot pull images: %s", e)
    return Engine(client, target)


@task(name="find-provisioned-environments", cache_policy=NO_CACHE)
def provisioned_targets(
    tf: Terraform, module: Path
) -> tuple[list[Target], list[EnvironmentStatus]]:
    """Every environment of the catalog to check, and a row for each listed one never provisioned."""
    return targets(tf, module, Catalog.load_default().entries())
