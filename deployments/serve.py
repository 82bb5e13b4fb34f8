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

import yaml

from slipway.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow

__all__ = [
    "DeclaredDeployment",
    "declared_deployments",
    "main",
    "pull_steps",
    "runner_deployments",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeclaredDeployment:
    """A deployment as prefect.yaml declares it."""

    name: str
    """Deployment name, e.g. ``onboard-service``."""
    entrypoint: str
    """``path/to/module.py:flow_function``, relative to the project directory."""
    config: DeploymentConfig
    """Prefect's own parsed model of the entry."""


def _prefect_yaml(project_dir: Path) -> PrefectYamlModel:
    from prefect.cli.deploy._models import PrefectYamlModel
    from pydantic import ValidationError

    path = project_dir / "prefect.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
        return PrefectYamlModel.model_validate(raw or {})
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ConfigurationError(
            f"cannot read deployments from {path}: {e}",
            hint="fix prefect.yaml; `prefect deploy --help` documents its format",
        ) from e


def declared_deployments(project_dir: Path) -> list[DeclaredDeployment]:
    """Parse prefect.yaml with Prefect's model, refusing entries it could not serve."""
    path = project_dir / "prefect.yaml"
    model = _prefect_yaml(project_dir)
    declared = []
    for entry in model.deployments:
        if not entry.name or not entry.entrypoint:
            raise ConfigurationError(
                f"a deployment in {path} lacks `name` or `entrypoint`",
                hint="give every entry under `deployments:` both",
            )
        declared.append(DeclaredDeployment(entry.name, entry.entrypoint, entry))
    return declared


def runner_deployments(
    project_dir: Path, *, pool_steps: list[dict[str, Any]] | None = None
) -> list[RunnerDeployment]:
    """Turn each declared deployment into one the runner can serve.

    Args:
        project_dir: The checkout holding prefect.yaml.
        pool_steps: For the work pool instead: the pull steps of deployments
            that declare none of their own (see `pull_steps`).
    """
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.cli.deploy._storage import _PullStepStorage
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.flows import load_flow_from_entrypoint

    result = []
    for declared in declared_deployments(project_dir):
        config = declared.config
        flow: Flow[..., Any] = load_flow_from_entrypoint(str(project_dir / declared.entrypoint))
        pool_name, job_variables = None, None
        if pool_steps is not None:
            pool = config.work_pool
            pool_name = (pool.name if pool else None) or "slipway"
            job_variables = dict(pool.job_variables) if pool else None
        schedules = [
            _schedule_config_to_deployment_schedule(item.model_dump(exclude_none=True))
            for item in config.schedules or []
            if hasattr(item, "model_dump")
        ]
        triggers = _initialize_deployment_triggers(
            declared.name, [dict(t) for t in config.triggers or []]
        )
        deployment = cast(
            "RunnerDeployment",
            flow.to_deployment(
                name=declared.name,
                description=config.description,
                tags=list(config.tags or []),
                version=config.version,
                parameters=dict(config.parameters),
                schedules=schedules,
                triggers=list(triggers),
                concurrency_limit=_concurrency(config.concurrency_limit),
                paused=False,  # the runner pauses schedules on shutdown; resume on start
                work_pool_name=pool_name,
                job_variables=job_variables,
            ),
        )
        if pool_steps is not None:
            own = config.pull
            steps = [own] if isinstance(own, dict) else own
            deployment.entrypoint = declared.entrypoint  # relative to the clone's root
            deployment.storage = _PullStepStorage(list(steps) if steps else pool_steps)
        result.append(deployment)
    return result


def pull_steps(project_dir: Path) -> list[dict[str, Any]]:
    """prefect.yaml's top-level ``pull`` steps, which workers run before each flow run.

    Raises:
        ConfigurationError: there are none, so workers would have no code to run.
    """
    pull = _prefect_yaml(project_dir).pull
    steps = [pull] if isinstance(pull, dict) else list(pull or [])
    if not steps:
        raise ConfigurationError(
            f"{project_dir / 'prefect.yaml'} has no `pull:` steps, so workers cannot get the code",
            hint="add the git_clone pull step of Slipway's own prefect.yaml "
            "(docs/operations/scale-out.md)",
        )
    return steps


def _concurrency(spec: Any) -> Any:
    """prefect.yaml's ``concurrency_limit`` (an int or a mapping) as the runner takes it."""
    if spec is None or isinstance(spec, int):
        return spec
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    values = {k: v for k, v in spec.model_dump().items() if v is not None}
    return ConcurrencyLimitConfig(**values)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; the runner polls as PREFECT_RUNNER_POLL_FREQUENCY says."""
    parser = argparse.ArgumentParser(prog="python -m deployments.serve")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    project_dir: Path = args.project.resolve()

    import os

    from prefect import serve

    os.chdir(project_dir)  # entrypoints are relative to the project
    deployments = runner_deployments(project_dir)
    logger.info("serving %d deployments from %s", len(deployments), project_dir)
    serve(*deployments, print_starting_message=True)


if __name__ == "__main__":
    main()
