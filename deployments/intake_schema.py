"""The intake queue's tables and the values it hands out; `deployments.intake` uses them.

Timestamps are seconds since the epoch (floats), the same on SQLite and
PostgreSQL. A delivery's Prefect event is stored as JSON, exactly as the
forwarder posts it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql

__all__ = [
    "DELIVERIES",
    "HEADS",
    "METADATA",
    "Accepted",
    "InFlight",
    "QueueStats",
    "State",
    "SupersededPush",
]

METADATA = MetaData()
_SEQ = Integer().with_variant(postgresql.BIGINT(), "postgresql")
DELIVERIES = Table(
    "slipway_intake_deliveries",
    METADATA,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("delivery", Text, nullable=False),
    Column("service", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("after", String(64), nullable=False),
    Column("pusher", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("pushed_at", Float, nullable=False),
    Column("event", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("superseded_by", _SEQ),
    Column("recorded", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("posted_at", Float),
    Column("expected", Text),
    Column("done_at", Float),
    Column("error", Text),
    Index("slipway_intake_by_state", "state", "service", "ref", "pushed_at"),
    Index("slipway_intake_by_done", "done_at"),
)
HEADS = Table(
    "slipway_intake_heads",
    METADATA,
    Column("service", Text, primary_key=True),
    Column("ref", Text, primary_key=True),
    Column("seq", _SEQ, nullable=False),
    Column("pushed_at", Float, nullable=False),
)
"""Per branch, the newest push sent on: older pushes arriving later are superseded by it."""


class State(enum.StrEnum):
    """Where a delivery is; see the module docstring for the transitions."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    SUPERSEDED = "superseded"
    FAILED = "failed"


@dataclass(frozen=True)
class Accepted:
    """A delivery the bridge checked and accepts: signed, a push, of a known service."""

    key: str
    """`deployments.webhooks.delivery_key`: the same for a redelivery, different otherwise."""
    delivery: str
    """The sender's delivery id, for people reading the history."""
    service: str
    ref: str
    after: str
    pusher: str
    received_at: float
    pushed_at: float
    """When it was pushed, or `received_at` when the sender does not say."""
    event: dict[str, Any]
    """The Prefect event that the forwarder posts, id included."""


@dataclass(frozen=True)
class InFlight:
    """A delivery sent on to Prefect (or about to be) whose runs are not confirmed yet."""

    seq: int
    service: str
    ref: str
    after: str
    received_at: float
    event: dict[str, Any]
    attempts: int
    """How often its event was posted so far; 0 before the first time."""
    posted_at: float | None
    expected: dict[str, Any]
    """What the forwarder expects from Prefect, in its own form (see `deployments.forwarder`)."""


@dataclass(frozen=True)
class SupersededPush:
    """A push that gave way to a newer one of the same branch and is not recorded in Prefect yet."""

    seq: int
    service: str
    ref: str
    after: str
    pusher: str
    delivery: str
    received_at: float
    by_seq: int
    by_after: str
    by_event: str
    """The Prefect event id of the push that went instead."""


@dataclass(frozen=True)
class QueueStats:
    """How much is waiting, for health, `slipway status` and the metrics."""

    queued: int
    """Deliveries not delivered yet: waiting, or sent and not confirmed."""
    in_flight: int
    oldest_age: float | None
    """Seconds the oldest of them has waited; None when none waits."""
    failed: int
    unrecorded: int
    """Superseded pushes not yet recorded in Prefect."""
