"""Push-to-healthy lead time of build-test-deploy, against the same steps as a plain script.

Three figures per round, each for a service rendered from the python-service
template under a new name, so the engine has none of its layers yet (only the
base image is cached, as on any build host):

* **plain script, first build**: a bash script doing by hand what the flow
  does: ``git clone`` and check out the commit, copy in the wheelhouse (the
  flow's own, fetched before the rounds, as the flow's is cached), ``docker
  build`` without network (the legacy builder, as the docker SDK uses, with
  the same build argument and labels), the tests in the image without
  network, ``docker push``, ``docker run`` confined as the flow runs it, and
  ``curl /healthz`` until it answers. This is the baseline.
* **build-test-deploy, first build**: the flow called on the commit, until it
  returns with the service healthy on 127.0.0.1 (tests artifact, push with
  retries, blue-green release, deployment record and event included).
* **build-test-deploy, docs-only commit**: a second push of the same service
  whose commit changes only ``docs/index.md``, which the image does not
  contain: every layer comes from the cache, the tests are not run again
  (identical image), and the release switches blue-green to the new commit.
* **build-test-deploy, no-change rebuild**: build-test-deploy of that same
  commit once more, as a re-run or a re-pushed branch starts it. It checks
  out, builds (all from the cache), looks up the tests, and finds the
  identical image already serving and healthy, so it neither pushes nor
  restarts anything and returns ``unchanged``. Both its columns are until the
  flow returns: the service never stopped answering with that commit. This
  is the figure the 25% target is judged on; the docs-only commit, which
  must start a container of the new commit, is reported beside it.

The flow runs in this process against a temporary Prefect server, a registry
(Debian's ``docker-registry``) and a local git root, as the delivery tests set
them up (`testkit.delivery`). From `git push` through a running
`slipway up` (hook, bridge, event, trigger, runner) is
bench/push_to_healthy.py's job, not this one's. Before the
rounds, one untimed build-test-deploy of a warm-up service pushes the base
image's layers to the registry (later pushes mount them, for both sides) and
warms the Prefect server. The two sides alternate which goes first.

Each figure is timed twice. **To healthy**, the lead time: from the start
until a poller outside both sides (every 20 ms) first gets the new sha from
``/healthz``; the same poller times both sides, so neither gains from its own
polling interval. **Returned**: until the script or the flow returns; the flow
then still records the deployment, links it and hands back its release slot.

Targets (issue 5, 2 cores): platform overhead at most 1.2x the plain script
(to healthy); a no-change rebuild at most 25% of the first build (until each
returned).

Needs the Docker engine and ``$SLIPWAY_BASE_IMAGE`` (default
``local/python-base:bookworm``) built locally; every container, image tag and
temporary directory it creates is removed, also on failure or SIGTERM.

    python bench/delivery.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slipway.names import GitRef, GitSha, ServiceName  # noqa: E402
from testkit.lead_time import (  # noqa: E402 - after the checkout is importable
    HealthWatch,
    PlainDelivery,
    Timing,
    check_serving,
    docker_login,
    plain_delivery,
)

REF = "refs/heads/main"
HEALTH_TIMEOUT = 60.0
"""Seconds either side may take to answer /healthz; generous, as it never adds to a success."""
OVERHEAD_TARGET = 1.2
REBUILD_TARGET = 0.25


@dataclass
class Bench:
    """What the rounds share, and every service whose containers and images must go."""

    scratch: Path
    registry: str
    home: Any = field(repr=False)
    client: Any = field(repr=False)
    services: list[str] = field(default_factory=list)

    def wheelhouse(self) -> Path:
        """The template's wheelhouse, as the flow fetches and caches it (untimed)."""
        from blocks import DeployTarget
        from tasks.wheelhouse import WHEELHOUSE, prepare_wheelhouse
        from testkit.delivery import BASE_IMAGE

        context = self.scratch / "wheelhouse-context"
        if not (context / WHEELHOUSE).is_dir():
            context.mkdir(exist_ok=True)
            _, source = self.new_service("wheels", 8080)
            (context / "requirements.txt").write_text((source / "requirements.txt").read_text())
            prepare_wheelhouse(
                self.client,
                context,
                base_image=BASE_IMAGE,
                target=DeployTarget(),
                cache=self.home.wheelhouses,
            )
        return context / WHEELHOUSE

    def new_service(self, kind: str, port: int) -> tuple[str, Path]:
        """A new service name (so its layers are not cached) and its rendered source."""
        from testkit.delivery import render_source

        name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        self.services.append(name)
        return name, render_source(self.scratch / name / "source", name, port)

    def remove_all(self) -> None:
        from testkit.delivery import remove_service_containers, remove_service_images

        for name in self.services:
            try:
                remove_service_containers(self.client, name)
                remove_service_images(self.client, f"{self.registry}/{name}")
            except Exception as e:  # keep cleaning the others
                print(f"warning: could not clean up {name}: {e}", file=sys.stderr)


def plain_first_build(bench: Bench) -> Timing:
    """The baseline: the plain script from a pushed commit to a healthy container."""
    from blocks import DeployTarget, GitServer
    from tasks.git import create_repository, publish_directory, repository_url
    from testkit.delivery import BASE_IMAGE, REGISTRY_LOGIN
    from testkit.platform import free_port

    port = free_port()
    name, source = bench.new_service("plain", port)
    server = GitServer.load_default()
    create_repository(server, name)
    sha = publish_directory(server, name, source, message="Initial commit")
    job = PlainDelivery(
        repository=repository_url(server, name),
        sha=sha,
        tag=f"{bench.registry}/{name}:{sha}",
        base_image=BASE_IMAGE,
        service=name,
        port=port,
        work=Path(tempfile.mkdtemp(prefix="plain-", dir=bench.scratch / name)),
        wheelhouse=bench.wheelhouse(),
        docker_host=DeployTarget().docker_host,
        docker_config=docker_login(bench.registry, REGISTRY_LOGIN, bench.scratch / "docker-config"),
    )
    return plain_delivery(job, began=time.monotonic(), timeout=HEALTH_TIMEOUT)


def platform_builds(bench: Bench, *, rebuild: bool = True) -> list[Timing]:
    """build-test-deploy of a new service's first commit, of a docs-only commit, and of it again."""
    from blocks import GitServer
    from tasks.git import head_commit, publish_directory
    from testkit.delivery import catalogue_service
    from testkit.platform import free_port

    ports = {"dev": free_port(), "staging": free_port(), "prod": free_port()}
    name, source = bench.new_service("slip", ports["dev"])
    catalogue_service(bench.home, name, source, ports)
    server = GitServer.load_default()
    first = timed_deploy(name, str(head_commit(server, name)), ports["dev"])
    if not rebuild:
        return [first]
    docs_only = bench.scratch / name / "docs-only"
    shutil.copytree(source, docs_only)
    with (docs_only / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nA line of documentation, which no layer of the image contains.\n")
    sha = publish_directory(server, name, docs_only, message="Docs only")
    docs = timed_deploy(name, sha, ports["dev"])
    time.sleep(1.1)  # a new build time label, as any later rebuild has
    return [first, docs, timed_deploy(name, sha, ports["dev"], outcome="unchanged")]


def timed_deploy(service: str, sha: str, port: int, *, outcome: str = "succeeded") -> Timing:
    """build-test-deploy of ``sha``: until the service answers with it, and until the flow returns.

    An ``unchanged`` run finds ``sha`` serving already; it is healthy when it returns.
    """
    from flows.delivery import build_test_deploy

    began = time.monotonic()
    watch = HealthWatch(port, sha, began) if outcome == "succeeded" else None
    record = build_test_deploy(ServiceName(service), GitSha(sha), GitRef(REF), triggered_by="bench")
    seconds = time.monotonic() - began
    if record.outcome != outcome:
        raise SystemExit(
            f"build-test-deploy of {service} {sha[:12]} did not end {outcome}: {record}"
        )
    check_serving(port, sha)
    return Timing(watch.seconds() if watch else seconds, seconds)


@contextmanager
def platform(scratch: Path) -> Iterator[Bench]:
    """A Prefect test server, a registry and the platform's blocks; cleans every service up."""
    from prefect.testing.utilities import prefect_test_harness

    from blocks import DEFAULT_DOCUMENT, DeployTarget, PlatformSettings, register_block_types
    from deployments.components import registry_binary
    from tasks.containers import docker_client
    from testkit.delivery import BASE_IMAGE, configure_delivery, running_registry

    if registry_binary() is None:
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
    client = docker_client(DeployTarget(), timeout=120)
    try:
        client.images.get(BASE_IMAGE)
    except Exception as e:
        raise SystemExit(f"base image {BASE_IMAGE} is not on the engine: {e}") from e
    with ExitStack() as stack:
        registry = stack.enter_context(running_registry(scratch / "registry"))
        stack.enter_context(prefect_test_harness(server_startup_timeout=180))
        register_block_types()
        home = configure_delivery(scratch, registry)
        PlatformSettings(base_image=BASE_IMAGE, health_timeout_seconds=HEALTH_TIMEOUT).save(
            DEFAULT_DOCUMENT, overwrite=True
        )
        os.environ["SLIPWAY_HOME"] = str(home.root)
        bench = Bench(scratch, registry, home, client)
        stack.callback(bench.remove_all)
        yield bench


def report(rows: dict[str, list[Timing]], runs: int) -> None:
    print(f"delivery lead time, median of {runs} runs (seconds)")
    print(f"  {'':<38} {'to healthy':>10} {'returned':>9}   to healthy, each run")
    healthy: dict[str, float] = {}
    finished: dict[str, float] = {}
    for key, timings in rows.items():
        healthy[key] = statistics.median(t.healthy for t in timings)
        finished[key] = statistics.median(t.finished for t in timings)
        each = ", ".join(f"{t.healthy:.2f}" for t in timings)
        print(f"  {key:<38} {healthy[key]:10.2f} {finished[key]:9.2f}   {each}")
    plain, first, docs, _ = healthy.values()
    plain_end, first_end, docs_end, rebuild_end = finished.values()
    overhead, cache = first / plain, rebuild_end / first_end
    verdict = "ok" if overhead <= OVERHEAD_TARGET else "OVER TARGET"
    print(
        f"  platform overhead: build-test-deploy / plain script = {overhead:.2f}x to healthy "
        f"({first_end / plain_end:.2f}x to return); target <= {OVERHEAD_TARGET:.1f}x: {verdict}"
    )
    verdict = "ok" if cache <= REBUILD_TARGET else "OVER TARGET"
    print(
        f"  no-change rebuild / first build = {cache:.0%} to return; "
        f"target <= {REBUILD_TARGET:.0%}: {verdict}"
    )
    print(
        f"  docs-only commit / first build = {docs / first:.0%} to healthy "
        f"({docs_end / first_end:.0%} to return)"
    )


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every clean-up below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # Loopback only: the temporary server must not try to send telemetry.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("SLIPWAY_BASE_IMAGE", "local/python-base:bookworm")
    signal.signal(signal.SIGTERM, _terminate)
    rows: dict[str, list[Timing]] = {
        "plain script, first build": [],
        "build-test-deploy, first build": [],
        "build-test-deploy, docs-only commit": [],
        "build-test-deploy, no-change rebuild": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-delivery-") as tmp,
        platform(Path(tmp)) as bench,
    ):
        note("warm-up (untimed): one build-test-deploy, pushing the base layers")
        platform_builds(bench, rebuild=False)
        for run in range(args.runs):
            note(f"run {run + 1} of {args.runs}")
            if run % 2 == 0:
                rows["plain script, first build"].append(plain_first_build(bench))
            first, docs, rebuild = platform_builds(bench)
            rows["build-test-deploy, first build"].append(first)
            rows["build-test-deploy, docs-only commit"].append(docs)
            rows["build-test-deploy, no-change rebuild"].append(rebuild)
            if run % 2 == 1:
                rows["plain script, first build"].append(plain_first_build(bench))
    report(rows, args.runs)


if __name__ == "__main__":
    main()
