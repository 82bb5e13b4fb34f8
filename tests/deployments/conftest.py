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
from tests.conftest import API_AUTH_STRING, authenticated_url, free_port, missing_part

__all__ = ["free_port"]  # re-exported: the deployment tests take it from here

REPO = Path(__file__).resolve().parents[2]
SLIPWAY = [sys.executable, "-m", "deployments.cli"]


def slipway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for `slipway`: no Prefect or Slipway settings but the session's
    API auth string, which a worker host takes as its server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLIPWAY_"))}
    env["PYTHONPATH"] = str(REPO)
    env["PREFECT_API_AUTH_STRING"] = API_AUTH_STRING
    env.update(extra or {})
    return env


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has stopped, only its parent has not reaped it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


def open_to_others(home: Path) -> list[str]:
    """Every path under ``home`` (and itself) that grants its group or others anything.

    The data directory must be 0700 and its files 0600 (executables 0700, git's
    objects 0400): this lists whatever breaks that, with its mode.
    """
    found = [home, *home.rglob("*")]
    return [
        f"{p.relative_to(home)} {p.lstat().st_mode & 0o777:o}"
        for p in found
        if not p.is_symlink() and p.lstat().st_mode & 0o077
    ]


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
    checkout: Path = REPO
    """The Slipway checkout that runs `slipway`: this one, or an older release's."""
    preset_auth: bool = True
    """Give a new home the session's API auth string before the first start, as an operator
    may; False leaves it to `up` to generate one."""

    @property
    def auth_file(self) -> Path:
        return self.home / "keys" / "prefect-api-auth"

    @property
    def auth_string(self) -> str:
        """The home's API auth string, once it has one; the session's before."""
        if self.auth_file.exists():
            return self.auth_file.read_text().strip()
        return API_AUTH_STRING

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    @property
    def api(self) -> str:
        """The API URL with the home's auth string in it, for the tests' own httpx requests."""
        return authenticated_url(self.api_url, self.auth_string)

    def client_env(self) -> dict[str, str]:
        """The environment of a subprocess whose Prefect client talks to this `up`."""
        return dict(
            self.env, PREFECT_API_URL=self.api_url, PREFECT_API_AUTH_STRING=self.auth_string
        )

    def take_keys_of(self, server: Up) -> None:
        """Give this worker host's home its server's keys, as an operator copies them."""
        shutil.copytree(server.home / "keys", self.home / "keys", dirs_exist_ok=True)

    def python(self, script: str) -> str:
        """Run ``script`` as a client of this platform (as a flow would be); its stdout."""
        return subprocess.run(
            [sys.executable, "-c", script],
            env=self.client_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def argv(self) -> list[str]:
        flags = [x for name, port in self.ports.items() for x in (f"--{name}-port", str(port))]
        return [*SLIPWAY, "--home", str(self.home), "up", *flags, *self.args]

    def start(self, *, timeout: float = 120, registered: bool = True) -> float:
        """Start and wait for the ready line; returns the seconds it took.

        With ``registered``, also wait until `up` reports the deployments
        registered, which it does after the ready line.
        """
        began = time.monotonic()
        self.launch()
        self.wait_ready(timeout=timeout, registered=registered)
        return time.monotonic() - began

    def launch(self) -> None:
        """Start `up` without waiting, so several hosts can boot side by side."""
        self.output = []
        if self.preset_auth and not self.auth_file.exists():
            self.auth_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.auth_file.write_text(API_AUTH_STRING + "\n")
            self.auth_file.chmod(0o600)
        self.process = subprocess.Popen(
            self.argv(),
            cwd=self.checkout,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)

    def wait_ready(self, *, timeout: float = 120, registered: bool = True) -> None:
        """Wait for the line saying that every component is up (and, with ``registered``
        on a host that registers them, the deployments registered)."""
        assert self.process is not None
        # An older release's `up` waited for registration before its ready line.
        registers = self.checkout == REPO and "worker" not in self.args
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            text = "".join(self.output)
            assert "registration FAILED" not in text, text
            if "Slipway is up" in text and (
                not (registered and registers) or "deployments: registered" in text
            ):
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
            cwd=self.checkout,
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
        if (self.home / "run" / "up.json").exists():  # `up` died (a test's timeout killed it)
            self.cli("down")  # finds its forked children too, which keep no SLIPWAY_HOME
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
        _remove_released(up)


def _remove_released(up: Up) -> None:
    """Remove the containers this platform released: a service outlives `down`, a test's must not.

    They are told apart by their image's registry, whose port is this platform's alone.
    """
    import docker

    prefix = f"127.0.0.1:{up.ports['registry']}/"
    try:
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"label": "dev.slipway.image"}):
            if container.labels.get("dev.slipway.image", "").startswith(prefix):
                container.remove(force=True)
    except docker.errors.DockerException:  # no engine: nothing was released
        return


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
