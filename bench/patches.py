"""What each patch in slipway/prefect_patches still buys on the installed Prefect.

Each figure is measured twice in the same run, on the same machine: with the
patch (Slipway's way) and without it (Prefect's own behaviour, the baseline).

* **heartbeats**: wall time of a flow with one task, called in a process
  whose flow runs send heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30``, as
  a pool worker's runs do), against a Prefect server of the bench's own.
* **server-app**: one ``create_app()`` call with no arguments inside a
  settings context, as the server's own clients make it, after the first.
* **sqlite-writes**: a burst of ``create_flow_run`` requests from one
  deployment (``--burst`` of them, ``--concurrency`` at a time, raw HTTP without
  Prefect's client retries) against a server on SQLite: how many the server
  refused (503) and how long the burst took.
* **forkserver**: from creating a run of ``platform-check`` to the run being
  Running and Completed, under a `slipway up` whose runner starts runs from a
  forkserver (default) or with Prefect's ``spawn`` (``SLIPWAY_RUN_START=spawn``).

    python bench/patches.py [--runs 8] [--burst 60] [--concurrency 12] [--skip forkserver]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import startup  # bench/, first on sys.path when this file runs
from startup import free_port

REPO = Path(__file__).resolve().parents[1]
PATCHES = ("heartbeats", "server-app", "sqlite-writes", "forkserver")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """startup.py's clean environment, with Prefect's analytics off."""
    offline = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    return startup.clean_env(offline | (extra or {}))


@contextmanager
def prefect_server(home: Path, *, patched: bool) -> Iterator[str]:
    """Prefect's server on SQLite: Prefect's own start, or with `apply_server_patches` only."""
    port = free_port()
    start = (
        "from slipway.prefect_patches import sqlite_writes; sqlite_writes.apply(); "
        if patched
        else ""
    ) + "from prefect.cli import app; app()"
    argv = [sys.executable, "-c", start, "server", "start", "--host", "127.0.0.1"]
    env = clean_env({"PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port)})
    proc = subprocess.Popen(
        [*argv, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        while not _ok(f"{api}/health"):
            if proc.poll() is not None:
                raise SystemExit("the Prefect server exited during start-up")
            time.sleep(0.1)
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).is_success
    except httpx.HTTPError:
        return False


def _python(code: str, env: dict[str, str]) -> list[float]:
    """Run ``code`` in a new interpreter; it prints a JSON list of seconds."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-3000:]}")
    return [float(x) for x in json.loads(done.stdout.strip().splitlines()[-1])]


HEARTBEAT_PROBE = """
import json, time
from prefect import flow, task
if {patched}:
    from slipway.prefect_patches import heartbeats
    assert heartbeats.apply()
@task
def one() -> int:
    return 1
@flow
def empty() -> int:
    return one()
empty()  # warm-up: imports, the flow's registration
times = []
for _ in range({runs}):
    began = time.perf_counter(); empty(); times.append(time.perf_counter() - began)
print(json.dumps(times))
"""


def bench_heartbeats(api: str, runs: int) -> dict[str, list[float]]:
    env = clean_env({"PREFECT_API_URL": api, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"})
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    return {
        label: _python(HEARTBEAT_PROBE.format(patched=patched, runs=runs), env)
        for label, patched in (("prefect", False), ("patched", True))
    }


SERVER_APP_PROBE = """
import json, time
from prefect.settings import temporary_settings
from prefect.server.api import server
if {patched}:
    from slipway.prefect_patches import server_app
    assert server_app.apply()
with temporary_settings():
    server.create_app()  # the first builds the app; the server's clients come after
    times = []
    for _ in range({runs}):
        began = time.perf_counter(); server.create_app(); times.append(time.perf_counter() - began)
print(json.dumps(times))
"""


def bench_server_app(home: Path, runs: int) -> dict[str, list[float]]:
    env = clean_env({"PREFECT_HOME": str(home)})
    return {
        label: _python(SERVER_APP_PROBE.format(patched=patched, runs=runs * 3), env)
        for label, patched in (("prefect", False), ("patched", True))
    }


async def _burst(
    api: str, deployment: str, count: int, concurrency: int
) -> tuple[Counter[str], float]:
    """Every answer's status (or the error instead of one), and the burst's seconds."""
    gate = asyncio.Semaphore(concurrency)
    answers: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def create() -> None:
            async with gate:
                try:
                    response = await client.post(
                        f"{api}/deployments/{deployment}/create_flow_run", json={}
                    )
                    answers[str(response.status_code)] += 1
                except httpx.HTTPError as e:
                    answers[type(e).__name__] += 1

        began = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(count)))
        return answers, time.perf_counter() - began


def bench_sqlite_writes(
    root: Path, burst: int, concurrency: int
) -> dict[str, tuple[Counter[str], float]]:
    results = {}
    for label, patched in (("prefect", False), ("patched", True)):
        with prefect_server(root / f"sqlite-{label}", patched=patched) as api:
            flow = httpx.post(f"{api}/flows/", json={"name": "burst"}, timeout=30).json()
            deployment = httpx.post(
                f"{api}/deployments/",
                json={"name": "burst", "flow_id": flow["id"], "paused": True},
                timeout=30,
            ).json()
            results[label] = asyncio.run(_burst(api, deployment["id"], burst, concurrency))
    return results


def bench_forkserver(root: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    results = {}
    for label, start in (("prefect", "spawn"), ("patched", "forkserver")):
        home = root / f"up-{label}"
        ports = {n: free_port() for n in ("prefect", "docs", "registry", "bridge")}
        flags = [x for n, p in ports.items() for x in (f"--{n}-port", str(p))]
        slipway = [sys.executable, "-m", "deployments.cli", "--home", str(home)]
        env = clean_env({"SLIPWAY_RUN_START": start})
        proc = subprocess.Popen(
            [*slipway, "up", *flags],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        try:
            if not any("Slipway is up" in line for line in proc.stdout):
                raise SystemExit(f"slipway up exited with {proc.wait()}")
            results[label] = _served_runs(f"http://127.0.0.1:{ports['prefect']}/api", runs)
        finally:
            subprocess.run([*slipway, "down"], cwd=REPO, env=env, capture_output=True, timeout=120)
            proc.wait(timeout=60)
    return results


def _served_runs(api: str, runs: int) -> dict[str, list[float]]:
    """Seconds from creating a platform-check run to Running, and to Completed."""
    found = httpx.post(
        f"{api}/deployments/filter",
        json={"deployments": {"name": {"any_": ["platform-check"]}}},
        timeout=30,
    ).json()
    deployment = found[0]["id"]
    to_running, to_done = [], []
    for i in range(runs + 1):  # the first warms the runner (and the forkserver) up
        began = time.monotonic()
        run = httpx.post(
            f"{api}/deployments/{deployment}/create_flow_run",
            json={"parameters": {"include_optional": False}},
            timeout=30,
        ).json()
        running = None
        while True:
            state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()["state"]
            if running is None and state["type"] in ("RUNNING", "COMPLETED", "FAILED"):
                running = time.monotonic() - began
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(0.02)
        if i:
            to_running.append(running or 0.0)
            to_done.append(time.monotonic() - began)
    return {"to running": to_running, "to completed": to_done}


def _row(name: str, prefect: list[float], patched: list[float], unit: str = "s") -> None:
    a, b = statistics.median(prefect), statistics.median(patched)
    scale = 1000 if unit == "ms" else 1
    print(
        f"  {name:<34} prefect {a * scale:8.3f} {unit}   patched {b * scale:8.3f} {unit}   "
        f"patched/prefect = {b / a if a else float('nan'):.2f}x   saves {(a - b) * scale:.3f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--skip", action="append", default=[], choices=PATCHES)
    args = parser.parse_args()
    import prefect

    print(f"Prefect {prefect.__version__}; medians, the baseline (Prefect alone) measured alike")
    with tempfile.TemporaryDirectory(prefix="slipway-bench-patches-") as tmp:
        root = Path(tmp)
        if "heartbeats" not in args.skip:
            with prefect_server(root / "heartbeats", patched=False) as api:
                beats = bench_heartbeats(api, args.runs)
            print("heartbeats (a flow with one task, heartbeat every 30 s):")
            _row("flow call", beats["prefect"], beats["patched"])
        if "server-app" not in args.skip:
            app = bench_server_app(root / "app", args.runs)
            print("server-app (create_app() as the server's own clients call it):")
            _row("one call", app["prefect"], app["patched"], "ms")
        if "sqlite-writes" not in args.skip:
            writes = bench_sqlite_writes(root, args.burst, args.concurrency)
            print(
                f"sqlite-writes ({args.burst} create_flow_run, {args.concurrency} at a time, "
                "no client retries):"
            )
            for label, (answers, seconds) in writes.items():
                created = answers.get("201", 0) + answers.get("200", 0)
                shown = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
                print(
                    f"  {label:<8} created {created:3d} of {args.burst} in {seconds:.2f} s  "
                    f"(answers {shown})"
                )
        if "forkserver" not in args.skip:
            fork = bench_forkserver(root, args.runs)
            print("forkserver (a served platform-check run under slipway up; spawn is Prefect's):")
            for key in ("to running", "to completed"):
                _row(f"create -> {key}", fork["prefect"][key], fork["patched"][key])


if __name__ == "__main__":
    main()
