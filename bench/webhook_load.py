"""Load on the webhook bridge of a running `slipway up`: ingest, and every push accounted for.

Phase 1, push to run, on the idle platform: pushes one at a time and
measures the time from the push being sent to its flow run being Running in
the runner (a no-op flow with the same kind of `slipway.git.push` trigger
that build-test-deploy has). This is the whole path: the bridge's queue, the
forwarder, Prefect's trigger and the runner.

Phase 2, a burst: signed GitHub pushes of real commits (each service's own
repository on the platform's git server) offered to the bridge open loop at
``--rate`` for ``--seconds``, spread over ``--services`` services; every 10th
is a redelivery of the one before, which must add nothing. Their runs belong
to a deployment nobody serves, so they are created and wait. Reported:

- **ingest**: requests/s, p50 and p99 of the bridge's answers, 2xx;
- **end to end**: how long after the load every unique push was accounted
  for (its run created, or recorded as superseded by a newer push of its
  branch), read from the bridge's queue and then checked push by push in
  Prefect (runs by commit, the ``pushes-<service>`` artifacts' rows), and
  the rate from the first push to the last one accounted for.

Baseline, in the same run: the same events POSTed straight to Prefect's
``/api/events`` at the same rate, one request per event (no trigger matches
them); the ratio of p99s is what the bridge costs (or saves) over Prefect alone.

Targets (2 cores): >= 200 pushes/s for 30 s, p99 < 100 ms, none lost, every
unique push accounted for within 60 s of the load's end; push to running <= 2 s p50.

    python bench/webhook_load.py [--rate 205] [--seconds 30] [--services 20] [--postgres]
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
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.webhooks import Provider, delivery_key, parse_push, push_event

REPO = Path(__file__).resolve().parents[1]
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


@dataclass(frozen=True)
class Platform:
    api: str
    bridge: str
    health: str
    secret: str
    home: Path


def start_up(
    home: Path, project: Path, *, database: str | None = None
) -> tuple[subprocess.Popen[str], dict[str, int], dict[str, str]]:
    from startup import clean_env, free_port  # bench/startup.py

    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    flags = [x for name, port in ports.items() for x in (f"--{name}-port", str(port))]
    env = clean_env({"SLIPWAY_DATABASE_URL": database} if database else None)
    argv = [sys.executable, "-m", "deployments.cli", "--home", str(home), "up"]
    proc = subprocess.Popen(
        [*argv, "--project", str(project), *flags],
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


def make_commits(repository: Path, count: int) -> list[str]:
    """``count`` commits in a row on ``main`` of a bare repository, written by git fast-import."""
    stream = bytearray()
    for i in range(count):
        message = f"bench {i} {uuid.uuid4().hex}\n".encode()
        stream += f"commit refs/heads/main\nmark :{i + 1}\n".encode()
        stream += f"committer Bench <bench@slipway.test> {1700000000 + i} +0000\n".encode()
        stream += f"data {len(message)}\n".encode() + message + b"\n"
    marks = repository / "bench.marks"
    subprocess.run(
        ["git", "--git-dir", str(repository), "fast-import", "--quiet", f"--export-marks={marks}"],
        input=bytes(stream),
        check=True,
    )
    shas = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    return [shas[f":{i + 1}"] for i in range(count)]


def set_up_services(home: Path, names: list[str], commits: int) -> dict[str, list[str]]:
    """Catalogue each service and give it a repository holding ``commits`` commits."""
    from blocks import GitServer
    from tasks.catalog import Catalog, CatalogEntry
    from tasks.git import create_repository

    server = GitServer(provider="local", root=home / "git")
    catalog = Catalog(server)
    found = {}
    for name in names:
        entry = CatalogEntry(name=name, owner="group:bench", port=8100, repository=name)
        catalog.save(entry, message=f"Onboard {name}")
        found[name] = make_commits(create_repository(server, name), commits)
    return found


def register_load_deployment(api: str, services: list[str]) -> str:
    """A deployment nobody serves, and the trigger that creates its runs on pushes to ``services``."""
    flow = httpx.post(f"{api}/flows/", json={"name": "bench-noop"}, timeout=30)
    flow.raise_for_status()
    body = {"name": "load", "flow_id": flow.json()["id"], "entrypoint": "bench_flow.py:noop"}
    deployment = httpx.post(f"{api}/deployments/", json=body, timeout=30)
    deployment.raise_for_status()
    deployment_id = str(deployment.json()["id"])
    trigger = {
        "type": "event",
        "posture": "Reactive",
        "expect": ["slipway.git.push"],
        "match": {"prefect.resource.id": [f"slipway.service.{s}" for s in services]},
        "threshold": 1,
        "within": 0,
    }
    action = {
        "type": "run-deployment",
        "source": "selected",
        "deployment_id": deployment_id,
        "parameters": {"sha": "{{ event.payload.after }}"},
    }
    automation = {"name": "bench-load", "trigger": trigger, "actions": [action]}
    httpx.post(f"{api}/automations/", json=automation, timeout=30).raise_for_status()
    return deployment_id


def body_for(service: str, before: str, after: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {"name": service, "pushed_at": int(time.time())},
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
) -> tuple[float, list[float], Counter[int]]:
    """POST the requests open-loop at ``rate`` per second; elapsed seconds, latencies, statuses.

    Each request is sent at its scheduled time whether or not earlier ones
    were answered, and its latency counts from that time, so a stall shows in
    the figures instead of slowing the sender down (no coordinated omission).
    The sender is aiohttp, the lightest client at hand, with its garbage
    collector off while it sends: on two cores its own pauses would count as
    the bridge's latency.
    """
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def send(
        session: aiohttp.ClientSession, due: float, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            statuses[response.status] += 1
        latencies.append(time.perf_counter() - due)

    gc.collect()
    gc.disable()
    try:
        connector = aiohttp.TCPConnector(limit=256)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            began = time.perf_counter()
            sending = []
            for i, (url, body, headers) in enumerate(requests):
                due = began + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sending.append(asyncio.create_task(send(session, due, url, body, headers)))
            await asyncio.gather(*sending)
            return time.perf_counter() - began, latencies, statuses
    finally:
        gc.enable()


def report(
    name: str, n: int, elapsed: float, latencies: list[float], ok: int
) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    rps = n / elapsed
    print(
        f"  {name:<22} {rps:8.1f} req/s   p50 {q[49] * 1000:6.1f} ms   "
        f"p99 {q[98] * 1000:6.1f} ms   2xx {ok}/{n}"
    )
    return rps, q[98]


def secret_of(env: dict[str, str], home: Path, port: int) -> str:
    """The webhook secret, read as a client of the platform of ``home``, with its auth string."""
    script = "from blocks.webhook import load_webhook_secret as s; print(s().get_secret_value())"
    auth = (home / "keys" / "prefect-api-auth").read_text().strip()
    client = dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_API_AUTH_STRING=auth)
    return subprocess.run(
        [sys.executable, "-c", script],
        env=client,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def runs_by_sha(api: str, deployment: str) -> Counter[str]:
    """How many runs of ``deployment`` each commit has."""
    found: Counter[str] = Counter()
    offset = 0
    while True:
        body = {
            "flow_runs": {"deployment_id": {"any_": [deployment]}},
            "limit": 200,
            "offset": offset,
        }
        page = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=60)
        page.raise_for_status()
        found.update(r["parameters"]["sha"] for r in page.json())
        offset += len(page.json())
        if len(page.json()) < 200:
            return found


def superseded_shas(api: str, services: list[str]) -> Counter[str]:
    """How often each commit is recorded as superseded in the ``pushes-<service>`` artifacts."""
    found: Counter[str] = Counter()
    offset = 0
    while True:
        body = {
            "artifacts": {"key": {"any_": [f"pushes-{s}" for s in services]}},
            "limit": 200,
            "offset": offset,
        }
        page = httpx.post(f"{api}/artifacts/filter", json=body, timeout=60)
        page.raise_for_status()
        for artifact in page.json():
            found.update(row["commit"] for row in json.loads(artifact["data"]))
        offset += len(page.json())
        if len(page.json()) < 200:
            return found


def wait_until_accounted(health: str, cap: float) -> float | None:
    """Seconds until the bridge's queue has nothing waiting and nothing unrecorded; None at ``cap``."""
    began = time.monotonic()
    while time.monotonic() - began < cap:
        queue = httpx.get(health, timeout=30).json()["queue"]
        if queue["waiting"] == 0 and queue["unrecorded"] == 0:
            return time.monotonic() - began
        time.sleep(0.5)
    return None


def push_to_running(
    platform: Platform, deployment: str, shas: list[str]
) -> list[tuple[float, float]]:
    """Per push, one at a time: seconds from sending it to its flow run's creation and start."""
    delays: list[tuple[float, float]] = []
    before = "0" * 40
    for sha in shas:
        body = body_for(LATENCY_SERVICE, before, sha)
        before = sha
        sent = time.time()
        headers = signed(platform.secret, body, str(uuid.uuid4()))
        httpx.post(platform.bridge, content=body, headers=headers, timeout=30).raise_for_status()
        query = {
            "flow_runs": {"deployment_id": {"any_": [deployment]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 50,
        }
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = httpx.post(f"{platform.api}/flow_runs/filter", json=query, timeout=30).json()
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


def burst_requests(
    platform: Platform, commits: dict[str, list[str]], n: int
) -> tuple[list[tuple[str, bytes, dict[str, str]]], set[str]]:
    """``n`` pushes round-robin over the services, every 10th a redelivery; and the unique shas."""
    services = sorted(commits)
    pushes: list[tuple[str, bytes, dict[str, str]]] = []
    unique: set[str] = set()
    heads = dict.fromkeys(services, "0" * 40)
    for i in range(n):
        if i % 10 == 0 and i > 0:
            pushes.append(pushes[-1])  # GitHub's "Redeliver": same id, same body
            continue
        service = services[i % len(services)]
        sha = commits[service].pop(0)
        body = body_for(service, heads[service], sha)
        heads[service] = sha
        pushes.append((platform.bridge, body, signed(platform.secret, body, str(uuid.uuid4()))))
        unique.add(sha)
    return pushes, unique


def direct_requests(
    platform: Platform, pushes: list[tuple[str, bytes, dict[str, str]]]
) -> list[tuple[str, bytes, dict[str, str]]]:
    """The same pushes as Prefect events, straight to ``/api/events``, under a name no trigger matches."""
    direct = []
    for _, body, headers in pushes:
        push = parse_push(Provider.GITHUB, body)
        key = delivery_key(Provider.GITHUB, "direct-" + headers["X-GitHub-Delivery"], body)
        event = push_event(Provider.GITHUB, key, "direct", push, default_branch="main")
        event["resource"]["prefect.resource.id"] = "slipway.service.bench-direct"
        content = json.dumps([event]).encode()
        direct.append((f"{platform.api}/events", content, {"Content-Type": "application/json"}))
    return direct


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=205, help="pushes per second offered")
    parser.add_argument("--seconds", type=float, default=30, help="how long the load lasts")
    parser.add_argument("--services", type=int, default=20, help="services the pushes go to")
    parser.add_argument("--latency-pushes", type=int, default=20)
    parser.add_argument(
        "--drain-wait", type=float, default=300, help="seconds after the load to wait for the queue"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run Prefect (and the bridge's queue) on a throwaway PostgreSQL (scripts/postgres.sh)",
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
            print("Prefect's database and the bridge's queue: PostgreSQL on 127.0.0.1")
        else:
            print("Prefect's database: SQLite; the bridge's queue: SQLite in the data directory")
        bench(args, database)


def bench(args: argparse.Namespace, database: str | None) -> None:
    """Both phases and the baseline against one `slipway up`, torn down afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        project.mkdir()
        (project / "prefect.yaml").write_text(BENCH_PROJECT)
        (project / "bench_flow.py").write_text(BENCH_FLOW)
        proc, ports, env = start_up(home, project, database=database)
        try:
            from startup import platform_api  # bench/startup.py

            api = platform_api(home, ports["prefect"])
            bridge = f"http://127.0.0.1:{ports['bridge']}"
            platform = Platform(
                api,
                f"{bridge}/hooks/github",
                f"{bridge}/healthz",
                secret_of(env, home, ports["prefect"]),
                home,
            )
            run_phases(args, platform)
        finally:
            subprocess.run(
                [sys.executable, "-m", "deployments.cli", "--home", str(home), "down"],
                cwd=REPO,
                env=env,
                capture_output=True,
                timeout=120,
            )
            proc.wait(timeout=60)


def run_phases(args: argparse.Namespace, platform: Platform) -> None:
    n = int(args.rate * args.seconds)
    services = [f"load-{i:02d}" for i in range(args.services)]
    commits = set_up_services(platform.home, [LATENCY_SERVICE, *services], n // len(services) + 2)
    p50 = latency_phase(platform, commits.pop(LATENCY_SERVICE)[: args.latency_pushes])
    deployment = register_load_deployment(platform.api, services)
    warm_up(platform, deployment, services[0], commits[services[0]].pop(0))
    pushes, unique = burst_requests(platform, commits, n)
    direct = direct_requests(platform, pushes)
    print(
        f"{n} pushes offered at {args.rate:.0f}/s for {args.seconds:.0f} s "
        f"over {len(services)} services; {len(unique)} unique"
    )
    elapsed, lat, statuses = asyncio.run(blast(pushes, args.rate))
    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    rps, q99 = report("bridge /hooks/github", n, elapsed, lat, ok)
    print(f"  answers: {dict(sorted(statuses.items()))} (202 accepted, 200 duplicate)")
    after_load = wait_until_accounted(platform.health, args.drain_wait)
    accounted = account(platform, deployment, services, unique)
    e2e = elapsed + (after_load if after_load is not None else args.drain_wait)
    when = (
        f"{after_load:.1f} s after the load ended"
        if after_load is not None
        else f"NOT within {args.drain_wait:.0f} s"
    )
    print(
        f"  end to end: {accounted}/{len(unique)} unique pushes accounted for, {when}; "
        f"{accounted / e2e:.1f} pushes/s from the first push to the last accounted for "
        f"(ingest {rps:.1f}/s)"
    )
    b_elapsed, b_lat, b_statuses = asyncio.run(blast(direct, args.rate))
    b_ok = sum(c for s, c in b_statuses.items() if 200 <= s < 300)
    _, b99 = report("Prefect /api/events", n, b_elapsed, b_lat, b_ok)
    print(f"  bridge / direct p99: {q99 / b99:.2f}x")
    verdicts = [
        f">= 200 req/s for 30 s {'ok' if rps >= 200 and elapsed >= 30 else 'MISSED'}",
        f"p99 < 100 ms {'ok' if q99 < 0.1 else 'MISSED'}",
        f"none lost {'ok' if ok == n and accounted == len(unique) else 'MISSED'}",
        f"accounted within 60 s {'ok' if after_load is not None and after_load <= 60 else 'MISSED'}",
        f"push to running p50 <= 2 s {'ok' if p50 <= 2 else 'MISSED'}",
    ]
    print("targets: " + "; ".join(verdicts))


def latency_phase(platform: Platform, shas: list[str]) -> float:
    """Phase 1 on the idle platform; prints and returns push to running, p50 seconds."""
    latency = httpx.get(f"{platform.api}/deployments/name/bench-noop/latency", timeout=30).json()
    delays = push_to_running(platform, latency["id"], shas)
    p50 = statistics.median(started for _, started in delays)
    print(
        f"push to running flow ({len(delays)} pushes, one at a time, idle platform): "
        f"p50 {p50:.2f} s, max {max(s for _, s in delays):.2f} s; "
        f"of which push to run created p50 {statistics.median(c for c, _ in delays):.2f} s"
    )
    return p50


def warm_up(platform: Platform, deployment: str, service: str, sha: str) -> None:
    """One push before the load, so the forwarder has read the new trigger."""
    body = body_for(service, "0" * 40, sha)
    headers = signed(platform.secret, body, str(uuid.uuid4()))
    httpx.post(platform.bridge, content=body, headers=headers, timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while sha not in runs_by_sha(platform.api, deployment):
        if time.monotonic() > deadline:
            raise SystemExit("the warm-up push did not run within 60 s")
        time.sleep(0.5)


def account(platform: Platform, deployment: str, services: list[str], unique: set[str]) -> int:
    """Check push by push in Prefect: each unique push has one run or one superseded record."""
    runs = runs_by_sha(platform.api, deployment)
    superseded = superseded_shas(platform.api, services)
    ran, gave_way = set(runs) & unique, set(superseded) & unique
    twice = [s for s, c in runs.items() if c > 1] + [s for s, c in superseded.items() if c > 1]
    print(
        f"  in Prefect: {len(ran)} pushes ran, {len(gave_way)} recorded as superseded, "
        f"{len(unique - ran - gave_way)} missing, {len(ran & gave_way)} both, {len(twice)} twice"
    )
    return sum(1 for sha in unique if runs[sha] + superseded[sha] == 1)


if __name__ == "__main__":
    main()
