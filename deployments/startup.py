"""What lets `slipway up` start its parts side by side, and what it leaves to read afterwards.

- **The gate.** `up` starts Prefect's server first, then its Python children
  (runner, portal, bridge, monitor) beside it, forked from `up` once it
  imported their modules (`deployments.warm_start`), so their imports are
  paid once and overlap the server's start (a runner of another checkout
  than Slipway's starts cold, and imports nothing of Prefect before its gate). Each child then calls `wait_for_gate` before it
  reads a block, and `up` opens the gate once the block types are registered
  and the default documents written. The runner waits at a second gate until
  every component answers before it imports the flows and registers the
  deployments: seconds of CPU, on the server too, that would slow the rest. A gate file holds the marker of the `up` that opened it, so
  one left behind by a crash opens nothing.
- **The registration record.** Deployments are registered (served, or
  applied to the work pool) while `up` already reports ready: the record in
  ``<home>/run/registration.json`` says how far it got, or why it failed, for
  `slipway status` and for the bridge, which holds pushes until the triggers
  exist.
- **The timeline.** ``<home>/logs/startup.log`` lists when each step of the
  last start finished, so where start-up time goes can be read, not guessed.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field

from slipway.errors import ComponentError
from slipway.home import SlipwayHome
from slipway.private import write_private

__all__ = [
    "Registration",
    "RegistrationProgress",
    "Timeline",
    "close_gate",
    "open_gate",
    "read_registration",
    "wait_for_gate",
    "write_registration",
]

_MARKER_VARIABLE = "SLIPWAY_SUPERVISOR"
_GATE_TIMEOUT_SECONDS = 600.0
"""Longer than any start-up wait of `up` (``startup_timeout``), which fails first."""


Gate = Literal["configured", "ready"]
"""``configured``: the blocks are set up, children may read them. ``ready``: every
component answers; the runner imports the flows and registers deployments then,
so that this work does not slow the others' start."""


def _gate(home: SlipwayHome, gate: Gate) -> Path:
    return home.run / f"gate-{gate}"


def close_gate(home: SlipwayHome) -> None:
    """Before a start: children wait until `open_gate`."""
    for gate in get_args(Gate):
        _gate(home, gate).unlink(missing_ok=True)


def open_gate(home: SlipwayHome, marker: str, gate: Gate) -> None:
    """Let the children of the `up` with ``marker`` past ``gate``."""
    write_private(_gate(home, gate), marker)


def wait_for_gate(gate: Gate = "configured", *, timeout: float = _GATE_TIMEOUT_SECONDS) -> None:
    """In a child of `up`: wait until `up` opens ``gate``; started by hand: return.

    Raises:
        ComponentError: the gate stayed shut for ``timeout`` seconds.
    """
    marker = os.environ.get(_MARKER_VARIABLE)
    if not marker:
        return
    path = _gate(SlipwayHome.from_env(), gate)
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip() == marker):
        if time.monotonic() > deadline:
            raise ComponentError(
                f"`slipway up` did not open the gate {gate!r} within {timeout:.0f} s",
                hint="see logs/prefect.log under the Slipway home, then restart `slipway up`",
            )
        time.sleep(0.05)


class Registration(BaseModel):
    """How far registering prefect.yaml's deployments got, for one `slipway up`."""

    marker: str = Field(description="The `up` it belongs to (SLIPWAY_SUPERVISOR).")
    state: Literal["registering", "registered", "failed"] = Field(description="Where it is.")
    total: int = Field(default=0, description="Deployments that prefect.yaml declares.")
    done: int = Field(default=0, description="Deployments registered so far.")
    started_at: datetime = Field(description="When registering began.")
    finished_at: datetime | None = Field(default=None, description="When it ended, either way.")
    error: str | None = Field(default=None, description="What failed, for state ``failed``.")
    hint: str | None = Field(default=None, description="What to do about it.")
    last_error: str | None = Field(
        default=None,
        description="Why the attempt before this one failed (a restarted runner tries again).",
    )

    def seconds(self) -> float:
        """How long it took, or has taken so far."""
        return ((self.finished_at or datetime.now(UTC)) - self.started_at).total_seconds()


def _record(home: SlipwayHome) -> Path:
    return home.run / "registration.json"


def write_registration(home: SlipwayHome, registration: Registration) -> None:
    """Replace the record atomically."""
    write_private(_record(home), registration.model_dump_json())


def read_registration(home: SlipwayHome, marker: str) -> Registration | None:
    """The record of the `up` with ``marker``; None when it has written none (yet)."""
    try:
        found = Registration.model_validate_json(_record(home).read_text())
    except (OSError, ValueError):
        return None
    return found if found.marker == marker else None


class RegistrationProgress:
    """Keeps the registration record of one `up` current while its deployments register."""

    def __init__(self, home: SlipwayHome, marker: str) -> None:
        self.home = home
        self.current = Registration(
            marker=marker, state="registering", total=0, started_at=datetime.now(UTC)
        )

    @classmethod
    def of_child(cls) -> RegistrationProgress | None:
        """The progress of this child of `up`; None in a process started by hand."""
        marker = os.environ.get(_MARKER_VARIABLE)
        return cls(SlipwayHome.from_env(), marker) if marker else None

    def begin(self, total: int) -> None:
        """``total`` deployments are about to be registered; an earlier failure is kept.

        Registering counts from the record `up` began, when there is one: the
        runner begins only once the gate opens, seconds after `up` did.
        """
        previous = read_registration(self.home, self.current.marker)
        last = previous.last_error if previous is not None else None
        started = datetime.now(UTC)
        if previous is not None and previous.state == "failed":
            last = f"{previous.error} Fix: {previous.hint}"
        elif previous is not None and previous.state == "registering":
            started = previous.started_at
        self._write(total=total, started_at=started, last_error=last)

    def advance(self) -> None:
        """One more deployment is registered."""
        self._write(done=self.current.done + 1)

    def finish(self) -> None:
        """Every deployment is registered."""
        self._write(state="registered", finished_at=datetime.now(UTC))

    def fail(self, error: str, hint: str) -> None:
        """Registering stopped at ``error``; ``hint`` says what to do. The first cause is kept."""
        if self.current.state != "failed":
            now = datetime.now(UTC)
            self._write(state="failed", finished_at=now, error=error, hint=hint)

    def _write(self, **changes: object) -> None:
        self.current = self.current.model_copy(update=changes)
        write_registration(self.home, self.current)


class Timeline:
    """When each step of one start finished, in ``<home>/logs/startup.log``."""

    def __init__(self, home: SlipwayHome, began: float) -> None:
        self.path = home.logs / "startup.log"
        self.began = began
        write_private(self.path, f"slipway up started {datetime.now(UTC).isoformat()}\n")

    def mark(self, step: str) -> float:
        """Note that ``step`` finished now; returns the seconds since the start."""
        seconds = time.monotonic() - self.began
        with self.path.open("a") as out:
            out.write(f"{seconds:7.2f} s  {step}\n")
        return seconds
