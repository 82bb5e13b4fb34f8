"""Load on the webhook bridge of a running `slipway up`, against Prefect alone.

Phase 1, push to run, on the idle platform: pushes one at a time and
measures the time from the push being sent to its flow run being Running in
the runner. The platform runs with a project of the bench's own: a no-op flow
with the same kind of `slipway.git.push` trigger that build-test-deploy has,
so this measures the bridge, Prefect's events and triggers, and the runner,
not a build.

Phase 2, load: offers signed GitHub pushes to the bridge at a fixed rate
(open loop) for a fixed time and reports requests per second, p50 and p99
latency, events stored against
unique deliveries (every push must arrive exactly once; every 10th push is a
redelivery of an earlier one, which must add nothing), and flow runs that a
`slipway.git.push` trigger created against unique deliveries, with the rate at
which Prefect's actions service created them. That deployment is registered
but not served, so its runs are created and wait: the figure is the event and
trigger path, not thousands of no-op runs competing for the two cores. After
the load it waits (``--drain-wait``, 600 s) until every push is stored and has
its run, or neither count moved for a minute, and says when the last push was
stored.

Baseline, in the same run: the same events POSTed straight to Prefect's
``/api/events`` at the same rate, one request per event; the ratio of p99s
is what the bridge costs (or saves) over Prefect alone.

Targets (2 cores): >= 200 pushes/s for 30 s, p99 < 100 ms, none lost;
push to running flow <= 2 s at p50.

    python bench/webhook_load.py [--rate 205] [--seconds 30] [--latency-pushes 20] [--drain-wait 600] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import hmac
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.bridge import push_event
from deployments.webhooks import Provider, event_id, parse_push

REPO = Path(__file__).resolve().parents[1]
SERVICE = "bench"
LATENCY_SERVICE = "bench-latency"
EVENTS_PAGE = 50
"""The most events Prefect's ``/api/events/filter`` returns at once."""

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
    home: Path, project: Path, *, database: str | None = None
) -> tuple[subprocess.Popen[str], dict[str, int], dict[str, str]]:
    from startup import clean_env, free_port  # bench/startup.py

    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    flags = [x for name, port in ports.items() for x in (f"--{name}-port", str(port))]
    env = clean_env({"SLIPWAY_DATABASE_URL": database} if database else None)
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


def register_load_deployment(api: str) -> str:
    """A deployment nobody serves, and the trigger that creates its runs on pushes to `SERVICE`."""
    flow = httpx.post(f"{api}/flows/", json={"name": "bench-noop"}, timeout=30)
    flow.raise_for_status()
    deployment = httpx.post(
        f"{api}/deployments/",
        json={"name": "load", "flow_id": flow.json()["id"], "entrypoint": "bench_flow.py:noop"},
        timeout=30,
    )
    deployment.raise_for_status()
    deployment_id = str(deployment.json()["id"])
    automation = httpx.post(
        f"{api}/automations/",
        json={
            "name": "bench-load",
            "trigger": {
                "type": "event",
                "posture": "Reactive",
                "expect": ["slipway.git.push"],
                "match": {
                    "prefect.resource.id": f"slipway.service.{SERVICE}",
                    "slipway.git.default-branch": "true",
                },
                "threshold": 1,
                "within": 0,
            },
            "actions": [
                {
                    "type": "run-deployment",
                    "source": "selected",
                    "deployment_id": deployment_id,
                    "parameters": {"sha": "{{ event.payload.after }}"},
                }
            ],
        },
        timeout=30,
    )
    automation.raise_for_status()
    return deployment_id


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
    requests: list[tuple[str, bytes, dict[str, str]]], rate: float
) -> tuple[float, list[float], int]:
    """POST the requests open-loop at ``rate`` per second; elapsed seconds, latencies, 2xx count.

    Each request is sent at its scheduled time whether or not earlier ones
    were answered, and its latency counts from that time, so a stall shows in
    the figures instead of slowing the sender down (no coordinated omission).
    The sender is aiohttp, the lightest client at hand: on two cores every
    CPU-second the sender spends is one the bridge and Prefect do not get,
    and real senders (GitHub, GitLab) run on other machines. For the same
    reason its garbage collector is off while it sends: its own pauses (up
    to 0.25 s measured) would count as the bridge's latency.
    """
    gc.collect()
    gc.disable()
    try:
        return await _blast(requests, rate)
    finally:
        gc.enable()


async def _blast(
    requests: list[tuple[str, bytes, dict[str, str]]], rate: float
) -> tuple[float, list[float], int]:
    import aiohttp

    latencies: list[float] = []
    ok = 0

    async def send(
        session: aiohttp.ClientSession, due: float, request: tuple[str, bytes, dict[str, str]]
    ) -> None:
        nonlocal ok
        url, body, headers = request
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            ok += 200 <= response.status < 300
        latencies.append(time.perf_counter() - due)

    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        sending = []
        for i, request in enumerate(requests):
            due = began + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sending.append(asyncio.create_task(send(session, due, request)))
        await asyncio.gather(*sending)
        elapsed = time.perf_counter() - began
    return elapsed, latencies, ok


def stored_events(api: str, ids: set[str]) -> int:
    """How many of ``ids`` Prefect has stored, looked up by id (exact, one request per page)."""
    found: set[str] = set()
    wanted = sorted(ids)
    for i in range(0, len(wanted), EVENTS_PAGE):
        body = {
            "filter": {
                "id": {"id": wanted[i : i + EVENTS_PAGE]},
                "occurred": {"since": "2020-01-01T00:00:00Z"},
            },
            "limit": EVENTS_PAGE,
        }
        response = httpx.post(f"{api}/events/filter", json=body, timeout=30)
        response.raise_for_status()
        found.update(e["id"] for e in response.json()["events"])
    return len(found)


@dataclass(frozen=True)
class Drain:
    """What Prefect had done with the load's pushes when the bench stopped waiting."""

    stored: int
    stored_after: float | None
    """Seconds from the end of the load until every push was stored; None if not all were."""
    runs: int
    waited: float
    """Seconds from the end of the load until the last count."""


def drain(
    api: str, deployment: str, expected: int, since: datetime, cap: float, stall: float = 60
) -> Drain:
    """Counts, every 2 s, the pushes stored and the runs the trigger created, until all are
    there, neither count moved for ``stall`` seconds, or ``cap`` seconds passed.

    One count request each per poll: polling by id would load the server it measures.
    """
    stored_filter = {
        "filter": {
            "event": {"name": ["slipway.git.push"]},
            "resource": {"id": [f"slipway.service.{SERVICE}"]},
            "occurred": {"since": since.isoformat()},  # a day at most: Prefect counts per day
        }
    }
    runs_filter = {"flow_runs": {"deployment_id": {"any_": [deployment]}}}
    began = last_moved = time.monotonic()
    stored = runs = 0
    stored_after: float | None = None
    while True:
        response = httpx.post(f"{api}/events/count-by/event", json=stored_filter, timeout=30)
        response.raise_for_status()
        now_stored = sum(row["count"] for row in response.json())
        response = httpx.post(f"{api}/flow_runs/count", json=runs_filter, timeout=30)
        response.raise_for_status()
        now_runs = int(response.json())
        now = time.monotonic()
        if (now_stored, now_runs) != (stored, runs):
            last_moved = now
        stored, runs = now_stored, now_runs
        if stored >= expected and stored_after is None:
            stored_after = now - began
        if (
            (stored >= expected and runs >= expected)
            or now - last_moved > stall
            or now - began > cap
        ):
            return Drain(stored, stored_after, runs, now - began)
        time.sleep(2)


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


def push_to_running(
    api: str, bridge: str, secret: str, deployment: str, pushes: int
) -> list[tuple[float, float]]:
    """Per push, one at a time: seconds from sending it to its flow run's creation and start."""
    delays: list[tuple[float, float]] = []
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
                created = datetime.fromisoformat(mine[0]["created"]).timestamp() - sent
                started = datetime.fromisoformat(mine[0]["start_time"]).timestamp() - sent
                delays.append((created, started))
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"push {sha[:12]} did not start a run within 60 s")
        time.sleep(0.5)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=205, help="pushes per second offered")
    parser.add_argument("--seconds", type=float, default=30, help="how long the load lasts")
    parser.add_argument("--latency-pushes", type=int, default=20)
    parser.add_argument(
        "--drain-wait",
        type=float,
        default=600,
        help="seconds after the load to wait for every push to be stored and to have its run",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run Prefect on a throwaway PostgreSQL cluster (scripts/postgres.sh) instead of SQLite",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    with ExitStack() as stack:
        database = None
        if args.postgres:
            from scale import Postgres  # bench/scale.py

            pg = Postgres(Path(tempfile.mkdtemp(prefix="slipway-bench-pg-")))
            stack.callback(shutil.rmtree, pg.directory, ignore_errors=True)
            stack.callback(pg.stop)  # also after a failed start: stops what did start
            pg.start()
            database = pg.url
            print("Prefect's database: PostgreSQL on 127.0.0.1 (scripts/postgres.sh)")
        bench(args, database)


def bench(args: argparse.Namespace, database: str | None) -> None:
    """Both phases and the baseline against one `slipway up`, torn down afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "prefect.yaml").write_text(BENCH_PROJECT)
        (project / "bench_flow.py").write_text(BENCH_FLOW)
        proc, ports, env = start_up(home, project, database=database)
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
            delays = push_to_running(
                api, bridge, secret, deployment_id(api, "latency"), args.latency_pushes
            )
            p50 = statistics.median(started for _, started in delays)
            print(
                f"push to running flow ({len(delays)} pushes, one at a time, idle platform): "
                f"p50 {p50:.2f} s, max {max(started for _, started in delays):.2f} s; "
                f"of which push to run created p50 "
                f"{statistics.median(created for created, _ in delays):.2f} s"
            )

            load_deployment = register_load_deployment(api)
            pushes: list[tuple[str, bytes, dict[str, str], str]] = []
            unique: set[str] = set()
            n = int(args.rate * args.seconds)
            for i in range(n):
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

            print(
                f"{n} pushes offered at {args.rate:.0f}/s for {args.seconds:.0f} s; "
                f"{len(unique)} unique deliveries"
            )
            load_began = datetime.now(UTC) - timedelta(minutes=1)
            elapsed, lat, ok = asyncio.run(blast([p[:3] for p in pushes], args.rate))
            rps = report("bridge /hooks/github", n, elapsed, lat, ok)
            print(f"  load phase lasted {elapsed:.1f} s")
            done = drain(api, load_deployment, len(unique), load_began, args.drain_wait)
            # The count is of stored pushes to the bench's service; check them by id as well.
            stored = stored_events(api, unique) if done.stored >= len(unique) else done.stored
            when = (
                f"the last {done.stored_after:.0f} s after the load ended"
                if done.stored_after is not None and stored == len(unique)
                else f"within {done.waited:.0f} s of the load's end"
            )
            print(
                f"  events stored for unique deliveries: {stored}/{len(unique)} "
                f"(missing {len(unique) - stored}), {when}"
            )
            runs = done.runs
            print(
                f"  flow runs created by the trigger: {runs}/{len(unique)} unique deliveries "
                f"within {elapsed + done.waited:.0f} s of the first push "
                f"({runs / (elapsed + done.waited):.1f} runs/s)"
            )
            # The baseline goes last, so the bridge does not meet its backlog.
            b_elapsed, b_lat, b_ok = asyncio.run(blast(direct, args.rate))
            report("Prefect /api/events", n, b_elapsed, b_lat, b_ok)
            b99 = statistics.quantiles(b_lat, n=100)[98]
            q99 = statistics.quantiles(lat, n=100)[98]
            print(f"  bridge / direct p99: {q99 / b99:.2f}x")
            verdicts = [
                f">= 200 req/s for 30 s {'ok' if rps >= 200 and elapsed >= 30 else 'MISSED'}",
                f"p99 < 100 ms {'ok' if q99 < 0.1 else 'MISSED'}",
                f"no event lost {'ok' if ok == n and stored == len(unique) else 'MISSED'}",
                f"every unique push ran {'ok' if runs == len(unique) else 'NOT YET'}",
                f"push to run p50 <= 2 s {'ok' if p50 <= 2 else 'MISSED'}",
            ]
            print("targets: " + "; ".join(verdicts))
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
