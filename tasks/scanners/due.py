"""When a default-branch push's security scan starts: once its build no longer needs the cores.

A push to the default branch starts its build-test-deploy run at once and its
security scan later. The scan's tools run for seconds of CPU; beside the
build, on a small host, they made the build, tests, push and release of the
very commit the pusher waits for twice as slow. So build-test-deploy says
when the scan is due (`scan_due`): right after the release switched, or when
the run ends any other way (failed, gave way to a newer push, unchanged).
prefect.yaml's ``security-scan`` triggers then start the scan:

- on `SCAN_DUE_EVENT`, at once;
- on a default-branch push whose `SCAN_DUE_EVENT` never came within
  `SCAN_DUE_WITHIN` (a proactive trigger, kept in Prefect's database across
  restarts): the build run crashed or its host died, and the push is scanned
  all the same;
- on a push to any other branch, at once, as before (nothing is built).

The event's id is derived from the service and commit, so a build that says
it twice (at the switch, then at its end), or a rerun, starts one scan. As
Prefect drops an event whose id it has seen, the scan takes service and
commit from the event's resource id and `COMMIT_LABEL`, the labels that pair
it with the push, never from its payload: an event posted early by another
API caller can only start that same commit's scan sooner.
"""

from __future__ import annotations

import uuid

from prefect.events import emit_event

__all__ = ["COMMIT_LABEL", "SCAN_DUE_EVENT", "SCAN_DUE_WITHIN", "scan_due", "scan_due_id"]

SCAN_DUE_EVENT = "slipway.security.scan-due"
"""A pushed commit's build no longer needs the host: its scan may start."""
COMMIT_LABEL = "slipway.git.commit"
"""The resource label, on the push event and this one, that pairs the two per commit."""
SCAN_DUE_WITHIN = 1800
"""Seconds after a default-branch push that its scan starts anyway; prefect.yaml says the same."""

_NAMESPACE = uuid.UUID("6f1c3e0a-8d2b-4b7e-9a51-0c4d2e7f9b13")


def scan_due_id(service: str, sha: str) -> uuid.UUID:
    """The one event id of ``service``'s ``sha``: Prefect starts one scan for it, however often said."""
    return uuid.uuid5(_NAMESPACE, f"{service}:{sha}")


def scan_due(service: str, sha: str) -> None:
    """Say that the scan of ``service`` at ``sha`` may start now (`SCAN_DUE_EVENT`).

    Emitted by build-test-deploy, whose runs are started by default-branch
    pushes; the label says so, for the trigger that pairs it with the push.
    """
    emit_event(
        event=SCAN_DUE_EVENT,
        resource={
            "prefect.resource.id": f"slipway.service.{service}",
            "prefect.resource.name": service,
            "slipway.git.default-branch": "true",
            COMMIT_LABEL: sha,
        },
        payload={"service": service, "commit": sha},
        id=scan_due_id(service, sha),
    )
