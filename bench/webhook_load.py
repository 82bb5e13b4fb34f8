"""Load on the webhook bridge of a running `slipway up`, against Prefect alone.

Sends N signed GitHub pushes at concurrency C to the bridge and reports
requests per second, p50 and p99 latency, and how many events Prefect stored
against unique deliveries sent (every push must arrive exactly once). Every
10th push is a redelivery of an earlier one, which must not add an event.

Baseline, in the same run: the same events POSTed straight to Prefect's
``/api/events`` at the same concurrency: the ratio is the bridge's overhead.

Targets (2 cores): >= 200 pushes/s, p99 < 100 ms, none lost.

    python bench/webhook_load.py [-n 3000] [-c 16]
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
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.bridge import push_event
from deployments.webhooks import Provider, event_id, parse_push

REPO = Path(__file__).resolve().parents[1]
SERVICE = "bench"


def start_up(home: Path) -> tuple[subprocess.Popen[str], dict[str, int], dict[str, str]]:
    from startup import clean_env, free_port  # bench/startup.py

    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    flags = [x for name, port in ports.items() for x in (f"--{name}-port", str(port))]
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "--home", str(home), "up", *flags],
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


def body_for(sha: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 39 + "1",
            "after": sha,
            "repository": {"name": SERVICE},
            "pusher": {"name": "bench"},
            "commits": [{"added": [], "modified": ["app/x.py"], "removed": []}],
        }
    ).encode()


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("-c", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        proc, ports, env = start_up(home)
        try:
            api = f"http://127.0.0.1:{ports['prefect']}/api"
            subprocess.run(
                ["git", "init", "--quiet", "--bare", str(home / "git" / f"{SERVICE}.git")],
                check=True,
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
            pushes, unique = [], set()
            for i in range(args.n):
                delivery = str(uuid.uuid4()) if i % 10 or i == 0 else pushes[i - 1][3]
                sha = hashlib.sha1(delivery.encode()).hexdigest()
                body = body_for(sha)
                sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers = {
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": f"sha256={sig}",
                }
                pushes.append((bridge, body, headers, delivery))
                unique.add(str(event_id(Provider.GITHUB, delivery)))

            direct = []
            for _, body, _, delivery in pushes:
                event = push_event(
                    Provider.GITHUB,
                    "direct-" + delivery,
                    parse_push(Provider.GITHUB, body),
                    default_branch="main",
                )
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
            stored = stored_events(api, unique, time.monotonic() + 120)
            print(
                f"  events stored for unique deliveries: {stored}/{len(unique)} (lost {len(unique) - stored}, duplicates 0 by id)"
            )
            print(f"  bridge / direct throughput: {rps / base:.2f}x")
            q99 = statistics.quantiles(lat, n=100)[98] * 1000
            print(
                f"  targets: >= 200 req/s {'ok' if rps >= 200 else 'MISSED'}; p99 < 100 ms {'ok' if q99 < 100 else 'MISSED'}; none lost {'ok' if stored == len(unique) else 'MISSED'}"
            )
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
