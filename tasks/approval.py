"""Approvals with an approver: who may approve, proven by their own token, never the author.

A release to prod and a Terraform plan that needs it pause their run for an
approval form (`ApprovalForm`). Whoever fills it in names themselves and
gives their approver token (`slipway.approver_tokens`). The answer counts
only when that person is one of the approvers of the service's owning group
in the catalog, the token is theirs, and they did not make or ask for the
change (`ApprovalRequest.authors`: the pusher, the commit's author, the
requester). Anything else is a *refusal*: recorded, and the run waits on for
a valid answer until its timeout. A valid rejection ends the run.

Every approval, rejection and refusal is recorded with who, when and why: a
signed row of the table artifact ``approvals-<service>--<environment>``
(`tasks.signed_records`) and a ``slipway.approval.<decision>`` event. The
form's input, which holds the token, is deleted from Prefect as soon as the
run has read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from slipway.approver_tokens import ApproverTokens
from slipway.errors import GateRefused
from slipway.home import SlipwayHome
from tasks.actors import run_id
from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.entities import GroupEntity
from tasks.catalog.model import CatalogModel, owner_group
from tasks.monitoring.events import emit_approval_waiting, team_labels
from tasks.signed_records import publish_signed

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = [
    "POLL_SECONDS",
    "ApprovalForm",
    "ApprovalRecord",
    "ApprovalRequest",
    "approvals_key",
    "await_approval",
    "group_approvers",
    "judge",
]

Decision = Literal["approved", "rejected", "refused"]
POLL_SECONDS = 2
"""How often a paused run looks for its answer."""


class ApprovalForm(RunInput):
    """The form a paused run shows: the approver's name and token, and their decision."""

    approve: bool = Field(default=False, title="Approve", description="Tick to approve.")
    approver: str = Field(
        default="",
        max_length=63,
        title="Approver",
        description="Your user name, as your team's group lists it among its approvers.",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        title="Approver token",
        description="The token `slipway approver issue` gave you. It is checked and deleted.",
    )
    comment: str = Field(
        default="",
        max_length=500,
        title="Comment",
        description="Why; kept in the approval record and the run's log.",
    )


@dataclass(frozen=True)
class ApprovalRequest:
    """What is asked to be approved, and who may and may not approve it."""

    service: str
    environment: str
    kind: Literal["release", "plan"]
    """A release of an image, or a Terraform plan."""
    subject: str
    """What exactly, e.g. ``a1b2c3d4e5f6 (registry/svc@sha256:...)`` or the plan's count."""
    description: str
    """Markdown shown above the form."""
    approvers: frozenset[str]
    """The approvers of the service's owning group."""
    authors: frozenset[str]
    """Who made or asked for the change (pusher, commit author, requester): never its approver."""


class ApprovalRecord(BaseModel):
    """One answer to an approval form, as the approvals history keeps it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str
    environment: str
    kind: Literal["release", "plan"]
    subject: str
    decision: Decision
    approver: str = Field(description="Who the answer named; for a refusal, unproven.")
    reason: str = Field(description="The approver's comment, or why the answer was refused.")
    at: datetime
    flow_run_id: str = ""
    signature: str = ""


def group_approvers(server: GitServer, entry: CatalogEntry) -> frozenset[str]:
    """The approvers of ``entry``'s owning group in the catalog; empty when it has none.

    The group is the ``Group`` entity that the service's ``spec.owner`` names
    (`tasks.catalog.model`); its approvers are always among its members.
    """
    name = owner_group(entry.owner)
    if name is None:
        return frozenset()
    group = CatalogModel(Catalog(server)).find(GroupEntity, name)
    return frozenset(group.approvers) if group is not None else frozenset()


def approvals_key(service: str, environment: str) -> str:
    """The artifact key of the approvals of one service environment."""
    return f"approvals-{service}--{environment}"


def judge(request: ApprovalRequest, answer: ApprovalForm, tokens: ApproverTokens) -> str | None:
    """Why ``answer`` cannot count, or None when it comes from an approver who may decide."""
    who = answer.approver.strip()
    if not who:
        return "the answer names no approver"
    if who not in request.approvers:
        known = ", ".join(sorted(request.approvers)) or "none"
        return f"{who!r} is not an approver of the service's owning group (approvers: {known})"
    if not tokens.verify(who, answer.token):
        return f"the token is not {who}'s approver token"
    if who.casefold() in {a.casefold() for a in request.authors}:
        return f"{who} made or asked for this change, so cannot approve it"
    return None


@task(name="await-approval", cache_policy=NO_CACHE)
def await_approval(
    request: ApprovalRequest, *, timeout: int, poll: int = POLL_SECONDS
) -> ApprovalRecord:
    """Pause until an approver approves or rejects; refusals are recorded and waited past.

    Raises:
        GateRefused: a valid rejection; nobody may approve (the group has no
            approvers); or no valid answer within ``timeout`` seconds.
    """
    logger = get_run_logger()
    if not request.approvers:
        raise GateRefused(
            f"nobody may approve {request.kind}s of {request.service}: its owning group has no "
            "approvers in the catalog",
            hint="name them: slipway catalog group GROUP --member NAME --approver NAME",
        )
    tokens = ApproverTokens(SlipwayHome.from_env())
    form = ApprovalForm.with_initial_data(description=request.description)
    link = emit_approval_waiting(request.service, request.environment, request.subject)
    logger.info("Waiting for approval: %s", link)  # the team's channel hears it too
    deadline = time.monotonic() + timeout
    while (left := int(deadline - time.monotonic())) > 0:
        logger.info("Waiting up to %d s for an approver of %s", left, request.subject)
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=left, poll_interval=poll)
        except FlowPauseTimeout:
            break
        _forget_answers()
        problem = judge(request, answer, tokens)
        if problem is not None:
            _record(request, "refused", answer.approver.strip(), problem)
            logger.warning("Approval refused: %s; waiting for a valid answer", problem)
            continue
        decision: Decision = "approved" if answer.approve else "rejected"
        record = _record(request, decision, answer.approver.strip(), answer.comment)
        if decision == "rejected":
            raise GateRefused(
                f"{answer.approver} rejected the {request.kind} of {request.subject} to "
                f"{request.environment}: {answer.comment or 'no comment'}"
            )
        logger.info("Approved by %s: %s", record.approver, record.reason or "no comment")
        return record
    raise GateRefused(
        f"no approver approved the {request.kind} of {request.subject} to "
        f"{request.environment} within {timeout} s",
        hint="run it again and have an approver of the owning group resume the paused run",
    )


def _record(request: ApprovalRequest, decision: Decision, who: str, why: str) -> ApprovalRecord:
    record = ApprovalRecord(
        service=request.service,
        environment=request.environment,
        kind=request.kind,
        subject=request.subject,
        decision=decision,
        approver=who,
        reason=why,
        at=datetime.now(UTC),
        flow_run_id=run_id(),
    )
    publish_signed(
        record,
        key=approvals_key(request.service, request.environment),
        description=f"{request.kind} of {request.subject}: {decision} ({who or 'nobody'}). {why}",
    )
    emit_event(
        event=f"slipway.approval.{decision}",
        resource={
            "prefect.resource.id": f"slipway.service.{request.service}",
            "prefect.resource.name": request.service,
            "slipway.environment": request.environment,
            **team_labels(request.service),
        },
        payload=record.model_dump(mode="json"),
    )
    return record


def _forget_answers() -> None:
    """Delete the run's stored form answers: they hold an approver's token."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    flow_run = context.flow_run.id
    with get_client(sync_client=True) as client:
        for stored in client.filter_flow_run_input(flow_run, "paused-", 100, set()):
            if stored.key.endswith("-response"):
                client.delete_flow_run_input(flow_run, stored.key)
