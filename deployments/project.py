"""prefect.yaml as Slipway reads it: Prefect's deployment format, turned into public Prefect objects.

prefect.yaml stays the one place where deployments are declared, in the
format ``prefect deploy`` reads. Prefect's own parser for it is private
(``prefect.cli.deploy._*``), so this module reads the keys Slipway uses into
typed values and turns them into what Prefect's public API takes:
`prefect.schedules.Schedule`, the trigger types of `prefect.events`, and
`ConcurrencyLimitConfig`. A key Slipway does not serve (``build``, ``push``)
is ignored, as ``prefect deploy`` would read it; a malformed value is refused.

Reading is in two stages. `check_project` needs no Prefect: the YAML, the
shape of every entry, unique names, timezones and that each entrypoint's file
defines its function. `slipway up` runs it before it starts or writes
anything, since importing Prefect there would fix Prefect's settings before
`up` points them at its server and cost a second before the server starts.
`read_project` adds what only Prefect's own models can check (triggers, cron
and RRULE strings); the runner, the pool and `up` read it once Prefect runs.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    "check_project",
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

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        """The names Prefect accepts (`prefect.types._datetime.get_timezones`), read the same way."""
        if value and value not in _timezones():  # Prefect reads "" as none too
            raise ValueError(f"unknown timezone {value!r}: give an IANA name such as Europe/Berlin")
        return value

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


@functools.cache
def _timezones() -> frozenset[str]:
    """Every IANA name this host knows; read once, since it lists a directory tree."""
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


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

    @model_validator(mode="after")
    def _unique_names(self) -> ProjectSpec:
        """One name, one deployment: a second entry would silently replace the first."""
        twice = sorted(n for n, k in Counter(d.name for d in self.deployments).items() if k > 1)
        if twice:
            raise ValueError(f"deployment names must be unique; declared more than once: {twice}")
        return self


def _steps(pull: list[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]]:
    """``pull`` (one step, a list of them, or none) as a list."""
    return [pull] if isinstance(pull, dict) else list(pull or [])


def check_project(project_dir: Path) -> ProjectSpec:
    """Read ``project_dir/prefect.yaml`` and check all that needs no Prefect, for `slipway up`.

    Raises:
        ConfigurationError: naming the file, the deployment and the problem: the
            file is missing or not YAML, an entry is malformed (no ``name`` or
            ``entrypoint``, a wrong type, a schedule of no or two kinds, an
            unknown timezone), two entries share a name, or an entrypoint's file
            is missing or defines no such function.
    """
    path = project_dir / "prefect.yaml"
    try:
        with path.open(encoding="utf-8") as stream:
            raw = yaml.load(stream, Loader=_SAFE_LOADER)  # noqa: S506  # nosec B506 - safe
        project = ProjectSpec.model_validate(raw or {})
    except (OSError, yaml.YAMLError) as e:
        raise _unreadable(path, str(e)) from e  # YAML's positions on one line, as the CLI prints
    except ValidationError as e:
        raise _unreadable(path, _problems(raw, e)) from e
    for deployment in project.deployments:
        _check_entrypoint(path, deployment)
    return project


def read_project(project_dir: Path) -> ProjectSpec:
    """`check_project`, then what Prefect's own models refuse: triggers, cron and RRULE strings.

    Imports Prefect (a second of CPU): `slipway up` calls it only once its
    server is starting, after `check_project` passed.

    Raises:
        ConfigurationError: as `check_project`, or a trigger or schedule Prefect refuses.
    """
    project = check_project(project_dir)
    for deployment in project.deployments:
        try:
            deployment.deployment_triggers()  # refuse a malformed trigger before serving
            for schedule in deployment.schedules:
                schedule.to_schedule()
        except ValueError as e:  # pydantic's ValidationError too
            path = project_dir / "prefect.yaml"
            raise _unreadable(path, f"deployment {deployment.name!r}: {e}") from e
    return project


_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it: 7x faster than the pure-Python one."""
_HINT = (
    "fix that entry of prefect.yaml (every deployment needs a unique `name` and an "
    "`entrypoint` path/to/module.py:flow_function; `prefect deploy --help` documents the format)"
)


def _unreadable(path: Path, problem: str) -> ConfigurationError:
    """The error for a prefect.yaml that cannot be served, ``problem`` on one line."""
    return ConfigurationError(
        f"cannot read deployments from {path}: {' '.join(problem.split())}", hint=_HINT
    )


def _problems(raw: object, error: ValidationError) -> str:
    """Pydantic's errors, each under the name of the deployment it is about."""
    entries = raw.get("deployments") if isinstance(raw, dict) else None
    found = []
    for problem in error.errors():
        where = [str(part) for part in problem["loc"]]
        if len(where) >= 2 and where[0] == "deployments" and isinstance(problem["loc"][1], int):
            index = problem["loc"][1]
            entry = entries[index] if isinstance(entries, list) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"deployment {name!r}" if name else f"deployment #{index + 1}"
            where = [label, ".".join(where[2:])] if where[2:] else [label]
        message = problem["msg"].removeprefix("Value error, ")
        found.append(f"{', '.join(where)}: {message}" if where else message)
    return "; ".join(found)


def _check_entrypoint(path: Path, deployment: DeploymentSpec) -> None:
    """Refuse an entrypoint whose file is missing or does not define its function.

    Parsed, not imported: importing every flow takes seconds and Prefect;
    an error raised only by running a module still shows at registration.
    """
    file, _, function = deployment.entrypoint.partition(":")
    source = path.parent / file

    def refuse(problem: str) -> ConfigurationError:
        return ConfigurationError(
            f"{path}: deployment {deployment.name!r}: entrypoint {deployment.entrypoint} {problem}",
            hint="give `entrypoint` as path/to/module.py:flow_function relative to prefect.yaml",
        )

    if not file.endswith(".py") or not function.isidentifier():
        raise refuse("is not path/to/module.py:flow_function")
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except OSError as e:
        raise refuse(f"names {source}, which cannot be read ({e.strerror})") from e
    except (SyntaxError, ValueError) as e:
        raise refuse(f"names {source}, which is not valid Python: {e}") from e
    names = _top_level_names(tree.body)
    if names is not None and function not in names:
        raise refuse(f"names {function}, which {file} does not define")


def _top_level_names(body: list[ast.stmt]) -> set[str] | None:
    """The names a module binds at its top level; None when a star import makes it unknowable."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names |= {(a.asname or a.name).partition(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:  # if/try/with/for at top level bind in the module too
            handlers = [h.body for h in getattr(node, "handlers", [])]
            nested = [getattr(node, f, []) for f in ("body", "orelse", "finalbody")] + handlers
            for block in nested:
                inner = _top_level_names([s for s in block if isinstance(s, ast.stmt)])
                if inner is None:
                    return None
                names |= inner
    return names
