"""Load on the webhook bridge of a running `slipway up`, against Prefect alone.

Phase 1, load: sends N signed GitHub pushes at concurrency C to the bridge and
reports requests per second, p50 and p99 latency, events stored against
unique deliveries (every push must arrive exactly once; every 10th push is a
redelivery of an earlier one, which must add nothing), and flow runs that the
deployment trigger created against unique deliveries.

Phase 2, push to run: pushes one at a time and measures the time from the
push being sent to its flow run being Running in the runner.

The platform runs with a project of the bench's own: one no-op flow per
phase, each with the same kind of `slipway.git.push` trigger that
build-test-deploy has, so the bench measures the bridge, Prefect's events and
triggers, and the runner, not a build.

Baseline, in the same run: the same events POSTed straight to Prefect's
``/api/events`` at the same concurrency; the ratio is the bridge's overhead.

Targets (2 cores): >= 200 pushes/s for 30 s, p99 < 100 ms, none lost;
push to running flow <= 2 s at p50.

    python bench/webhook_load.py [-n 6000] [-c 16] [--latency-pushes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.bridge import push_event
from deployments.webhooks import Provider, event_id, parse_push

REPO = Path(__file__).resolve().parents[1]
SERVICE = "bench"
LATENCY_SERVICE = "bench-latency"

BENCH_FLOW = """
from prefect import flow


@flow(name="bench-noop")
def noop(sha: str) -> str:
    return sha
"""

BENCH_PROJECT = """
name: slipway-bench
prefect-version: 3.8.8
deployments:
  - name: load
    entrypoint: bench_flow.py:noop
    concurrency_limit: 1
    triggers:
      - type: event
        enabled: true
        expect: [slipway.git.push]
        match:
          prefect.resource.id: slipway.service.bench
          slipway.git.default-branch: "true"
        parameters:
          sha: "{{ event.payload.after }}"
  - name: latency
    entrypoint: bench_flow.py:noop
    triggers:
      - type: event
        enabled: true
        expect: [slipway.git.push]
        match:
          prefect.resource.id: slipway.service.bench-latency
        parameters:
          sha: "{{ event.payload.after }}"
"""


def start_up(
    home: Path, project: Path
) -> tuple[subprocess.Popen[str], dict[str, int], dict[str, str]]:
    from startup import clean_env, free_port  # bench/startup.py

    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    flags = [x for name, port in ports.items() for x in (f"--{name}-port", str(port))]
    env = clean_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployments.cli",
            "--home",
            str(home),
            "up",
            "--project",
            str(project),
            *flags,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Slipway is up" in line:
            return proc, ports, env
    raise SystemExit("slipway up did not start")


def body_for(sha: str, service: str = SERVICE) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 39 + "1",
            "after": sha,
            "repository": {"name": service},
            "pusher": {"name": "bench"},
            "commits": [{"added": [], "modified": ["app/x.py"], "removed": []}],
        }
    ).encode()


def signed(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={sig}",
    }


async def blast(
    requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    ok = 0
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok
        while not queue.empty():
            url, body, headers = queue.get_nowait()
            began = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - began)
            ok += response.is_success

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return elapsed, latencies, ok


def stored_events(api: str, ids: set[str], deadline: float) -> int:
    found: set[str] = set()
    wanted = sorted(ids)
    while time.monotonic() < deadline and len(found) < len(ids):
        for i in range(0, len(wanted), 200):
            chunk = wanted[i : i + 200]
            body = {
                "filter": {"id": {"id": chunk}, "occurred": {"since": "2020-01-01T00:00:00Z"}},
                "limit": 200,
            }
            events = httpx.post(f"{api}/events/filter", json=body, timeout=30).json()["events"]
            found.update(e["id"] for e in events)
        time.sleep(0.5)
    return len(found)


def report(name: str, n: int, elapsed: float, latencies: list[float], ok: int) -> float:
    q = statistics.quantiles(latencies, n=100)
    rps = n / elapsed
    print(
        f"  {name:<22} {rps:8.1f} req/s   p50 {q[49] * 1000:6.1f} ms   p99 {q[98] * 1000:6.1f} ms   2xx {ok}/{n}"
    )
    return rps


def deployment_id(api: str, name: str) -> str:
    response = httpx.get(f"{api}/deployments/name/bench-noop/{name}", timeout=30)
    response.raise_for_status()
    return str(response.json()["id"])


def created_runs(api: str, deployment: str, expected: int, deadline: float) -> int:
    """Flow runs the trigger created, polled until all are there or time is up."""
    body = {"flow_runs": {"deployment_id": {"any_": [deployment]}}}
    count = 0
    while time.monotonic() < deadline:
        count = int(httpx.post(f"{api}/flow_runs/count", json=body, timeout=30).json())
        if count >= expected:
            break
        time.sleep(1)
    return count


def push_to_running(
    api: str, bridge: str, secret: str, deployment: str, pushes: int
) -> list[float]:
    """Seconds from sending each push to its flow run's start, one push at a time."""
    delays: list[float] = []
    for _ in range(pushes):
        sha = uuid.uuid4().hex + "00000000"
        body = body_for(sha, LATENCY_SERVICE)
        sent = time.time()
        response = httpx.post(
            bridge, content=body, headers=signed(secret, body, str(uuid.uuid4())), timeout=30
        )
        response.raise_for_status()
        query = {
            "flow_runs": {"deployment_id": {"any_": [deployment]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 50,
        }
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = httpx.post(f"{api}/flow_runs/filter", json=query, timeout=30).json()
            mine = [r for r in runs if r["parameters"].get("sha") == sha and r["start_time"]]
            if mine:
                delays.append(datetime.fromisoformat(mine[0]["start_time"]).timestamp() - sent)
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"push {sha[:12]} did not start a run within 60 s")
        time.sleep(0.5)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=6000, help="pushes in the load phase")
    parser.add_argument("-c", type=int, default=16, help="concurrent senders")
    parser.add_argument("--latency-pushes", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "prefect.yaml").write_text(BENCH_PROJECT)
        (project / "bench_flow.py").write_text(BENCH_FLOW)
        proc, ports, env = start_up(home, project)
        try:
            api = f"http://127.0.0.1:{ports['prefect']}/api"
            from blocks import GitServer
            from tasks.catalog import Catalog, CatalogEntry

            catalog = Catalog(GitServer(provider="local", root=home / "git"))
            for name in (SERVICE, LATENCY_SERVICE):
                catalog.save(
                    CatalogEntry(name=name, owner="group:bench", port=8100, repository=name),
                    message=f"Onboard {name}",
                )
            secret = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from blocks.webhook import load_webhook_secret as s; print(s().get_secret_value())",
                ],
                env=dict(env, PREFECT_API_URL=api),
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()

            bridge = f"http://127.0.0.1:{ports['bridge']}/hooks/github"
            pushes: list[tuple[str, bytes, dict[str, str], str]] = []
            unique: set[str] = set()
            for i in range(args.n):
                delivery = str(uuid.uuid4()) if i % 10 or i == 0 else pushes[i - 1][3]
                sha = hashlib.sha1(delivery.encode()).hexdigest()
                body = body_for(sha)
                pushes.append((bridge, body, signed(secret, body, delivery), delivery))
                unique.add(str(event_id(Provider.GITHUB, delivery)))

            direct = []
            for _, body, _, delivery in pushes:
                push = parse_push(Provider.GITHUB, body)
                event = push_event(
                    Provider.GITHUB, "direct-" + delivery, push, default_branch="main"
                )
                event["resource"]["prefect.resource.id"] = "slipway.service.bench-direct"
                direct.append(
                    (
                        f"{api}/events",
                        json.dumps([event]).encode(),
                        {"Content-Type": "application/json"},
                    )
                )

            print(f"{args.n} pushes at concurrency {args.c}; {len(unique)} unique deliveries")
            b_elapsed, b_lat, b_ok = asyncio.run(blast(direct, args.c))
            base = report("Prefect /api/events", args.n, b_elapsed, b_lat, b_ok)
            elapsed, lat, ok = asyncio.run(blast([p[:3] for p in pushes], args.c))
            rps = report("bridge /hooks/github", args.n, elapsed, lat, ok)
            print(f"  load phase lasted {elapsed:.1f} s")
            stored = stored_events(api, unique, time.monotonic() + 180)
            print(
                f"  events stored for unique deliveries: {stored}/{len(unique)} (lost {len(unique) - stored})"
            )
            runs = created_runs(
                api, deployment_id(api, "load"), len(unique), time.monotonic() + 300
            )
            print(f"  flow runs created by the trigger: {runs}/{len(unique)} unique deliveries")
            print(f"  bridge / direct throughput: {rps / base:.2f}x")

            delays = push_to_running(
                api, bridge, secret, deployment_id(api, "latency"), args.latency_pushes
            )
            p50 = statistics.median(delays)
            print(
                f"  push to running flow ({len(delays)} pushes, one at a time): "
                f"p50 {p50:.2f} s, max {max(delays):.2f} s"
            )
            q99 = statistics.quantiles(lat, n=100)[98] * 1000
            verdicts = [
                f">= 200 req/s {'ok' if rps >= 200 else 'MISSED'}",
                f"p99 < 100 ms {'ok' if q99 < 100 else 'MISSED'}",
                f"none lost {'ok' if stored == len(unique) and runs == len(unique) else 'MISSED'}",
                f"push to run p50 <= 2 s {'ok' if p50 <= 2 else 'MISSED'}",
            ]
            print("  targets: " + "; ".join(verdicts))
        finally:
            subprocess.run(
                [sys.executable, "-m", "deployments.cli", "--home", str(home), "down"],
                cwd=REPO,
                env=env,
                capture_output=True,
                timeout=120,
            )
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
