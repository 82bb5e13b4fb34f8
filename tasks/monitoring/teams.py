"""Teams, as the catalog names them, and where each one is told things.

A service's team is its catalog owner without the Backstage kind:
``group:payments`` -> ``payments``. A team's channel is one notification
block document named ``team-<team>``, of any type with the ``notify``
capability: Prefect's Slack Webhook, Microsoft Teams Webhook, Custom Webhook,
or Slipway's Email Notification. Alerts about the platform itself go to the
team `PLATFORM_TEAM`, whose channel is ``team-platform``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

__all__ = [
    "CHANNEL_PREFIX",
    "PLATFORM_TEAM",
    "TeamChannel",
    "channel_name",
    "team_channels",
    "team_of",
]

CHANNEL_PREFIX = "team-"
"""Block documents named ``team-<team>`` are that team's channel."""
PLATFORM_TEAM = "platform"
"""The team that runs Slipway itself."""

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def team_of(owner: str) -> str:
    """The team slug of a catalog owner: ``group:default/Payments`` -> ``payments``."""
    name = owner.rpartition(":")[2].rpartition("/")[2]
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")
    return slug or "unknown"


def channel_name(team: str) -> str:
    """The block document name of ``team``'s channel."""
    return f"{CHANNEL_PREFIX}{team}"


@dataclass(frozen=True)
class TeamChannel:
    """One team's notification block document."""

    team: str
    """The team slug."""
    block_document_id: UUID
    """What the automation's send-notification action names."""
    block_type: str
    """The block type's slug, e.g. ``slack-webhook``."""


def team_channels() -> list[TeamChannel]:
    """Every ``team-*`` block document whose type can notify, one per team.

    Where a team has several (say a Slack and an email document both named
    ``team-payments``), each gets its own entry: every one of them is told.
    """
    from prefect import get_client

    body = {
        "block_documents": {"name": {"like_": CHANNEL_PREFIX}, "is_anonymous": {"eq_": False}},
        "block_schemas": {"block_capabilities": {"all_": ["notify"]}},
        "include_secrets": False,
        "limit": 200,
    }
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/block_documents/filter", json=body)
    found = []
    for document in response.json():
        name = str(document.get("name") or "")
        if not name.startswith(CHANNEL_PREFIX) or len(name) == len(CHANNEL_PREFIX):
            continue
        block_type = (document.get("block_type") or {}).get("slug", "")
        found.append(TeamChannel(name[len(CHANNEL_PREFIX) :], UUID(document["id"]), block_type))
    return sorted(found, key=lambda c: (c.team, c.block_type))
