"""The Prefect automations that tell each team, through its channel, what happened.

One automation per team channel (`tasks.monitoring.teams`): it reacts to every
event in `NOTIFIED_EVENTS` whose resource carries that team's ``slipway.team``
label and sends one message through the channel's notification block. The
message is a Jinja template that Prefect's server renders with the event:
alerts, deployments (succeeded, failed, rolled back), approvals waiting (with
the link to the form), drift and new findings each read as a sentence with
the service, the environment and a link.

`ensure_notification_automations` is idempotent: `slipway up` calls it, and
the monitor process calls it again every minute, so a channel block created
in the UI is in use within a minute, and one deleted stops being used.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prefect import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture

from tasks.monitoring.events import NOTIFIED_EVENTS
from tasks.monitoring.teams import TeamChannel, team_channels

__all__ = ["AUTOMATION_PREFIX", "ensure_notification_automations", "notification_automation"]

logger = logging.getLogger(__name__)

AUTOMATION_PREFIX = "slipway: notify "
"""Every automation this module owns is named ``slipway: notify <team> via <block type>``."""

SUBJECT = """\
{%- set p = event.payload -%}{%- set r = event.resource -%}
{%- if event.event == 'slipway.alert.firing' -%}[FIRING] {{ p.summary }}
{%- elif event.event == 'slipway.alert.resolved' -%}[RESOLVED] {{ p.summary }}
{%- elif event.event == 'slipway.deployment.succeeded' -%}Deployed {{ p.service }} to {{ p.environment }}
{%- elif event.event == 'slipway.deployment.failed' -%}Deployment of {{ p.service }} to {{ p.environment }} failed
{%- elif event.event == 'slipway.deployment.rolled-back' -%}Rolled {{ p.service }} back in {{ p.environment }}
{%- elif event.event == 'slipway.approval.waiting' -%}Approval waiting: {{ p.service }} to {{ p.environment }}
{%- elif event.event == 'slipway.drift.detected' -%}Drift in {{ r['slipway.service'] }} {{ r['slipway.environment'] }}
{%- elif event.event == 'slipway.security.finding' -%}New {{ p.severity }} finding in {{ p.service }}
{%- else -%}{{ event.event }}{%- endif -%}"""

BODY = """\
{%- set p = event.payload -%}{%- set r = event.resource -%}
{%- if event.event.startswith('slipway.alert.') -%}
{{ 'Resolved' if event.event.endswith('resolved') else 'Firing' }}: {{ p.alert }} ({{ p.severity }})
Service: {{ p.service or 'the platform' }}
Environment: {{ p.environment or '-' }}
{{ p.description }}
Since: {{ p.starts_at }}{% if p.ends_at %} until {{ p.ends_at }}{% endif %}
Link: {{ p.link }}
Silence: {{ p.silence }}
{%- elif event.event.startswith('slipway.deployment.') -%}
Service: {{ p.service }}
Environment: {{ p.environment }}
Action: {{ p.action }} of {{ p.sha[:12] }} by {{ p.triggered_by or 'unknown' }}: {{ p.outcome }}
{{ p.detail }}
{% if p.url %}Service: {{ p.url }}
{% endif %}Link: {{ ui_url }}/runs/flow-run/{{ p.flow_run_id }}
{%- elif event.event == 'slipway.approval.waiting' -%}
Service: {{ p.service }}
Environment: {{ p.environment }}
Commit: {{ p.sha[:12] }}
Approve or reject it here: {{ p.link }}
{%- elif event.event == 'slipway.drift.detected' -%}
Service: {{ r['slipway.service'] }}
Environment: {{ r['slipway.environment'] }}
{{ p.reasons | join('; ') }}
{% if p.reconcile %}Reconciled: {{ p.reconcile | join('; ') }} (now {{ p.status_after }})
{% endif %}Link: {{ ui_url }}/artifacts/key/drift-report
{%- elif event.event == 'slipway.security.finding' -%}
Service: {{ p.service }} at {{ p.sha[:12] }}
{{ p.severity | upper }} {{ p.tool }} {{ p.rule_id }} in {{ p.file }}{% if p.line %}:{{ p.line }}{% endif %}
{{ p.message }}
{% if p.fix_version %}Fixed in {{ p.fix_version }}
{% endif %}Link: {{ ui_url }}/artifacts/key/security-scan-{{ p.service }}
{%- else -%}{{ event.event }} on {{ r['prefect.resource.id'] }}{%- endif -%}"""


def _name(channel: TeamChannel) -> str:
    return f"{AUTOMATION_PREFIX}{channel.team} via {channel.block_type}"


def notification_automation(channel: TeamChannel, *, ui_url: str) -> AutomationCore:
    """The automation that tells ``channel``'s team about its services."""
    return AutomationCore(
        name=_name(channel),
        description=f"Slipway: alerts, deployments, approvals, drift and findings of team "
        f"{channel.team}'s services, sent through block team-{channel.team}.",
        enabled=True,
        trigger=EventTrigger(
            expect=set(NOTIFIED_EVENTS),
            match={"slipway.team": channel.team},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=channel.block_document_id,
                subject=SUBJECT,
                body=BODY.replace("{{ ui_url }}", ui_url.rstrip("/")),
            )
        ],
    )


def ensure_notification_automations(ui_url: str) -> list[str]:
    """Create, update or delete Slipway's automations to match the team channels.

    Returns:
        One line per change, e.g. ``created slipway: notify payments via slack-webhook``.
    """
    wanted = {_name(c): notification_automation(c, ui_url=ui_url) for c in team_channels()}
    changes: list[str] = []
    with get_client(sync_client=True) as client:
        existing = [a for a in client.read_automations() if a.name.startswith(AUTOMATION_PREFIX)]
        seen: set[str] = set()
        for automation in existing:
            want = wanted.get(automation.name)
            if want is None or automation.name in seen:
                client.delete_automation(automation.id)
                changes.append(f"deleted {automation.name}")
                continue
            seen.add(automation.name)
            if not _same(automation, want):
                client.update_automation(automation.id, want)
                changes.append(f"updated {automation.name}")
        for name, want in wanted.items():
            if name not in seen:
                client.create_automation(want)
                changes.append(f"created {name}")
    for change in changes:
        logger.info("%s", change)
    return changes


def _same(existing: Automation, want: AutomationCore) -> bool:
    fields = {"name", "description", "enabled", "trigger", "actions"}
    have = AutomationCore.model_validate(existing.model_dump(include=fields))
    # Python mode: the trigger's sets compare as sets, whatever order the server sent.
    return have.model_dump(include=fields) == want.model_dump(include=fields)
