"""The record a running `slipway up` leaves in its home.

`slipway status` and `slipway down` read it to find the supervisor, its
children and their ports. A lock file held for the supervisor's lifetime tells
a live record from one left behind by a crash.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from slipway.errors import ComponentError
from slipway.home import Ports, SlipwayHome

__all__ = ["ChildRecord", "UpLock", "UpState", "read_state", "write_state"]


class ChildRecord(BaseModel):
    """One supervised process."""

    name: str = Field(description="Component name.")
    pid: int = Field(description="Process id; the child leads its own process group.")
    url: str = Field(description="Where the component is reached.")


class UpState(BaseModel):
    """What `slipway up` is running, written atomically on every change."""

    supervisor_pid: int = Field(description="Pid of the `slipway up` process.")
    marker: str = Field(description="SLIPWAY_SUPERVISOR value in every child's environment.")
    started_at: datetime = Field(description="When `slipway up` started.")
    ready_seconds: float | None = Field(default=None, description="Seconds until all was healthy.")
    ports: dict[str, int] = Field(description="Component name to loopback port.")
    project_dir: str = Field(description="Directory holding prefect.yaml.")
    children: list[ChildRecord] = Field(default_factory=list)
    role: str = Field(default="embedded", description="embedded, server, worker or all.")
    database: str | None = Field(
        default=None, description="The server's database URL with its password hidden."
    )
    api_url: str | None = Field(
        default=None, description="The Prefect API this host uses; remote on a worker host."
    )
    pool: str | None = Field(default=None, description="Work pool of this host's worker.")
    worker_name: str | None = Field(default=None, description="Name of this host's worker.")
    public_url: str | None = Field(
        default=None, description="Where users and workers reach this server, if not loopback."
    )

    @field_validator("database")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # The file is world-readable in a shared home: refuse to store a secret in it.
        if value is not None and urlsplit(value).password not in (None, "***"):
            raise ValueError("the state file only takes a database URL with its password hidden")
        return value

    def port_config(self) -> Ports:
        """The ports as the typed value the rest of Slipway takes."""
        return Ports(**self.ports)

    def prefect_api_url(self) -> str:
        """The Prefect API of this host's platform: its own server, or a worker's remote one."""
        return self.api_url or self.port_config().prefect_api_url


def _state_file(home: SlipwayHome) -> Path:
    return home.run / "up.json"


def write_state(home: SlipwayHome, state: UpState) -> None:
    """Replace the record atomically, so a reader never sees half of it."""
    path = _state_file(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)


def read_state(home: SlipwayHome) -> UpState | None:
    """The record of a live `slipway up`, or None when none runs on this home."""
    path = _state_file(home)
    if not path.exists() or not UpLock(home).is_held():
        return None
    return UpState.model_validate(json.loads(path.read_text()))


class UpLock:
    """An exclusive lock on the home: one `slipway up` per data directory."""

    def __init__(self, home: SlipwayHome) -> None:
        self._path = home.run / "up.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or explain who holds it."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ComponentError(
                f"Slipway is already running on {self._path.parent.parent} (pid {holder})",
                hint="use `slipway status` to see it or `slipway down` to stop it",
            ) from e
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock; the file stays and is reused."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def is_held(self) -> bool:
        """Whether some process holds the lock now."""
        if not self._path.exists():
            return False
        with self._path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
