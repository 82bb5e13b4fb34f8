"""A run that a reactive trigger starts is keyed by the event that caused it.

Stands in for PrefectHQ/prefect#21193 (a templatable idempotency key on the
``run-deployment`` action; closed unmerged, still so in Prefect 3.9.1).

Prefect keys each run an automation creates by the *invocation*: a fresh
uuid per firing. The same event delivered twice therefore starts two runs
once Prefect has forgotten the first (its memory of seen events lasts 30
minutes and does not survive a restart). The webhook forwarder must be able
to send a push's event again after Prefect went down mid-burst, without
starting its runs twice, and must be able to tell whether they exist.

`apply` makes the key of an action fired by a reactive event trigger name
its triggering event instead of the invocation (`run_key`). Each such
firing has an event of its own, so two firings never share a key; proactive
and composite triggers, whose firings can share a last event, keep Prefect's
key. The forwarder (`deployments.prefect_api`) computes the same key to find
the runs.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply", "run_key"]

PATCH = Patch(
    name="run-idempotency",
    module="prefect.server.events.schemas.automations",
    qualname="TriggeredAction.idempotency_key",
    upstream="https://github.com/PrefectHQ/prefect/pull/21193",
    fingerprint="2ca33344435d5ed0",
)


def run_key(automation: UUID | str, action_index: int, event: UUID | str) -> str:
    """The idempotency key of the run that ``automation``'s action starts for ``event``."""
    return f"automation {automation}, action {action_index}, event {event}"


def apply() -> bool:
    """Key runs of reactive event triggers by their event; safe to call twice.

    Returns whether the key is in place (not when Prefect's code changed since this was written).
    """
    from prefect.server.events.schemas.automations import EventTrigger, Posture, TriggeredAction

    original = TriggeredAction.idempotency_key
    if getattr(original, "_slipway_event_keyed", False):
        return True
    if not PATCH.applicable():
        return False

    def idempotency_key(self: Any) -> str:
        trigger = self.automation.trigger
        event = self.triggering_event
        if event is None or not isinstance(trigger, EventTrigger):
            return str(original(self))
        if trigger.posture != Posture.Reactive:
            return str(original(self))
        return run_key(self.automation.id, self.action_index, event.id)

    idempotency_key._slipway_event_keyed = True  # type: ignore[attr-defined]
    idempotency_key.__doc__ = original.__doc__
    TriggeredAction.idempotency_key = idempotency_key  # type: ignore[method-assign]
    return True
