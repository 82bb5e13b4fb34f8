"""Who did something: the actor every run, release and approval names.

Prefect's self-hosted server knows one credential, shared by everyone who may
call its API, so it cannot say which person started a run. A run therefore
names its actor explicitly: the pusher that the signed webhook names
(``triggered_by``), else what created the run (a deployment's trigger or
schedule, an automation), else ``manual``. An approval names its approver,
proven by that approver's own token (`tasks.approval`).
"""

from __future__ import annotations

from prefect.context import FlowRunContext

__all__ = ["run_creator", "run_id"]


def run_id() -> str:
    """The id of the flow run this code runs in; empty outside one."""
    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else ""


def run_creator() -> str:
    """Who started the run when no one was named: its creator, else ``manual``."""
    context = FlowRunContext.get()
    created_by = context.flow_run.created_by if context and context.flow_run else None
    if created_by is not None and created_by.display_value:
        return str(created_by.display_value)
    return "manual"
