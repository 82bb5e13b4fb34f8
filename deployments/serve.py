"""Turn prefect.yaml into Prefect deployments: served here, or applied to the work pool.

prefect.yaml stays the single place where deployments are declared. This
module reads it with Prefect's own model, in one of two ways:

- **Embedded default** (``python -m deployments.serve --project DIR``): one
  runner process serves every deployment from the checkout.
- **Scale-out**: `runner_deployments` with ``pool_steps`` gives the same
  deployments aimed at the ``slipway`` process work pool, with prefect.yaml's
  ``pull`` steps; `deployments.pool` applies them, and workers on any number
  of hosts run them.

Schedules, triggers and concurrency limits are converted the same way in
both, so they behave identically.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deployments.project import DeploymentSpec, read_project
from slipway.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow
    from prefect.runner import Runner

    from deployments.startup import RegistrationProgress

__all__ = [
    "DeclaredDeployment",
    "PullSteps",
    "declared_deployments",
    "main",
    "pull_steps",
    "runner_deployments",
]

logger = logging.getLogger(__name__)

RUN_POLL_SECONDS = 2.0
"""How often the embedded runner asks Prefect for runs to start, as a backstop.

The runner asks at once when the server says a run was scheduled, and every
0.25 s while that subscription is not open
(`slipway.prefect_patches.runner_wakeup`); this poll only starts a run whose
event was lost while subscribed. Polling is paid while idle and during every
build on the same cores: at 0.25 s it took some 4% of a core in Prefect's
server alone (the query, the deployments it marks ready, the request
handling), and a push's run no longer waited for it. The runner's
``query_seconds`` takes fractions; Prefect's setting
(``PREFECT_RUNNER_POLL_FREQUENCY``) whole seconds only.
"""


@dataclass(frozen=True)
class DeclaredDeployment:
    """A deployment as prefect.yaml declares it."""

    name: str
    """Deployment name, e.g. ``onboard-service``."""
    entrypoint: str
    """``path/to/module.py:flow_function``, relative to the project directory."""
    config: DeploymentSpec
    """The parsed entry."""


def declared_deployments(project_dir: Path) -> list[DeclaredDeployment]:
    """Parse prefect.yaml, refusing entries that could not be served."""
    return [
        DeclaredDeployment(spec.name, spec.entrypoint, spec)
        for spec in read_project(project_dir).deployments
    ]


def _served(project_dir: Path) -> list[tuple[Flow[..., Any], dict[str, Any], DeclaredDeployment]]:
    """Each declared deployment's flow and the options `Flow.to_deployment` takes for it."""
    result = []
    for declared in declared_deployments(project_dir):
        config = declared.config
        flow = _load_flow(project_dir, declared.entrypoint)
        options = {
            "name": declared.name,
            "description": config.description,
            "tags": list(config.tags),
            "version": config.version,
            "parameters": dict(config.parameters),
            "schedules": [s.to_schedule() for s in config.schedules],
            "triggers": config.deployment_triggers(),
            "concurrency_limit": config.concurrency(),
            "paused": False,  # the runner pauses schedules on shutdown; resume on start
        }
        result.append((flow, options, declared))
    return result


@dataclass(frozen=True)
class PullSteps:
    """Storage that is nothing but prefect.yaml's ``pull`` steps, for deployments workers run.

    Implements the public `prefect.runner.storage.RunnerStorage` protocol: the
    steps are what Prefect records on the deployment, and workers run them
    before each flow run; nothing is pulled on this host.
    """

    steps: tuple[dict[str, Any], ...]

    def set_base_path(self, path: Path) -> None:
        """Nothing to place: the steps clone on the worker."""

    @property
    def pull_interval(self) -> int | None:
        """Never pulled here."""
        return None

    @property
    def destination(self) -> Path:
        """Where the code would be on this host: the working directory."""
        return Path.cwd()

    async def pull_code(self) -> None:
        """Nothing to pull on this host."""

    def to_pull_step(self) -> list[dict[str, Any]]:
        """The steps, as Prefect records them on the deployment."""
        return [dict(step) for step in self.steps]


def runner_deployments(
    project_dir: Path, *, pool_steps: list[dict[str, Any]]
) -> list[RunnerDeployment]:
    """Each declared deployment aimed at its work pool, for workers to run.

    Args:
        project_dir: The checkout holding prefect.yaml.
        pool_steps: The pull steps of deployments that declare none of their
            own (see `pull_steps`).
    """
    result = []
    for flow, options, declared in _served(project_dir):
        pool = declared.config.work_pool
        deployment = cast(
            "RunnerDeployment",
            flow.to_deployment(
                **options,
                work_pool_name=(pool.name if pool else None) or "slipway",
                job_variables=dict(pool.job_variables) if pool else None,
            ),
        )
        deployment.entrypoint = declared.entrypoint  # relative to the clone's root
        steps = declared.config.pull_steps() or pool_steps
        deployment.storage = PullSteps(tuple(steps))
        result.append(deployment)
    return result


def pull_steps(project_dir: Path) -> list[dict[str, Any]]:
    """prefect.yaml's top-level ``pull`` steps, which workers run before each flow run.

    Raises:
        ConfigurationError: there are none, so workers would have no code to run.
    """
    steps = read_project(project_dir).pull_steps()
    if not steps:
        raise ConfigurationError(
            f"{project_dir / 'prefect.yaml'} has no `pull:` steps, so workers cannot get the code",
            hint="add the git_clone pull step of Slipway's own prefect.yaml "
            "(docs/operations/scale-out.md)",
        )
    return steps


def _load_flow(project_dir: Path, entrypoint: str) -> Flow[..., Any]:
    """The flow an entrypoint names, imported as a module of the project.

    Imported by module name, not executed from its file path, so the flow
    pickles by reference: a run's process imports the real module (already
    preloaded in the forkserver), with every name its annotations use.
    """
    import importlib
    import sys

    from prefect.flows import Flow

    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    module_name = _module(entrypoint)
    function = entrypoint.rpartition(":")[2]
    try:
        found = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(
            f"prefect.yaml names {entrypoint}, which cannot be imported from {project_dir}: {e}",
            hint="give `entrypoint` as path/to/module.py:flow_function relative to prefect.yaml",
        ) from e
    if not isinstance(found, Flow):
        raise ConfigurationError(
            f"{entrypoint} is not a Prefect flow", hint="decorate the function with @flow"
        )
    return found


def _module(entrypoint: str) -> str:
    """``flows/delivery.py:build_test_deploy`` -> ``flows.delivery``."""
    return Path(entrypoint.partition(":")[0]).with_suffix("").as_posix().replace("/", ".")


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; runs start when scheduled, else at the `RUN_POLL_SECONDS` poll.

    Under `slipway up` it waits until every other component answers
    (`deployments.startup.wait_for_gate`), then imports Prefect and the flows
    and registers the deployments several at a time, with progress in the
    registration record.
    """
    parser = argparse.ArgumentParser(prog="python -m deployments.serve")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    project_dir: Path = args.project.resolve()

    from deployments.startup import RegistrationProgress, wait_for_gate
    from slipway.errors import SlipwayError

    progress = RegistrationProgress.of_child()
    try:
        # Nothing of Prefect before the gate: importing it (1 s of CPU) and every
        # flow (seconds more), done beside Prefect's start, slowed the server on 2
        # cores by as much as it saved. A restarted runner finds the gate open.
        wait_for_gate("ready")
        if progress is not None:
            progress.begin(len(declared_deployments(project_dir)))
        _serve(project_dir, progress)
    except KeyboardInterrupt:
        print("shutting down", flush=True)
    except Exception as e:
        if progress is not None:
            hint = _HINT.format(project_dir)
            if isinstance(e, SlipwayError):
                cause, hint = e.message, e.hint or hint
            else:
                cause = f"{type(e).__name__}: {e}"
            progress.fail(f"the deployment runner failed: {cause}", hint)
        raise


def _serve(project_dir: Path, progress: RegistrationProgress | None) -> None:
    """Import the flows, register their deployments and serve them until SIGTERM."""
    import asyncio
    import os

    from prefect.exceptions import TerminationSignal

    from slipway.prefect_patches import apply_runner_patches
    from slipway.prefect_patches.forkserver import use_forkserver

    try:
        _ship_logs()
        os.chdir(project_dir)  # entrypoints are relative to the project
        served = _served(project_dir)
        modules = sorted({_module(declared.entrypoint) for _, _, declared in served})
        apply_runner_patches()
        if use_forkserver(modules):
            print(f"flow runs fork from a server that preloaded {', '.join(modules)}", flush=True)
        asyncio.run(_register_and_serve(served, project_dir, progress))
    except TerminationSignal:
        print("shutting down", flush=True)


_HINT = (
    "see logs/deployments.log; fix {0}/prefect.yaml or the flow it names "
    "(the supervisor restarts the runner a few times on its own)"
)
_REGISTERING_AT_ONCE = 4
"""Deployments registered at the same time: each is a few API round trips."""


async def _register_and_serve(
    served: list[tuple[Flow[..., Any], dict[str, Any], DeclaredDeployment]],
    project_dir: Path,
    progress: RegistrationProgress | None,
) -> None:
    """Register every deployment with the runner, then serve them until stopped.

    Raises:
        Exception: a deployment could not be registered; the record says which and why.
    """
    import asyncio

    from prefect.runner import Runner

    # add_flow, not add_deployment: the runner keeps the flow object and starts
    # each run from it (in a forked child) instead of re-importing the code.
    runner = Runner(pause_on_shutdown=True, query_seconds=RUN_POLL_SECONDS)
    slots = asyncio.Semaphore(_REGISTERING_AT_ONCE)

    async def register(flow: Flow[..., Any], options: dict[str, Any]) -> None:
        async with slots:
            try:
                await runner.aadd_flow(flow, **options)
            except Exception as e:
                if progress is not None:
                    error = f"registering deployment {options['name']} failed: {e}"
                    progress.fail(error, _HINT.format(project_dir))
                raise
        if progress is not None:
            progress.advance()

    async with asyncio.TaskGroup() as group:
        for flow, options, _ in served:
            group.create_task(register(flow, options))
    if progress is not None:
        progress.finish()
    print(f"serving {len(served)} deployments from {project_dir}", flush=True)
    await _serve_woken(runner)


async def _serve_woken(runner: Runner) -> None:
    """Run the runner until it stops, woken at once when a run is scheduled (`runner_wakeup`)."""
    import asyncio

    from slipway.prefect_patches.runner_wakeup import wake_on_scheduled

    waking = asyncio.create_task(wake_on_scheduled(runner))
    try:
        await runner.start()
    finally:
        waking.cancel()


def _ship_logs() -> None:
    """Ship the runner's and its flow runs' logs to the team's OTLP collector, if one is set."""
    from blocks.monitoring import MonitoringSettings
    from slipway.errors import SlipwayError
    from tasks.monitoring.otlp import ship_logs

    try:
        ship_logs(MonitoringSettings.load_default(), component="slipway-flows")
    except SlipwayError as e:
        logger.warning("platform logs are not shipped to OTLP: %s", e)


if __name__ == "__main__":
    main()
