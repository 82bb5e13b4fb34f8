"""`git push` to the new version answering, through a running `slipway up`, against a plain script.

What a developer waits for: they commit a change to a service and run ``git
push``; the platform's post-receive hook hands the push to the webhook bridge
(which commits it to its queue and answers 202), and only then does ``git
push`` return. The bridge's forwarder posts the event to Prefect, the
deployment trigger creates a build-test-deploy run, the runner of `slipway
serve` starts the run's process, and the flow checks out, builds, tests,
pushes and releases blue-green. The new version is healthy when ``/healthz``
answers with the pushed sha.

Both sides do the same thing, N times each, alternating which goes first, on
one service each that already serves (each round's commit appends a line to
``app/__init__.py``, so the image's app layer and its tests are new while the
dependency layers come from the cache):

* **plain script** (the baseline): ``git push`` to a bare repository with no
  hook, then `testkit.lead_time.PLAIN_SCRIPT` (clone, build without network,
  tests in the image, push to the same registry, replace the container,
  wait for ``/healthz``);
* **slipway**: ``git push`` to the service's repository on the platform.

Each is timed from the start of ``git push`` until the outside poller
(`testkit.lead_time.HealthWatch`, every 20 ms, the same for both) first gets
the new sha. ``git push`` itself is part of what a user waits for, and on the
platform it includes the hook's hand-over; the figure from ``git push``
returning is printed beside it. The platform's phases come from what it
records: the push event's ``occurred`` (the bridge accepted it) and
``received`` (Prefect has it), the run's ``created``, its Pending and Running
states, its task runs, and its end; the other runs the same push started
(the security scan, which waits for the switch: `tasks.scanners.due`) are
listed with their times, to show they did not share the cores with the build.

The release analysis (`tasks.monitoring.watch`) watches a new version for
two minutes by default after it answers; it starts after the switch, so it
adds nothing to the figure, but every round waits for the platform to be
idle first, so the bench shortens the window (``--analysis-window``, 10 s).

Target (issue 25, 2 cores): push to healthy at most 1.3x the plain script.

Needs the Docker engine, Debian's docker-registry and ``$SLIPWAY_BASE_IMAGE``
(default ``local/python-base:bookworm``); every container and image tag it
creates is removed, and the platform taken down, also on failure.

    python bench/push_to_healthy.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testkit.lead_time import (  # noqa: E402 - after the checkout is importable
    HealthWatch,
    PlainDelivery,
    check_serving,
    docker_login,
    plain_delivery,
)
from testkit.up import RunningUp, running_up  # noqa: E402

TARGET = 1.3
HEALTH_TIMEOUT = 120.0
"""Seconds a round may take to answer healthy; generous, it never adds to a success."""
BUILD_FLOW = "build-test-deploy"


@dataclass(frozen=True)
class Round:
    """One push, timed from the start of ``git push`` (wall clock, seconds since the epoch)."""

    began: float
    pushed: float
    """``git push`` returned."""
    healthy: float
    """The outside poller first got the new sha."""
    phases: dict[str, float]
    """What the platform recorded, by phase: wall-clock times."""
    others: list[str]
    """Other runs this push started, with when they ran, relative to ``began``."""
    logs: list[tuple[float, str]] = field(default_factory=list)
    """The build run's log lines: wall-clock time and message."""

    @property
    def to_healthy(self) -> float:
        return self.healthy - self.began

    @property
    def from_return(self) -> float:
        return self.healthy - self.pushed


@dataclass(frozen=True)
class Service:
    """A service one side delivers: its work tree, where it pushes, its port."""

    name: str
    work: Path
    remote: str
    port: int


def git(work: Path, *args: str) -> str:
    env = os.environ | {
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@slipway.test",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@slipway.test",
    }
    done = subprocess.run(
        ["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout + done.stderr


def commit_change(service: Service, note: str) -> str:
    """A commit that changes the app (a new app layer, tests run again); returns its sha."""
    with (service.work / "app" / "__init__.py").open("a", encoding="utf-8") as module:
        module.write(f"# {note}\n")
    git(service.work, "commit", "--quiet", "-am", note)
    return git(service.work, "rev-parse", "HEAD").strip()


def new_work_tree(scratch: Path, name: str, port: int, remote: str) -> Service:
    from testkit.delivery import render_source

    work = render_source(scratch / name, name, port)
    git(work, "init", "--quiet", "--initial-branch=main")
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "Initial commit")
    return Service(name, work, remote, port)


def onboard(scratch: Path, up: RunningUp) -> Service:
    """A catalogued service whose repository on the platform has the platform's push hook."""
    from blocks import GitServer
    from tasks.catalog import Catalog, CatalogEntry
    from tasks.git import create_repository, platform_push_hook, repository_url
    from testkit.platform import free_port

    name, port = f"bench-push-{uuid.uuid4().hex[:8]}", free_port()
    server = GitServer.load_default()
    create_repository(server, name, hook=platform_push_hook(up.home, up.ports))
    remote = repository_url(server, name)
    entry = CatalogEntry(name=name, owner="group:bench", repository=remote, port=port)
    Catalog(server).save(entry, message=f"Add {name}")
    return new_work_tree(scratch, name, port, remote)


def plain_service(scratch: Path) -> Service:
    """The baseline's service: a bare repository with no hook, as a plain git server has."""
    from testkit.platform import free_port

    name, port = f"bench-plain-{uuid.uuid4().hex[:8]}", free_port()
    remote = scratch / f"{name}.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    return new_work_tree(scratch, name, port, str(remote))


class Platform:
    """The platform's side: push, then read back what the platform recorded."""

    def __init__(self, up: RunningUp, service: Service, *, analysis_window: float) -> None:
        from blocks import DEFAULT_DOCUMENT
        from blocks.monitoring import MonitoringSettings

        settings = MonitoringSettings.load_default()
        settings.analysis_window_seconds = analysis_window
        settings.save(DEFAULT_DOCUMENT, overwrite=True)
        self.analysis_window = analysis_window
        self.up = up
        self.service = service
        self.http = httpx.Client(base_url=up.api, timeout=30, trust_env=False)
        self._flows: dict[str, str] = {}

    def deliver(self, sha: str) -> Round:
        began, start = time.time(), time.monotonic()
        watch = HealthWatch(self.service.port, sha, start)
        out = git(self.service.work, "push", self.service.remote, "main:main")
        pushed = time.time()
        if "delivered (202)" not in out:
            raise SystemExit(f"the push hook did not hand the push over:\n{out}")
        healthy = began + watch.wait(HEALTH_TIMEOUT)
        run = self.wait_finished(sha)
        phases = self.phases(sha, run)
        return Round(began, pushed, healthy, phases, self.others(sha, began), self.logs(run))

    def logs(self, run: dict[str, Any]) -> list[tuple[float, str]]:
        """The build run's log lines until its release analysis, oldest first."""
        body = {
            "logs": {"flow_run_id": {"any_": [run["id"]]}},
            "sort": "TIMESTAMP_ASC",
            "limit": 200,
        }
        found = self.http.post("/logs/filter", json=body).json()
        return [(_time(line["timestamp"]), str(line["message"])[:100]) for line in found]

    def runs(self, sha: str, *, flow: str | None = None) -> list[dict[str, Any]]:
        """The runs of ``sha``, newest first; of the flow ``flow`` only, if given."""
        body: dict[str, Any] = {"limit": 100, "sort": "EXPECTED_START_TIME_DESC"}
        if flow is not None:
            body["flows"] = {"name": {"any_": [flow]}}
        found = self.http.post("/flow_runs/filter", json=body).json()
        return [r for r in found if sha in r["parameters"].values()]

    def wait_finished(self, sha: str) -> dict[str, Any]:
        """The build-test-deploy run of ``sha``, once it ended (after its release analysis)."""
        deadline = time.monotonic() + HEALTH_TIMEOUT + self.analysis_window
        while time.monotonic() < deadline:
            for run in self.runs(sha, flow=BUILD_FLOW):
                if run["end_time"]:
                    if run["state_type"] != "COMPLETED":
                        raise SystemExit(f"{BUILD_FLOW} of {sha[:12]} ended {run['state_name']}")
                    return run
            time.sleep(0.2)
        raise SystemExit(f"no finished {BUILD_FLOW} run of {sha[:12]}")

    def wait_idle(self) -> None:
        """Until no run is pending or running: a round must not share the cores with the last."""
        body = {
            "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}},
            "limit": 10,
        }
        deadline = time.monotonic() + 600
        while self.http.post("/flow_runs/filter", json=body).json():
            if time.monotonic() > deadline:
                raise SystemExit("the platform's runs did not finish within 10 minutes")
            time.sleep(0.5)

    def flow_name(self, run: dict[str, Any]) -> str:
        flow_id = run["flow_id"]
        if flow_id not in self._flows:
            self._flows[flow_id] = str(self.http.get(f"/flows/{flow_id}").json()["name"])
        return self._flows[flow_id]

    def phases(self, sha: str, run: dict[str, Any]) -> dict[str, float]:
        found: dict[str, float] = {}
        event = self.push_event(sha)
        found["bridge accepted"] = _time(event["occurred"])
        found["event received"] = _time(event["received"])
        found["run created"] = _time(run["created"])
        states = self.http.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
        for state in sorted(states, key=lambda s: s["timestamp"]):
            if state["type"] in ("PENDING", "RUNNING"):
                found.setdefault(f"run {state['type'].lower()}", _time(state["timestamp"]))
        body = {"task_runs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200}
        tasks = self.http.post("/task_runs/filter", json=body).json()
        for task in sorted(tasks, key=lambda t: t["start_time"] or ""):
            if task["start_time"] and task["end_time"]:
                name = task["name"].rsplit("-", 1)[0]
                found[f"  {name} from"] = _time(task["start_time"])
                found[f"  {name} to"] = _time(task["end_time"])
        found["run ended"] = _time(run["end_time"])
        return found

    def push_event(self, sha: str) -> dict[str, Any]:
        body = {
            "filter": {
                "event": {"name": ["slipway.git.push"]},
                "resource": {"id": [f"slipway.service.{self.service.name}"]},
            },
            "limit": 50,
        }
        events = self.http.post("/events/filter", json=body).json()["events"]
        for event in events:
            if event["payload"].get("after") == sha:
                return dict(event)
        raise SystemExit(f"Prefect has no push event of {sha[:12]}")

    def others(self, sha: str, began: float) -> list[str]:
        notes = []
        for run in self.runs(sha):
            name = self.flow_name(run)
            if name == BUILD_FLOW:
                continue
            start = _time(run["start_time"]) - began if run["start_time"] else None
            end = _time(run["end_time"]) - began if run["end_time"] else None
            notes.append(f"{name} {_span(start, end)}")
        return notes


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _span(start: float | None, end: float | None) -> str:
    return (
        f"{'-' if start is None else f'{start:.2f}'}..{'running' if end is None else f'{end:.2f}'}"
    )


class Plain:
    """The baseline's side: push with no hook, then the plain script."""

    def __init__(self, scratch: Path, up: RunningUp, service: Service) -> None:
        from blocks import ContainerRegistry, DeployTarget
        from deployments.registry_auth import RegistryLogin

        registry = ContainerRegistry.load_default()
        assert registry.username is not None and registry.password is not None
        self.registry = registry.url
        self.docker_host = DeployTarget.load_default().docker_host
        login = RegistryLogin(registry.username, registry.password)
        self.config = docker_login(self.registry, login, scratch / "docker-config")
        self.scratch, self.up, self.service = scratch, up, service
        self.wheelhouse = self._wheelhouse()

    def _wheelhouse(self) -> Path:
        """The template's wheelhouse from the platform's own cache (untimed), as the flow uses it."""
        from blocks import DeployTarget
        from tasks.containers import docker_client
        from tasks.wheelhouse import WHEELHOUSE, prepare_wheelhouse
        from testkit.delivery import BASE_IMAGE

        target = DeployTarget.load_default()
        context = self.scratch / "wheelhouse-context"
        context.mkdir()
        (context / "requirements.txt").write_text(
            (self.service.work / "requirements.txt").read_text()
        )
        client = docker_client(target)
        prepare_wheelhouse(
            client, context, base_image=BASE_IMAGE, target=target, cache=self.up.home.wheelhouses
        )
        return context / WHEELHOUSE

    def deliver(self, sha: str, *, replace: bool = True) -> Round:
        from testkit.delivery import BASE_IMAGE

        began, start = time.time(), time.monotonic()
        git(self.service.work, "push", "--quiet", self.service.remote, "main:main")
        pushed = time.time()
        job = PlainDelivery(
            repository=self.service.remote,
            sha=sha,
            tag=f"{self.registry}/{self.service.name}:{sha}",
            base_image=BASE_IMAGE,
            service=self.service.name,
            port=self.service.port,
            work=Path(tempfile.mkdtemp(prefix="plain-", dir=self.scratch)),
            wheelhouse=self.wheelhouse,
            docker_host=self.docker_host,
            docker_config=self.config,
            replace=replace,
        )
        timing = plain_delivery(job, began=start, timeout=HEALTH_TIMEOUT)
        return Round(began, pushed, began + timing.healthy, timing.steps, [])


def clean_up(services: list[str], registry: str) -> None:
    from blocks import DeployTarget
    from tasks.containers import docker_client
    from testkit.delivery import remove_service_containers, remove_service_images

    client = docker_client(DeployTarget.load_default())
    for name in services:
        try:
            remove_service_containers(client, name)
            remove_service_images(client, f"{registry}/{name}")
        except Exception as e:  # keep cleaning the others
            print(f"warning: could not clean up {name}: {e}", file=sys.stderr)


def report(rows: dict[str, list[Round]], *, show_logs: bool = False) -> None:
    plain, slip = rows["plain script"], rows["slipway"]
    print(f"git push -> new version healthy, median of {len(slip)} pushes each (seconds)")
    print(f"  {'':<14} {'to healthy':>10} {'push took':>9} {'after push':>10}   to healthy, each")
    for key, rounds in rows.items():
        each = ", ".join(f"{r.to_healthy:.2f}" for r in rounds)
        print(
            f"  {key:<14} {_median(r.to_healthy for r in rounds):10.2f} "
            f"{_median(r.pushed - r.began for r in rounds):9.2f} "
            f"{_median(r.from_return for r in rounds):10.2f}   {each}"
        )
    # The tests end: the plain script's step, the platform's test-image task run.
    tested = {"plain script": "tested", "slipway": "  test-image to"}
    for key, rounds in rows.items():
        ends = [r.healthy - r.phases[tested[key]] for r in rounds if tested[key] in r.phases]
        if ends:
            each = ", ".join(f"{a:.2f}" for a in ends)
            print(f"  {key}: tests passed -> healthy, median {_median(ends):.2f} s   each: {each}")
    for key, rounds in rows.items():
        print(f"  {key}: phases, median seconds from the start of `git push`")
        for phase in rounds[0].phases:
            values = [r.phases[phase] - r.began for r in rounds if phase in r.phases]
            print(f"    {phase:<34} {_median(values):6.2f}")
        print(f"    {'healthy (outside poller)':<34} {_median(r.to_healthy for r in rounds):6.2f}")
    for r in slip:
        if r.others:
            print(f"    also started by the push at {r.to_healthy:.2f}: {'; '.join(r.others)}")
    if show_logs:
        middle = sorted(slip, key=lambda r: r.to_healthy)[len(slip) // 2]
        print(f"  slipway: the median push's run log (healthy at {middle.to_healthy:.2f})")
        for stamp, message in middle.logs:
            print(f"    {stamp - middle.began:6.2f} {message}")
    ratio = _median(r.to_healthy for r in slip) / _median(r.to_healthy for r in plain)
    after = _median(r.from_return for r in slip) / _median(r.from_return for r in plain)
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(
        f"  slipway / plain script = {ratio:.2f}x from `git push` ({after:.2f}x from its return); "
        f"target <= {TARGET:.1f}x: {verdict}"
    )


def _median(values: Any) -> float:
    return float(statistics.median(list(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--analysis-window",
        type=float,
        default=10.0,
        help="seconds each release is watched after the switch (120 by default on a platform)",
    )
    parser.add_argument(
        "--logs", action="store_true", help="print the median push's run log, timed"
    )
    args = parser.parse_args()
    from testkit.delivery import BASE_IMAGE

    rows: dict[str, list[Round]] = {"plain script": [], "slipway": []}
    services: list[str] = []
    with tempfile.TemporaryDirectory(prefix="slipway-bench-push-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        up = stack.enter_context(running_up(scratch, extra_env={"SLIPWAY_BASE_IMAGE": BASE_IMAGE}))
        os.environ.update(up.client_env())  # this process is a client of the platform, as flows are
        registry = f"127.0.0.1:{up.ports.registry}"
        stack.callback(clean_up, services, registry)
        slip_service = onboard(scratch, up)
        services.append(slip_service.name)
        platform = Platform(up, slip_service, analysis_window=args.analysis_window)
        note("warm-up (untimed): the service's first push, which fetches its wheelhouse")
        platform.deliver(git(slip_service.work, "rev-parse", "HEAD").strip())
        plain_svc = plain_service(scratch)
        services.append(plain_svc.name)
        plain = Plain(scratch, up, plain_svc)
        plain.deliver(git(plain_svc.work, "rev-parse", "HEAD").strip(), replace=False)
        for run in range(args.runs):
            note(f"push {run + 1} of {args.runs}")
            sides: list[tuple[str, Plain | Platform, Any]] = [
                ("plain script", plain, plain_svc),
                ("slipway", platform, slip_service),
            ]
            for key, side, service in sides if run % 2 == 0 else reversed(sides):
                platform.wait_idle()
                sha = commit_change(service, f"change {run} {uuid.uuid4().hex}")
                rows[key].append(side.deliver(sha))
                check_serving(service.port, sha)
    report(rows, show_logs=args.logs)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
