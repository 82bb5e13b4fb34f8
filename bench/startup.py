"""How long `slipway up` takes to be healthy, against Prefect's own server start.

Baseline: a bare `prefect server start` on SQLite until /api/health answers,
measured in the same run on the same machine, on a new and an existing
database. Slipway's figure is the time until `up` prints that it is up: every
component answers. Deployments register after that, in the background; the
time until `up` reports them registered is printed beside it.

Targets (issue 25): on a new home at most 1.3x a bare Prefect server's start,
on an existing home (same ports, as a restart has) at most 1.5x.

``--trace`` prints each line `up` reports with the second it came, then the
timeline `up` wrote to ``<home>/logs/startup.log`` (when each step ended), so
where start-up goes can be read.

    python bench/startup.py [--runs 3] [--trace]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The other benches take free_port and clean_env from here, with this path set.
from testkit.platform import authenticated_url  # noqa: E402 - after the checkout
from testkit.platform import free_port as free_port  # noqa: E402
from testkit.up import clean_env as clean_env  # noqa: E402


def platform_api(home: Path, port: int) -> str:
    """The API of a running `slipway up` with its home's auth string as the URL's user info,
    so a plain httpx or aiohttp request authenticates (Prefect's API refuses any other)."""
    auth = (home / "keys" / "prefect-api-auth").read_text().strip()
    return authenticated_url(f"http://127.0.0.1:{port}/api", auth)


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


def slipway_up(home: Path, ports: list[str], *, trace: bool = False) -> tuple[float, float]:
    """Seconds until `up` is up, and until it reports the deployments registered."""
    argv = [sys.executable, "-m", "deployments.cli", "--home", str(home), "up", *ports]
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    ready = None
    try:
        for line in proc.stdout:
            if trace:
                print(f"    {time.monotonic() - began:6.2f}  {line.rstrip()}", flush=True)
            if "Slipway is up" in line:
                ready = time.monotonic() - began
            if "registration FAILED" in line:
                raise SystemExit(f"registering the deployments failed: {line.strip()}")
            if ready is not None and "deployments: registered" in line:
                if trace:
                    print((home / "logs" / "startup.log").read_text(), flush=True)
                return ready, time.monotonic() - began
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
    kinds = ("prefect new", "prefect existing", "slipway new", "slipway existing")
    rows: dict[str, list[float]] = {
        k: [] for k in (*kinds, "registered new", "registered existing")
    }
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            rows["prefect new"].append(bare_prefect(base / "p"))
            rows["prefect existing"].append(bare_prefect(base / "p"))
            # The same ports both times, as a restart of the same platform has.
            ports = [x for name in _COMPONENTS for x in (f"--{name}-port", str(free_port()))]
            for kind in ("new", "existing"):
                ready, registered = slipway_up(base / "s", ports, trace=args.trace)
                rows[f"slipway {kind}"].append(ready)
                rows[f"registered {kind}"].append(registered)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"startup, median of {args.runs} runs (seconds); the machine may be shared")
    for key, values in rows.items():
        print(f"  {key:<20} {med[key]:6.2f}   runs: {', '.join(f'{v:.2f}' for v in values)}")
    print("  (slipway: until `up` is up; registered: until it reports the deployments registered)")
    for kind, target in (("new", 1.3), ("existing", 1.5)):
        ratio = med[f"slipway {kind}"] / med[f"prefect {kind}"]
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(
            f"  {kind} home: slipway / bare prefect = {ratio:.2f}x; target <= {target}x: {verdict}"
        )


if __name__ == "__main__":
    main()
