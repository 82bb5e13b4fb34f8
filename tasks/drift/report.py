"""The drift report: one table of every environment, and an event for each that drifted."""

from __future__ import annotations

from dataclasses import replace

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from slipway.errors import DockerUnavailable, TerraformError
from slipway.run_log import run_logger
from tasks.drift.survey import EnvironmentStatus
from tasks.monitoring.events import team_labels

__all__ = ["DRIFT_EVENT", "conclude", "publish_report"]

DRIFT_EVENT = "slipway.drift.detected"
"""Emitted once per OutOfSync environment per run; resource ``slipway.environment.<svc>.<env>``."""


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
    logger = run_logger(__name__)
    for status in final:
        log = logger.info if status.status == "InSync" else logger.warning
        log(
            "%s/%s: %s %s",
            status.service,
            status.environment,
            status.status,
            "; ".join(status.reasons),
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


@task(name="conclude-drift-check", cache_policy=NO_CACHE)
def conclude(
    final: list[EnvironmentStatus], unreachable: DockerUnavailable | None
) -> list[EnvironmentStatus]:
    """The report's rows, once the check's unapplied plans are gone; fails if any check failed.

    The saved plans hold variable values, so none stays behind.

    Raises:
        DockerUnavailable: The deploy target's engine could not be reached.
        TerraformError: Some environments could not be checked; names each.
    """
    for status in final:
        if status.health is not None:
            status.health.pending.plan_file.unlink(missing_ok=True)
    if unreachable is not None:
        raise unreachable
    failed = [s for s in final if s.status == "Unknown"]
    if failed:
        raise TerraformError(
            f"the drift check failed for {len(failed)} environments",
            diagnostics=[f"{s.service}/{s.environment}: {'; '.join(s.reasons)}" for s in failed],
            hint="fix the cause named for each; a held state lock clears when its run ends",
        ) from next((s.error for s in failed if s.error), None)
    return [replace(s, health=None, findings=(), error=None) for s in final]
