"""The history of releases, kept in Prefect.

Every deployment attempt becomes a `DeploymentRecord`:

- a version of the keyed table artifact ``deployments-<service>--<environment>``,
  signed with the platform's record key (`tasks.signed_records`). Prefect
  keeps every version of a key, so the Artifacts page shows the history, and
  `deployment_history` reads back the genuine ones for rollback and metrics:
  a forged or edited record is refused;
- a ``slipway.deployment.succeeded``, ``.failed``, ``.rolled-back`` or
  ``.superseded`` event on the resource ``slipway.service.<name>``, whose
  payload is the record, for automations and metrics.

A record starts as an `Attempt` (who asked which action to release what), made
once by the flow, and becomes a record with its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, ConfigDict, Field

from slipway.errors import InvalidRequest
from slipway.names import EnvironmentName, GitSha, ServiceName
from tasks.actors import run_creator, run_id
from tasks.monitoring.events import team_labels
from tasks.release.contract import Release
from tasks.signed_records import Verified, publish_signed, read_verified

__all__ = [
    "Action",
    "Attempt",
    "DeploymentRecord",
    "Outcome",
    "deployment_history",
    "history_key",
    "record_deployment",
    "rollback_target",
    "verified_history",
]

Action = Literal["build-test-deploy", "promote", "rollback"]
Outcome = Literal["succeeded", "failed", "unchanged", "superseded"]


class DeploymentRecord(BaseModel):
    """One deployment attempt, as the history keeps it and events carry it.

    Each record is one version of the table artifact ``deployments-<service>--<env>``
    (Prefect keeps every version of a key: that is the history the UI shows),
    and the payload of a ``slipway.deployment.*`` event for metrics and automations.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: ServiceName
    environment: EnvironmentName
    sha: GitSha = Field(description="The full commit id that was deployed.")
    image: str = Field(description="``<registry>/<service>@sha256:...``.")
    action: Action
    outcome: Outcome = Field(
        description="``unchanged``: it already ran there, so nothing was restarted. "
        "Such a run returns its record but adds nothing to the history. "
        "``superseded``: it was deployed, but a newer release replaced it before its "
        "release analysis ended, so it was judged neither healthy nor failed."
    )
    at: datetime = Field(description="When the attempt ended, UTC.")
    triggered_by: str = Field(default="", description="Who or what started it: pusher, user.")
    ref: str = Field(default="", description="The git ref pushed, for build-test-deploy.")
    committed_at: str = Field(default="", description="The commit's time: lead time starts here.")
    from_environment: str = Field(default="", description="Where a promotion came from.")
    url: str = Field(default="", description="Where the service answered, when it did.")
    flow_run_id: str = Field(default="", description="The flow run that made the attempt.")
    detail: str = Field(default="", description="Why it failed, or what it replaced.")
    approved_by: str = Field(
        default="",
        description="Who approved it (prod): the approver, or for a rollback the approver of "
        "the release it returned to.",
    )
    signature: str = Field(default="", description="The platform's signature of the record.")

    @property
    def digest(self) -> str:
        """The ``sha256:...`` part of `image`."""
        return self.image.partition("@")[2]

    @property
    def event(self) -> str:
        """``slipway.deployment.succeeded``, ``.failed``, ``.rolled-back`` or ``.superseded``."""
        if self.outcome in ("failed", "superseded"):
            return f"slipway.deployment.{self.outcome}"
        return "slipway.deployment." + ("rolled-back" if self.action == "rollback" else "succeeded")

    def row(self) -> dict[str, str]:
        """The record as one table row of strings."""
        return {k: str(v) for k, v in self.model_dump(mode="json").items()}


def history_key(service: str, environment: str) -> str:
    """The artifact key of a history: lower-case letters, digits and dashes only."""
    return f"deployments-{service}--{environment}"


@task(name="record-deployment", cache_policy=NO_CACHE)
def record_deployment(record: DeploymentRecord, *, team: str | None = None) -> DeploymentRecord:
    """Add ``record`` to the history and emit its ``slipway.deployment.*`` event.

    The event is labelled with the owning ``team`` (whose channel hears it);
    without one, the catalog is read for it. Returns the record as kept: signed.
    """
    if record.outcome == "unchanged":
        raise InvalidRequest("an unchanged release deployed nothing, so there is nothing to record")
    signed = publish_signed(
        record,
        key=history_key(record.service, record.environment),
        description=(
            f"{record.action} of `{record.sha[:12]}` to **{record.environment}**: "
            f"{record.outcome}. {record.detail}"
        ).strip(),
    )
    emit_event(
        event=record.event,
        resource={
            "prefect.resource.id": f"slipway.service.{record.service}",
            "prefect.resource.name": record.service,
            "slipway.environment": record.environment,
            # routes it to the team's channel
            **({"slipway.team": team} if team else team_labels(record.service)),
        },
        payload=record.model_dump(mode="json"),
    )
    return record.model_copy(update={"signature": signed["signature"]})


def deployment_history(
    service: str, environment: str, *, limit: int = 200
) -> list[DeploymentRecord]:
    """The genuine recorded attempts of ``service`` in ``environment``, newest first."""
    return verified_history(service, environment, limit=limit).records


def verified_history(
    service: str, environment: str, *, limit: int = 200
) -> Verified[DeploymentRecord]:
    """The genuine records, newest first, and the refused ones: forged, edited, unsigned."""
    found = read_verified(history_key(service, environment), DeploymentRecord, limit=limit)
    mine = [r for r in found.records if (r.service, r.environment) == (service, environment)]
    return Verified(sorted(mine, key=lambda r: r.at, reverse=True), found.refused)


def rollback_target(
    history: list[DeploymentRecord], *, current_digest: str | None, to: str | None = None
) -> DeploymentRecord:
    """The healthy deployment to return to.

    That is the newest successful one of sha ``to`` when given, or else the
    newest successful one whose image differs from what runs now.

    Raises:
        InvalidRequest: Nothing in the history fits.
    """
    healthy = [r for r in history if r.outcome == "succeeded"]
    if to is not None:
        for record in healthy:
            if record.sha.startswith(to):
                return record
        known = ", ".join(sorted({r.sha[:12] for r in healthy})) or "none"
        raise InvalidRequest(
            f"no healthy deployment of {to} in the history (healthy ones: {known})",
            hint="pass a sha that was deployed successfully to this environment",
        )
    current = current_digest or (healthy[0].digest if healthy else None)
    for record in healthy:
        if record.digest != current:
            return record
    raise InvalidRequest(
        "there is no earlier healthy deployment to roll back to",
        hint="deploy another version first, or pass `to` with a sha",
    )


@dataclass(frozen=True)
class Attempt:
    """Who asked which action to release what: what every record of one attempt says."""

    release: Release
    action: Action
    triggered_by: str = ""
    """Who or what started it; empty for the flow run's creator."""
    ref: str = ""
    """The git ref pushed, for build-test-deploy."""
    committed_at: str = ""
    """The commit's time (ISO 8601): lead time starts here."""
    from_environment: str = ""
    """Where a promotion came from."""
    detail: str = ""
    """The action's own note, e.g. what a rollback rolled back from."""
    approved_by: str = ""
    """Who approved it (prod); a rollback carries the approval of the release it returns to."""

    def record(
        self, outcome: Outcome, *, detail: str, url: str = "", image: str | None = None
    ) -> DeploymentRecord:
        """The record of this attempt with its ``outcome``, as of now."""
        release = self.release
        return DeploymentRecord(
            service=release.service,
            environment=release.environment,
            sha=release.sha,
            image=image or release.image,
            action=self.action,
            outcome=outcome,
            at=datetime.now(UTC),
            triggered_by=self.triggered_by or run_creator(),
            ref=self.ref,
            committed_at=self.committed_at,
            from_environment=self.from_environment,
            url=url,
            flow_run_id=run_id(),
            detail=detail,
            approved_by=self.approved_by,
        )
