"""The history of releases, kept in Prefect, and the slot that serialises them.

Every deployment attempt becomes a `DeploymentRecord`:

- a version of the keyed table artifact ``deployments-<service>--<environment>``.
  Prefect keeps every version of a key, so the Artifacts page shows the
  history, and `deployment_history` reads it back for rollback and metrics;
- a ``slipway.deployment.succeeded``, ``.failed`` or ``.rolled-back`` event on
  the resource ``slipway.service.<name>``, whose payload is the record, for
  automations and metrics.

`deploy_slot` is a Prefect global concurrency limit of 1 per service and
environment: build-test-deploy, promote and rollback all take it before they
touch that environment's containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Literal

import httpx
from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import Artifact, ConcurrencyLeaseHolder
from prefect.client.schemas.sorting import ArtifactSort
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipway.errors import InvalidRequest
from tasks.monitoring.events import team_labels

__all__ = [
    "DeploymentRecord",
    "deploy_slot",
    "deployment_history",
    "history_key",
    "record_deployment",
    "rollback_target",
    "slot_name",
]


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


class DeploymentRecord(BaseModel):
    """One deployment attempt, as the history keeps it and events carry it.

    Each record is one version of the table artifact ``deployments-<service>--<env>``
    (Prefect keeps every version of a key: that is the history the UI shows),
    and the payload of a ``slipway.deployment.*`` event for metrics and automations.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str
    environment: str
    sha: str = Field(description="The full commit id that was deployed.")
    image: str = Field(description="``<registry>/<service>@sha256:...``.")
    action: Literal["build-test-deploy", "promote", "rollback"]
    outcome: Literal["succeeded", "failed", "unchanged"] = Field(
        description="``unchanged``: it already ran there, so nothing was restarted. "
        "Such a run returns its record but adds nothing to the history."
    )
    at: datetime = Field(description="When the attempt ended, UTC.")
    triggered_by: str = Field(default="", description="Who or what started it: pusher, user.")
    ref: str = Field(default="", description="The git ref pushed, for build-test-deploy.")
    committed_at: str = Field(default="", description="The commit's time: lead time starts here.")
    from_environment: str = Field(default="", description="Where a promotion came from.")
    url: str = Field(default="", description="Where the service answered, when it did.")
    flow_run_id: str = Field(default="", description="The flow run that made the attempt.")
    detail: str = Field(default="", description="Why it failed, or what it replaced.")

    @property
    def digest(self) -> str:
        """The ``sha256:...`` part of `image`."""
        return self.image.partition("@")[2]

    @property
    def event(self) -> str:
        """``slipway.deployment.succeeded``, ``.failed`` or ``.rolled-back``."""
        if self.outcome == "failed":
            return "slipway.deployment.failed"
        return "slipway.deployment." + ("rolled-back" if self.action == "rollback" else "succeeded")

    def row(self) -> dict[str, str]:
        """The record as one table row of strings."""
        return {k: str(v) for k, v in self.model_dump(mode="json").items()}


def history_key(service: str, environment: str) -> str:
    """The artifact key of a history: lower-case letters, digits and dashes only."""
    return f"deployments-{service}--{environment}"


@task(name="record-deployment", cache_policy=NO_CACHE)
def record_deployment(record: DeploymentRecord) -> None:
    """Add ``record`` to the history and emit its ``slipway.deployment.*`` event."""
    if record.outcome == "unchanged":
        raise InvalidRequest("an unchanged release deployed nothing, so there is nothing to record")
    create_table_artifact(
        table=[record.row()],
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
            **team_labels(record.service),  # routes it to the team's channel
        },
        payload=record.model_dump(mode="json"),
    )


def deployment_history(
    service: str, environment: str, *, limit: int = 200
) -> list[DeploymentRecord]:
    """The recorded attempts of ``service`` in ``environment``, newest first."""
    artifact_filter = ArtifactFilter(
        key=ArtifactFilterKey(any_=[history_key(service, environment)])
    )
    body = {
        "artifacts": artifact_filter.model_dump(mode="json", exclude_unset=True),
        "sort": ArtifactSort.CREATED_DESC.value,
        "limit": limit,
        "offset": 0,
    }
    # Not `read_artifacts`: it sends null run filters, which this server refuses,
    # and empty ones drop the records a flow wrote outside any task run.
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json=body)
    artifacts = [Artifact.model_validate(item) for item in response.json()]
    records: list[DeploymentRecord] = []
    for artifact in artifacts:
        try:
            rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            found = [DeploymentRecord.model_validate(row) for row in rows or []]
        except (ValueError, TypeError, ValidationError):
            _log().warning("Skipping unreadable deployment record %s", artifact.id)
            continue
        records += [r for r in found if (r.service, r.environment) == (service, environment)]
    return sorted(records, key=lambda r: r.at, reverse=True)


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


# -- one release at a time per service and environment -------------------------


LEASE_SECONDS = 120
"""A dead holder's slot frees itself after this long; a live one renews it."""


def slot_name(service: str, environment: str) -> str:
    """The global concurrency limit that serialises releases of one service environment."""
    return f"slipway-deploy:{service}:{environment}"


@contextmanager
def deploy_slot(
    service: str,
    environment: str,
    *,
    give_up: Callable[[], str | None] = lambda: None,
    poll_seconds: float = 2.0,
) -> Iterator[str | None]:
    """Hold the one release slot of ``service`` in ``environment``.

    Yields None once the slot is held. While waiting, ``give_up`` is asked
    before each attempt; when it returns a reason, that reason is yielded
    instead and the slot is never taken (a newer push superseded this one).
    Attempts start 0.1 s apart and back off to ``poll_seconds``: a slot that
    the previous release is just handing back is taken at once, a long
    release is not polled hard.
    The slot is a Prefect global concurrency limit of 1, created when
    missing; its lease expires if the holder dies.

    Each attempt is a single request (no server-side wait that a timeout could
    cut short after the slot was granted, which would strand a lease).
    """
    name = slot_name(service, environment)
    held = ExitStack()
    pause = min(0.1, poll_seconds)
    looked_for_limit = False  # created at the first release, not read before every one
    while True:
        reason = give_up()
        if reason is not None:
            yield reason
            return
        try:
            held.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    max_retries=0,
                    lease_duration=LEASE_SECONDS,
                    strict=True,
                    holder=_holder(),
                    # A renewal that fails once under load must not kill a release midway.
                    raise_on_lease_renewal_failure=False,
                )
            )
            break
        except ConcurrencySlotAcquisitionError as e:
            if not _locked(e):
                if looked_for_limit:
                    raise
                _ensure_limit(name)  # strict: refused because the limit does not exist yet
                looked_for_limit = True
                continue
        time.sleep(pause)
        pause = min(pause * 2, poll_seconds)
    _log().info("Holding the release slot %s", name)
    with held:
        yield None


def _locked(error: ConcurrencySlotAcquisitionError) -> bool:
    """Whether the slot was refused because another run holds it (HTTP 423)."""
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectAlreadyExists):  # another run created it first
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _holder() -> ConcurrencyLeaseHolder | None:
    """The flow run holding the slot, so the UI shows who has it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)
