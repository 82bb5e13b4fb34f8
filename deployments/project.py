"""prefect.yaml as Slipway reads it: Prefect's deployment format, turned into public Prefect objects.

prefect.yaml stays the one place where deployments are declared, in the
format ``prefect deploy`` reads. Prefect's own parser for it is private
(``prefect.cli.deploy._*``), so this module reads the keys Slipway uses into
typed values and turns them into what Prefect's public API takes:
`prefect.schedules.Schedule`, the trigger types of `prefect.events`, and
`ConcurrencyLimitConfig`. A key Slipway does not serve (``build``, ``push``)
is ignored, as ``prefect deploy`` would read it; a malformed value is refused.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slipway.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentTriggerTypes
    from prefect.schedules import Schedule

__all__ = [
    "ConcurrencySpec",
    "DeploymentSpec",
    "ProjectSpec",
    "ScheduleSpec",
    "WorkPoolSpec",
    "read_project",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ScheduleSpec(_Spec):
    """One entry of a deployment's ``schedules``: a cron, an interval or an RRULE."""

    cron: str | None = None
    interval: float | None = Field(default=None, description="Seconds between runs.")
    rrule: str | None = None
    timezone: str | None = None
    day_or: bool = True
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    slug: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        kinds = [k for k in (self.cron, self.interval, self.rrule) if k is not None]
        if len(kinds) != 1:
            raise ValueError("a schedule needs exactly one of cron, interval or rrule")
        return self

    def to_schedule(self) -> Schedule:
        """The schedule as `Flow.to_deployment` takes it."""
        from prefect.schedules import Cron, Interval, RRule

        common: dict[str, Any] = {
            "timezone": self.timezone,
            "active": self.active,
            "parameters": self.parameters or None,
            "slug": self.slug,
        }
        if self.cron is not None:
            return Cron(self.cron, day_or=self.day_or, **common)
        if self.interval is not None:
            return Interval(timedelta(seconds=self.interval), **common)
        assert self.rrule is not None  # one kind, checked above
        return RRule(self.rrule, **common)


class ConcurrencySpec(_Spec):
    """A deployment's ``concurrency_limit`` in its long form."""

    limit: int
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] | None = None


class WorkPoolSpec(_Spec):
    """A deployment's ``work_pool``."""

    name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentSpec(_Spec):
    """One entry under ``deployments:``."""

    name: str
    entrypoint: str
    description: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    concurrency_limit: int | ConcurrencySpec | None = None
    work_pool: WorkPoolSpec | None = None
    pull: list[dict[str, Any]] | dict[str, Any] | None = None

    def deployment_triggers(self) -> list[DeploymentTriggerTypes]:
        """The triggers as Prefect's trigger types, each named as ``prefect deploy`` names them."""
        from prefect.events import DeploymentTriggerTypes
        from pydantic import TypeAdapter

        adapter: TypeAdapter[DeploymentTriggerTypes] = TypeAdapter(DeploymentTriggerTypes)
        return [
            adapter.validate_python({"name": f"{self.name}__automation_{i}", **spec})
            for i, spec in enumerate(self.triggers, start=1)
        ]

    def concurrency(self) -> int | ConcurrencyLimitConfig | None:
        """The concurrency limit as the runner takes it."""
        spec = self.concurrency_limit
        if spec is None or isinstance(spec, int):
            return spec
        from prefect.client.schemas.objects import ConcurrencyLimitConfig

        return ConcurrencyLimitConfig(**spec.model_dump(exclude_none=True))

    def pull_steps(self) -> list[dict[str, Any]]:
        """The deployment's own ``pull`` steps, as a list (empty when it declares none)."""
        return _steps(self.pull)


class ProjectSpec(_Spec):
    """The whole of prefect.yaml that Slipway reads."""

    name: str | None = None
    prefect_version: str | None = Field(default=None, alias="prefect-version")
    pull: list[dict[str, Any]] | dict[str, Any] | None = None
    deployments: list[DeploymentSpec] = Field(default_factory=list)

    def pull_steps(self) -> list[dict[str, Any]]:
        """The top-level ``pull`` steps, as a list."""
        return _steps(self.pull)


def _steps(pull: list[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]]:
    """``pull`` (one step, a list of them, or none) as a list."""
    return [pull] if isinstance(pull, dict) else list(pull or [])


def read_project(project_dir: Path) -> ProjectSpec:
    """Read and check ``project_dir/prefect.yaml``.

    Raises:
        ConfigurationError: the file is missing, is not YAML, or an entry is malformed
            (a deployment without ``name`` or ``entrypoint`` among them).
    """
    path = project_dir / "prefect.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
        project = ProjectSpec.model_validate(raw or {})
        for deployment in project.deployments:
            deployment.deployment_triggers()  # refuse a malformed trigger before serving
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ConfigurationError(
            f"cannot read deployments from {path}: {e}",
            hint="fix prefect.yaml: every deployment needs `name` and `entrypoint`; "
            "`prefect deploy --help` documents the format",
        ) from e
    return project
