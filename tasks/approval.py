"""A human's approval, asked in the Prefect UI: the run pauses with a form until answered.

Deploying to prod and applying a Terraform plan that destroys (or any plan
for prod) wait here. The paused run shows the question and the form under
**Flow Runs**; **Resume** with *Approve* ticked lets it go on.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from slipway.errors import GateRefused
from slipway.run_log import run_logger

__all__ = ["POLL_SECONDS", "Approval", "await_approval"]

POLL_SECONDS = 2
"""How often a paused run looks for its answer."""


class Approval(RunInput):
    """The form a paused run shows in the UI."""

    approve: bool = Field(
        default=False, title="Approve", description="Tick to approve what is described above."
    )
    comment: str = Field(
        default="",
        max_length=500,
        title="Comment",
        description="Why; kept in the flow run's log and in the record of what was done.",
    )


@task(name="await-approval", cache_policy=NO_CACHE)
def await_approval(
    subject: str, description: str, *, timeout: int, hint: str, rejected_hint: str | None = None
) -> str:
    """Pause the flow run until a human approves or rejects ``subject`` in the UI.

    Args:
        subject: What is to be approved, e.g. ``the plan of api/prod``.
        description: The markdown the form shows above its fields.
        timeout: Seconds to wait for an answer.
        hint: What to do when nobody answers in time.
        rejected_hint: What to do after a rejection, if anything.

    Returns:
        ``approved: <comment>``, or ``approved`` without a comment.

    Raises:
        GateRefused: Rejected, or nobody answered within ``timeout`` seconds.
    """
    logger = run_logger(__name__)
    logger.info("Waiting up to %d s for an approval of %s", timeout, subject)
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description),
            timeout=timeout,
            poll_interval=POLL_SECONDS,
        )
    except FlowPauseTimeout as e:
        raise GateRefused(f"nobody approved {subject} within {timeout} s", hint=hint) from e
    if not answer.approve:
        reason = answer.comment or "no comment"
        raise GateRefused(f"{subject} was rejected: {reason}", hint=rejected_hint)
    logger.info("Approved: %s", answer.comment or "no comment")
    return f"approved: {answer.comment}".rstrip(": ")
