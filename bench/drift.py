"""The drift check over N environments, in parallel, against a serial loop of the same plans.

Both figures come from one run on one machine and the same code path as the
`detect-drift` flow (`tasks.drift.survey`): per environment, a normal plan and,
unless that one proves it moot (every environment here is in sync), a
refresh-only plan, each shown when it finds something, in one of the Terraform
processes (one per core) kept for the whole check (`tasks.terraform.sessions`), then one
look at the Docker engine (when it answers) for every environment at once.
Only ``max_parallel`` differs: the serial side keeps one process, with Go's
runtime on every core.

Set-up, not timed: a catalog of services (10 environments each) on a local git
root and each environment applied with local state, all in a temporary directory.

Targets (issues 6 and 25, 2 cores): parallel at least 1.7x faster than serial;
100 environments in at most 15 s.

Each size is timed ``--repeat`` times on both sides (alternating which goes
first) and the medians are compared: a 2-core machine's timings of a few
seconds vary by 10 to 20% from one round to the next. Each side's median CPU
seconds (this process and its Terraform sessions) are printed too: they vary
far less, so a slow round with unchanged CPU was waiting for a core.

    python bench/drift.py [--sizes 10 50 100] [--workers 4] [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blocks.deploy_target import DeployTarget  # noqa: E402
from blocks.git_server import GitServer  # noqa: E402
from blocks.terraform_backend import TerraformBackend  # noqa: E402
from slipway.errors import DockerUnavailable  # noqa: E402
from tasks.catalog import Catalog, CatalogEntry, EnvironmentRecord  # noqa: E402
from tasks.containers import docker_client  # noqa: E402
from tasks.drift import Target, survey  # noqa: E402
from tasks.terraform import (  # noqa: E402
    BUNDLED_MODULE,
    Terraform,
    in_parallel,
    record_outputs,
    state_location,
)

PER_SERVICE = 10
SPEEDUP_TARGET = 1.7
SECONDS_TARGET_100 = 15.0


def set_up(root: Path, count: int, workers: int) -> tuple[Terraform, list[Target]]:
    """``count`` applied environments, recorded in a catalog as provision-environment does."""
    backend = TerraformBackend(kind="local", state_dir=root / "state")
    tf = Terraform(backend, workspaces=root / "workspaces")
    catalog = Catalog(GitServer(provider="local", root=root / "git"))
    services = (count + PER_SERVICE - 1) // PER_SERVICE
    wanted = [
        (f"bench-{s:03d}", f"env-{e:02d}") for s in range(services) for e in range(PER_SERVICE)
    ][:count]

    def provision(numbered: tuple[int, tuple[str, str]]) -> EnvironmentRecord:
        number, (service, environment) = numbered
        ws = tf.workspace(BUNDLED_MODULE, service, environment)
        variables = {"service": service, "environment": environment, "port": 20000 + number}
        tf.apply(ws, tf.plan(ws, variables))
        return record_outputs(tf.output(ws), variables, state=state_location(backend, ws))

    records = in_parallel(provision, list(enumerate(wanted)), max_workers=workers)
    by_service: dict[str, dict[str, EnvironmentRecord]] = {}
    for (service, environment), record in zip(wanted, records, strict=True):
        if isinstance(record, Exception):
            raise record
        by_service.setdefault(service, {})[environment] = record
    for service, outputs in by_service.items():
        entry = CatalogEntry(
            name=service,
            owner="group:bench",
            port=20000,
            repository=f"/srv/{service}.git",
            environments=tuple(outputs),
            outputs=outputs,
        )
        catalog.save(entry, message=f"bench: {service}")
    targets = []
    for entry in catalog.entries():
        for environment in entry.environments:
            record = entry.outputs[environment]
            ws = tf.workspace(BUNDLED_MODULE, entry.name, environment)
            targets.append(Target(ws, record.applied_variables(), record))
    return tf, targets


def timed(
    tf: Terraform, client: object, targets: list[Target], workers: int
) -> tuple[float, float]:
    """Seconds of one check, and the CPU seconds it took here and in its Terraform sessions.

    CPU varies far less than time on a shared machine: a side that got slower
    while its CPU stayed put was waiting for a core.
    """
    cpu = _cpu_seconds()
    began = time.perf_counter()
    statuses = survey(tf, client, targets, recorded=lambda s, e: None, max_parallel=workers)
    took = time.perf_counter() - began
    failed = [s for s in statuses if s.error is not None]
    if failed:
        raise SystemExit(f"the check failed: {failed[0].reasons}")
    return took, _cpu_seconds() - cpu


def _cpu_seconds() -> float:
    """This process's CPU and that of its ended children (the sessions end with the check)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds per size; the medians are compared"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        client = docker_client(DeployTarget(), timeout=10)
    except DockerUnavailable as e:
        print(f"Docker engine not reachable, timing Terraform only: {e}")
        client = None

    missed = []
    with tempfile.TemporaryDirectory(prefix="slipway-bench-drift-") as scratch:
        began = time.perf_counter()
        tf, targets = set_up(Path(scratch), max(args.sizes), args.workers)
        print(f"set-up: {len(targets)} environments applied in {time.perf_counter() - began:.1f} s")
        print(
            f"{'N':>5} {'serial s':>10} {'parallel s':>11} {'speedup':>8} {'CPU s (serial, parallel)':>25}"
        )
        for size in args.sizes:
            subset = targets[:size]
            serials, parallels = [], []
            for round_ in range(args.repeat):  # alternate which side goes first
                if round_ % 2:
                    parallels.append(timed(tf, client, subset, args.workers))
                serials.append(timed(tf, client, subset, 1))
                if not round_ % 2:
                    parallels.append(timed(tf, client, subset, args.workers))
            serial, parallel = (
                statistics.median(t for t, _ in side) for side in (serials, parallels)
            )
            cpu = [statistics.median(c for _, c in side) for side in (serials, parallels)]
            speedup = serial / parallel
            print(
                f"{size:>5} {serial:>10.2f} {parallel:>11.2f} {speedup:>7.2f}x"
                f" {cpu[0]:>13.2f}, {cpu[1]:.2f}"
            )
            if speedup < SPEEDUP_TARGET:
                missed.append(f"N={size}: speedup {speedup:.2f}x < {SPEEDUP_TARGET}x")
            if size >= 100 and parallel > SECONDS_TARGET_100:
                missed.append(f"N={size}: {parallel:.1f} s > {SECONDS_TARGET_100} s")
    for line in missed:
        print(f"MISSED {line}")
    if not missed:
        print("all targets met")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
