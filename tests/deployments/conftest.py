"""A real `slipway up` as a subprocess on free loopback ports, in a temporary home."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from slipway.home import Ports
from tests.conftest import free_port, missing_part

__all__ = ["free_port"]  # re-exported: the deployment tests take it from here

REPO = Path(__file__).resolve().parents[2]
SLIPWAY = [sys.executable, "-m", "deployments.cli"]


def slipway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLIPWAY_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def processes_of_home(home: Path) -> list[int]:
    """Live processes whose environment names this home: everything `up` started."""
    needle = f"SLIPWAY_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@dataclass
class Up:
    """One `slipway up` child process and what it printed."""

    home: Path
    ports: dict[str, int]
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    """Further `up` flags, e.g. ``--role worker --server URL``."""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    def argv(self) -> list[str]:
        flags = [x for name, port in self.ports.items() for x in (f"--{name}-port", str(port))]
        return [*SLIPWAY, "--home", str(self.home), "up", *flags, *self.args]

    def start(self, *, timeout: float = 120) -> float:
        """Start and wait for the ready line; returns the seconds it took."""
        began = time.monotonic()
        self.launch()
        self.wait_ready(timeout=timeout)
        return time.monotonic() - began

    def launch(self) -> None:
        """Start `up` without waiting, so several hosts can boot side by side."""
        self.output = []
        self.process = subprocess.Popen(
            self.argv(),
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)

    def wait_ready(self, *, timeout: float = 120) -> None:
        """Wait for the line saying that every component is up."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            if any("Slipway is up" in line for line in self.output):
                return
            if self.process.poll() is not None:
                self._drain()
                raise AssertionError("slipway up exited early:\n" + "".join(self.output))
            time.sleep(0.1)
        raise AssertionError("slipway up not ready in time:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := self.process.stdout.readline():
            self.output.append(chunk)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SLIPWAY, "--home", str(self.home), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def down(self) -> None:
        result = self.cli("down")
        assert result.returncode == 0, result.stderr
        assert self.process is not None
        assert self.process.wait(timeout=60) == 0
        self._drain()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid in processes_of_home(self.home):
            os.kill(pid, signal.SIGKILL)


def free_ports() -> dict[str, int]:
    """A free loopback port for every component `slipway up` starts.

    A component left on its default port would collide with anything else on
    the machine that holds it (another test's stack, a developer's platform).
    """
    return {name: free_port() for name in Ports().as_dict()}


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    started: list[Up] = []

    def make(
        home: Path | None = None,
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> Up:
        ports = free_ports()
        up = Up(home or tmp_path / "home", ports, slipway_env(extra_env), args=list(args or []))
        started.append(up)
        return up

    yield make
    for up in started:
        up.kill()


def api_post(up: Up, path: str, body: dict[str, object]) -> httpx.Response:
    """POST to Prefect, retrying 429 and 503 as Prefect's own client does.

    A busy SQLite database makes the server answer 503 with a retry hint.
    """
    for attempt in range(6):
        response = httpx.post(f"{up.api}{path}", json=body, timeout=10)
        if response.status_code not in (429, 503):
            break
        time.sleep(0.5 * 2**attempt)
    response.raise_for_status()
    return response


PG_BIN = Path(os.environ.get("SLIPWAY_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://slipway:{self.password}@127.0.0.1:{self.port}/slipway"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (scripts/postgres.sh), for the session.

    Missing PostgreSQL skips, except under ``CI=true``, where it fails.
    """
    if not (PG_BIN / "postgres").exists():
        missing_part(f"PostgreSQL 15 is not installed in {PG_BIN}", fix="run `make setup` as root")
    # Not pytest's tmp_path: as root the cluster runs as `postgres`, which must reach it.
    directory = Path(tempfile.mkdtemp(prefix="slipway-pg-"))
    cluster = Postgres(free_port(), secrets.token_urlsafe(18))
    script = str(REPO / "scripts" / "postgres.sh")
    env = dict(os.environ, SLIPWAY_PG_PASSWORD=cluster.password, SLIPWAY_PG_FAST="1")
    subprocess.run(
        ["bash", script, "start", str(directory), str(cluster.port)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield cluster
    finally:
        subprocess.run(["bash", script, "stop", str(directory)], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)
