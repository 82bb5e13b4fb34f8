"""A real `slipway up` in a subprocess, on free loopback ports, for a bench to be a client of.

The deployment tests have their own, richer handle (``tests/deployments/conftest.py``,
with restarts, kills and worker hosts); a bench only needs to start one
platform, act as its client, and take it down again whatever happened.
"""

from __future__ import annotations

import os
import subprocess  # nosec B404 - `slipway up` and `slipway down`, as a user runs them
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from slipway.home import Ports, SlipwayHome
from testkit.platform import authenticated_url, free_port

__all__ = ["RunningUp", "clean_env", "running_up"]

REPO = Path(__file__).resolve().parents[1]
_CLI = (sys.executable, "-m", "deployments.cli")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without Prefect's or Slipway's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLIPWAY_"))}
    env["PYTHONPATH"] = str(REPO)
    return env | (extra or {})


@dataclass(frozen=True)
class RunningUp:
    """A `slipway up` that printed that it is up."""

    home: SlipwayHome
    ports: Ports
    env: dict[str, str]
    """The environment `up` was started with."""
    log: Path
    """Everything `up` printed."""

    @property
    def auth_string(self) -> str:
        """The API's ``user:password``, which `up` made for the new home."""
        return (self.home.keys / "prefect-api-auth").read_text().strip()

    @property
    def api(self) -> str:
        """The API URL with the auth string as user info, so plain httpx requests authenticate."""
        return authenticated_url(self.ports.prefect_api_url, self.auth_string)

    def client_env(self) -> dict[str, str]:
        """What a process needs to act as a client of this platform, as a flow run does."""
        return {
            "PREFECT_API_URL": self.ports.prefect_api_url,
            "PREFECT_API_AUTH_STRING": self.auth_string,
            "SLIPWAY_HOME": str(self.home.root),
            **{f"SLIPWAY_{name.upper()}_PORT": str(p) for name, p in self.ports.as_dict().items()},
        }


@contextmanager
def running_up(
    root: Path, *, extra_env: dict[str, str] | None = None, timeout: float = 300
) -> Iterator[RunningUp]:
    """`slipway up` on a new home under ``root``, every component on a free port; down on exit.

    Raises:
        SystemExit: `up` exited, or did not say it is up within ``timeout`` seconds;
            the message carries the end of its output.
    """
    home = SlipwayHome(root / "home")
    ports = Ports(**{name: free_port() for name in Ports().as_dict()})
    flags = [x for name, port in ports.as_dict().items() for x in (f"--{name}-port", str(port))]
    env = clean_env(extra_env)
    log = root / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*_CLI, "--home", str(home.root), "up", *flags],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while "Slipway is up" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"slipway up did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield RunningUp(home, ports, env, log)
    finally:
        subprocess.run(
            [*_CLI, "--home", str(home.root), "down"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
