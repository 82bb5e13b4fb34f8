"""What a short platform flow run costs on a worker host, and throughput with 1, 2 and 4 of them.

For each database, one `slipway up --role server` applies a snapshot of the
platform (the committed HEAD, holding the real ``platform-check`` flow) to the
work pool twice: ``platform-check`` with prefect.yaml's own pull step (one
shared checkout per commit, runs forked by the host's warm run starter), and
``platform-check-baseline``, the way every run started before: Prefect's
``git_clone`` of the platform per run and a cold ``python -m prefect.engine``
(``SLIPWAY_RUN_START=spawn``). Then, for each worker count, that many
`slipway up --role worker` processes (each its own home, standing in for a
host) run a batch of each, submitted at once. Measured: the wall time from the
first submission to the last run's end, and the CPU seconds that the worker
hosts, the server and PostgreSQL spent on the batch, read from /proc.

    python bench/scale.py [--runs 16] [--workers 1,2,4] [--limit 2] [--poll 1]
                          [--databases SQLite,PostgreSQL]

Needs PostgreSQL 15 (scripts/postgres.sh starts a throwaway cluster) and git.
It prints its figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from startup import clean_env, free_port, platform_api  # bench/startup.py

REPO = Path(__file__).resolve().parents[1]
SLIPWAY = [sys.executable, "-m", "deployments.cli"]
TICK = os.sysconf("SC_CLK_TCK")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
BASELINE = "platform-check-baseline"
GIT_CLONE = {  # prefect.yaml's pull step before slipway.checkouts
    "repository": "{{ prefect.variables.slipway_repository }}",
    "commit_sha": "{{ prefect.variables.slipway_commit }}",
    "clone_directory_name": "slipway",
}


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of the processes and of their children that they have reaped."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def processes_with_env(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                found.append(int(entry.name))
    return found


@dataclass
class Host:
    """One `slipway up` process and its home."""

    home: Path
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    def launch(self) -> None:
        self.process = subprocess.Popen(
            [*SLIPWAY, "--home", str(self.home), "up", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)

    def wait_ready(self, timeout: float = 300) -> None:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while line := self.process.stdout.readline():
                self.output.append(line)
            if any("Slipway is up" in line for line in self.output):
                return
            if self.process.poll() is not None:
                raise SystemExit(f"slipway up exited early:\n{''.join(self.output)}")
            time.sleep(0.2)
        raise SystemExit(f"slipway up was not ready in {timeout} s:\n{''.join(self.output)}")

    def cpu(self) -> float:
        return cpu_seconds(processes_with_env(f"SLIPWAY_HOME={self.home}"))

    def stop(self) -> None:
        subprocess.run(
            [*SLIPWAY, "--home", str(self.home), "down"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            timeout=120,
        )
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def platform_snapshot(root: Path) -> Path:
    """HEAD of this checkout as a repository of its own, with one deployment: platform-check."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    root.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    manifest = yaml.safe_load((REPO / "prefect.yaml").read_text())
    check = next(d for d in manifest["deployments"] if d["name"] == "platform-check")
    check.pop("schedules", None)
    baseline = {  # each run clones the platform and starts a cold interpreter
        **check,
        "name": BASELINE,
        "pull": [{"prefect.deployments.steps.git_clone": GIT_CLONE}],
        "work_pool": {"name": "slipway", "job_variables": {"env": {"SLIPWAY_RUN_START": "spawn"}}},
    }
    manifest["deployments"] = [check, baseline]
    (root / "prefect.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    git = ["git", "-c", "user.email=bench@slipway", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=root, check=True)
    return root


class Postgres:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.script = str(REPO / "scripts" / "postgres.sh")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://slipway:{self.password}@127.0.0.1:{self.port}/slipway"

    def start(self) -> None:
        env = dict(os.environ, SLIPWAY_PG_PASSWORD=self.password)  # durable: fsync on
        cmd = ["bash", self.script, "start", str(self.directory), str(self.port)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"PostgreSQL did not start: {done.stderr.strip()}")

    def cpu(self) -> float:
        pid = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        return cpu_seconds([pid, *children_of(pid)])

    def stop(self) -> None:
        subprocess.run(["bash", self.script, "stop", str(self.directory)], capture_output=True)


def post(url: str, body: dict[str, object]) -> httpx.Response:
    """POST, retrying 429 and 503 as Prefect's client does (SQLite answers 503 when busy)."""
    for attempt in range(8):
        response = httpx.post(url, json=body, timeout=30)
        if response.status_code not in (429, 503):
            break
        time.sleep(0.25 * 2**attempt)
    response.raise_for_status()
    return response


def run_batch(api: str, deployment_id: str, runs: int) -> tuple[float, dict[str, int]]:
    began = time.monotonic()
    ids = []
    for _ in range(runs):
        response = post(
            f"{api}/deployments/{deployment_id}/create_flow_run",
            {"parameters": {"include_optional": False}},
        )
        ids.append(response.json()["id"])
    while True:
        found = post(
            f"{api}/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}, "limit": 200}
        ).json()
        states = [r["state"]["type"] for r in found]
        if len(states) == runs and all(s in TERMINAL for s in states):
            return time.monotonic() - began, {s: states.count(s) for s in set(states)}
        time.sleep(0.25)


@dataclass
class Row:
    database: str
    variant: str
    workers: int
    runs: int
    wall: float
    states: dict[str, int]
    cpu_workers: float
    cpu_server: float
    cpu_database: float

    @property
    def per_minute(self) -> float:
        return self.runs / self.wall * 60

    @property
    def cpu_per_run(self) -> float:
        return (self.cpu_workers + self.cpu_server + self.cpu_database) / self.runs

    @property
    def worker_cpu_per_run(self) -> float:
        return self.cpu_workers / self.runs


def batch(
    kind: str,
    variant: str,
    deployment_id: str,
    api: str,
    workers: list[Host],
    server: Host,
    pg: Postgres | None,
    args: argparse.Namespace,
) -> Row:
    """One batch of runs of one deployment, with the CPU each side spent on it."""
    before = (sum(w.cpu() for w in workers), server.cpu(), pg.cpu() if pg else 0.0)
    wall, states = run_batch(api, deployment_id, args.runs)
    time.sleep(1)  # the last flow-run processes are reaped by their workers
    after = (sum(w.cpu() for w in workers), server.cpu(), pg.cpu() if pg else 0.0)
    return Row(
        kind,
        variant,
        len(workers),
        args.runs,
        wall,
        states,
        *(a - b for a, b in zip(after, before, strict=True)),
    )


def registered_deployments(api: str, names: list[str], timeout: float = 180) -> dict[str, str]:
    """Each of ``names`` to its deployment id, once the server's `up` has applied them all.

    `up` is ready before its deployments are applied (a one-shot child does
    that after every component answers), so the bench waits for them.
    """
    deadline = time.monotonic() + timeout
    while True:
        query: dict[str, object] = {"deployments": {"name": {"any_": names}}}
        found = {d["name"]: d["id"] for d in post(f"{api}/deployments/filter", query).json()}
        if set(names) <= found.keys():
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"deployments not applied after {timeout:.0f} s: {sorted(found)}")
        time.sleep(0.5)


def measure(kind: str, base: Path, project: Path, args: argparse.Namespace) -> list[Row]:
    pg = (
        Postgres(Path(tempfile.mkdtemp(prefix="slipway-bench-pg-")))
        if kind == "PostgreSQL"
        else None
    )
    extra = {}
    if pg is not None:
        pg.start()
        extra["SLIPWAY_DATABASE_URL"] = pg.url
    port = free_port()
    ports = [x for n in ("docs", "registry", "bridge") for x in (f"--{n}-port", str(free_port()))]
    server = Host(
        base / f"server-{kind}",
        ["--role", "server", "--project", str(project), "--prefect-port", str(port), *ports],
        clean_env(extra),
    )
    server_url = f"http://127.0.0.1:{port}/api"  # what workers are given
    rows: list[Row] = []
    try:
        began = time.monotonic()
        server.launch()
        server.wait_ready()
        api = platform_api(server.home, port)  # the bench's own requests authenticate
        print(f"  {kind}: server up in {time.monotonic() - began:.1f} s", flush=True)
        deployments = registered_deployments(api, ["platform-check", BASELINE])
        for count in args.workers:
            workers = [
                Host(
                    base / f"worker-{kind}-{count}-{i}",
                    [
                        *("--role", "worker", "--server", server_url),
                        *("--worker-name", f"w{count}-{i}"),
                        *("--poll-seconds", str(args.poll), "--limit", str(args.limit)),
                    ],
                    clean_env(),
                )
                for i in range(count)
            ]
            try:  # the workers are stopped also when a batch fails
                for w in workers:  # each worker host is given its server's keys
                    shutil.copytree(server.home / "keys", w.home / "keys", dirs_exist_ok=True)
                    w.launch()
                for w in workers:
                    w.wait_ready()
                time.sleep(2)  # let the workers settle after start-up
                for variant, name in (("baseline", BASELINE), ("now", "platform-check")):
                    row = batch(kind, variant, deployments[name], api, workers, server, pg, args)
                    rows.append(row)
                    print(
                        f"  {kind} {variant:>8}: {count} worker(s): {row.wall:.1f} s, "
                        f"{row.per_minute:.1f} runs/min, {row.worker_cpu_per_run:.2f} CPU s/run "
                        f"on worker hosts, states {row.states}",
                        flush=True,
                    )
            finally:
                for w in workers:
                    w.stop()
    finally:
        server.stop()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.directory, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=16, help="flow runs per batch")
    parser.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--limit", type=int, default=2, help="flow runs at once per worker")
    parser.add_argument("--poll", type=float, default=1.0, help="worker poll interval, seconds")
    parser.add_argument(
        "--databases", type=lambda s: s.split(","), default=["SQLite", "PostgreSQL"]
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp:
        base = Path(tmp)
        project = platform_snapshot(base / "platform")
        rows = []
        for kind in args.databases:
            rows += measure(kind, base, project, args)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    report(rows, cores, args)


def report(rows: list[Row], cores: int, args: argparse.Namespace) -> None:
    print(
        f"\n{args.runs} platform-check runs per batch, submitted at once; "
        f"each worker runs {args.limit} at a time, polls every {args.poll:g} s. "
        "'baseline': git_clone per run and a cold interpreter, measured in this same run."
    )
    header = (
        f"{'database':<11}{'variant':>9}{'workers':>8}{'wall s':>8}{'runs/min':>10}"
        f"{'CPU s/run':>11}{'on hosts':>9}{'server':>8}{'db':>6}{'ceiling':>9}{'used':>7}"
    )
    print(header)
    for row in rows:
        ceiling = cores / row.worker_cpu_per_run * 60 if row.cpu_workers else float("inf")
        print(
            f"{row.database:<11}{row.variant:>9}{row.workers:>8}{row.wall:>8.1f}"
            f"{row.per_minute:>10.1f}{row.cpu_per_run:>11.2f}{row.worker_cpu_per_run:>9.2f}"
            f"{row.cpu_server / row.runs:>8.2f}{row.cpu_database / row.runs:>6.2f}"
            f"{ceiling:>9.1f}{row.per_minute / ceiling:>7.0%}"
        )
    print()
    for now in (r for r in rows if r.variant == "now"):
        base = next(
            r
            for r in rows
            if r.variant == "baseline" and (r.database, r.workers) == (now.database, now.workers)
        )
        print(
            f"{now.database} with {now.workers} worker(s): CPU per run on the worker hosts "
            f"{now.worker_cpu_per_run:.2f} s against {base.worker_cpu_per_run:.2f} s "
            f"({now.worker_cpu_per_run / base.worker_cpu_per_run:.2f}x); "
            f"throughput {now.per_minute / base.per_minute:.2f}x the baseline"
        )
    print(
        "\n'on hosts' = CPU seconds per run of the worker hosts (worker, run starter, flow-run "
        f"processes); 'ceiling' = {cores} cores / that x 60: the most runs per minute these "
        "cores could start if the worker hosts had them to themselves; 'used' = runs/min "
        "reached against it. 'CPU s/run' adds the server's and the database's share."
    )


if __name__ == "__main__":
    main()
