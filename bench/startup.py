"""How long `slipway up` takes to be healthy, against Prefect's own server start.

Baseline: a bare `prefect server start` on SQLite until /api/health answers,
measured in the same run on the same machine, on a new and an existing
database. Slipway's figure is the time until `up` prints that every component
is healthy and every deployment of prefect.yaml is registered.

Targets (2 cores): existing home <= 15 s, new home <= 25 s (issue 25: at
most 1.5x and 1.3x a bare Prefect server's start).

``--trace`` prints each line `up` reports with the second it came, so the
time between two steps shows where start-up goes.

    python bench/startup.py [--runs 3] [--trace]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without Prefect's or Slipway's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SLIPWAY_"))}
    env["PYTHONPATH"] = str(REPO)
    return env | (extra or {})


def platform_api(home: Path, port: int) -> str:
    """The API of a running `slipway up` with its home's auth string as the URL's user info,
    so a plain httpx or aiohttp request authenticates (Prefect's API refuses any other)."""
    user, _, password = (home / "keys" / "prefect-api-auth").read_text().strip().partition(":")
    return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/api"


def bare_prefect(home: Path) -> float:
    port = free_port()
    env = clean_env() | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    argv = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).is_success:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("prefect server exited during the baseline")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


_COMPONENTS = (
    *("prefect", "docs", "registry", "bridge"),
    *("prometheus", "alertmanager", "blackbox", "monitor"),
)
"""Every port `slipway up` takes (`slipway.home.Ports`): free ones, as tests may hold the defaults."""


def slipway_up(home: Path, *, trace: bool = False) -> float:
    ports = [x for name in _COMPONENTS for x in (f"--{name}-port", str(free_port()))]
    argv = [sys.executable, "-m", "deployments.cli", "--home", str(home), "up", *ports]
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if trace:
                print(f"    {time.monotonic() - began:6.2f}  {line.rstrip()}", flush=True)
            if "Slipway is up" in line:
                return time.monotonic() - began
        raise SystemExit(f"slipway up exited with {proc.wait()}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "deployments.cli", "--home", str(home), "down"],
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            timeout=120,
        )
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="print up's lines with their times")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {
        k: [] for k in ("prefect new", "prefect existing", "slipway new", "slipway existing")
    }
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            rows["prefect new"].append(bare_prefect(base / "p"))
            rows["prefect existing"].append(bare_prefect(base / "p"))
            rows["slipway new"].append(slipway_up(base / "s", trace=args.trace))
            rows["slipway existing"].append(slipway_up(base / "s", trace=args.trace))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"startup to healthy, median of {args.runs} runs (seconds)")
    for key, values in rows.items():
        print(f"  {key:<18} {med[key]:6.2f}   runs: {', '.join(f'{v:.2f}' for v in values)}")
    for kind, target in (("new", 25.0), ("existing", 15.0)):
        ratio = med[f"slipway {kind}"] / med[f"prefect {kind}"]
        verdict = "ok" if med[f"slipway {kind}"] <= target else "OVER TARGET"
        print(
            f"  {kind} home: slipway / bare prefect = {ratio:.2f}x; target <= {target:.0f} s: {verdict}"
        )


if __name__ == "__main__":
    main()
