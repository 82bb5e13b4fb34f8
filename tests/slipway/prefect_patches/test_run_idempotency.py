"""Runs that a reactive trigger starts are keyed by their event, so an event sent twice starts one run."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from prefect.server.events.actions import RunDeployment
from prefect.server.events.schemas.automations import (
    Automation,
    EventTrigger,
    Posture,
    TriggeredAction,
)
from prefect.server.events.schemas.events import ReceivedEvent

from slipway.prefect_patches import run_idempotency


def _triggered(posture: Posture, event: ReceivedEvent, index: int = 0) -> TriggeredAction:
    trigger = EventTrigger(
        expect={"slipway.git.push"},
        posture=posture,
        threshold=1,
        within=0 if posture == Posture.Reactive else 30,
    )
    action = RunDeployment(source="selected", deployment_id=uuid4(), parameters={})
    automation = Automation(id=uuid4(), name="push", trigger=trigger, actions=[action])
    return TriggeredAction(
        automation=automation,
        triggered=datetime.now(UTC),
        triggering_labels={},
        triggering_event=event,
        action=action,
        action_index=index,
    )


def _event() -> ReceivedEvent:
    return ReceivedEvent(
        id=uuid4(),
        occurred=datetime.now(UTC),
        event="slipway.git.push",
        resource={"prefect.resource.id": "slipway.service.payments"},
    )


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TriggeredAction, "idempotency_key", TriggeredAction.idempotency_key)
    assert run_idempotency.apply()
    assert run_idempotency.apply()  # a second call wraps nothing twice


def test_prefect_keys_each_invocation_so_the_same_event_twice_gets_two_keys():
    event = _event()
    first, second = _triggered(Posture.Reactive, event), _triggered(Posture.Reactive, event)
    second = second.model_copy(update={"automation": first.automation})
    # Without the patch (this test runs unpatched): a new key per firing.
    assert first.idempotency_key() != second.idempotency_key()


def test_a_reactive_firing_is_keyed_by_its_event_and_action(patched: None):
    event = _event()
    first = _triggered(Posture.Reactive, event)
    again = TriggeredAction.model_validate(first.model_dump() | {"id": uuid4()})

    assert first.idempotency_key() == again.idempotency_key()
    assert first.idempotency_key() == run_idempotency.run_key(first.automation.id, 0, event.id)
    other_event = first.model_copy(update={"triggering_event": _event()})
    assert other_event.idempotency_key() != first.idempotency_key()
    other_action = first.model_copy(update={"action_index": 1})
    assert other_action.idempotency_key() != first.idempotency_key()


def test_a_proactive_firing_keeps_prefects_own_key(patched: None):
    # Two proactive firings can share their last event: the event must not decide.
    event = _event()
    first, second = _triggered(Posture.Proactive, event), _triggered(Posture.Proactive, event)
    second = second.model_copy(update={"automation": first.automation})
    assert first.idempotency_key() != second.idempotency_key()
    assert str(first.id) in first.idempotency_key()
