"""Scorecards as data: checks read from YAML, evaluated against each service's facts, in levels.

After Backstage's Tech Insights and Port's scorecards: a *fact* is a value
the platform knows about a service (how many members its team has, whether
its docs are fresh, its open HIGH findings, its lead time...), gathered by
`tasks.insights.facts`; a *check* compares one fact with a threshold; a
*level* (bronze, silver, gold) is reached when every check of it and of
each level below passes. The checks live in ``tasks/insights/scorecards.yaml``, so a
platform team changes the bar without touching code.

A check whose fact is missing or whose source is not set up does not pass,
and says so ("no data", "not configured"): a level is only ever earned.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slipway.errors import ConfigurationError
from tasks.insights.dora import WINDOWS

__all__ = [
    "DEFAULT_SCORECARDS",
    "DORA_METRICS",
    "FACTS",
    "LEVEL_CHANGED_EVENT",
    "Check",
    "CheckResult",
    "Fact",
    "Scorecard",
    "ScorecardSpec",
    "evaluate",
    "load_spec",
]

DEFAULT_SCORECARDS = Path(__file__).with_name("scorecards.yaml")
"""The checks Slipway ships."""
LEVEL_CHANGED_EVENT = "slipway.scorecard.level-changed"
"""Emitted on ``slipway.service.<name>`` when an evaluation moves a service's level."""

DORA_METRICS = {
    "lead_time_hours": "median commit-to-prod time in hours",
    "change_failure_rate": "share of changes to prod that failed (0 to 1)",
    "deployments_per_week": "deployments to prod per week",
    "recovery_hours": "median failed deployment recovery time in hours",
    "rework_rate": "share of releases that were rollbacks or fix-forwards (0 to 1)",
}
FACTS: dict[str, str] = {
    "owner_group_members": "members of the owning Group; 0 when the catalog has no such group",
    "docs_freshness": "fresh, behind, stale, missing or unknown",
    "tests_on_last_build": "test cases the last build-test-deploy ran",
    "open_high_critical_findings": "open HIGH and CRITICAL findings of the latest scan",
    "drift_status": "the worst status of the last drift check: InSync, OutOfSync or Unknown",
    "unapproved_prod_changes": "changes in prod over 90 days whose run has no approval",
    "alert_rules": "alert rules monitoring has for the service",
    **{
        f"dora_{name}_{days}d": f"{meaning}, last {days} days"
        for name, meaning in DORA_METRICS.items()
        for days in WINDOWS
    },
}
"""Every fact a check may name, with what it means."""

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in"]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda value, allowed: value in allowed,
}
Status = Literal["passed", "failed", "no-data", "not-configured"]


class Fact(BaseModel):
    """One thing known about a service, or why it is not known."""

    model_config = ConfigDict(frozen=True)

    value: Any = None
    detail: str = ""
    state: Literal["known", "no-data", "not-configured"] = "known"

    @classmethod
    def missing(cls, detail: str) -> Fact:
        """No value: nothing recorded yet (never scanned, never deployed...)."""
        return cls(detail=detail, state="no-data")

    @classmethod
    def unconfigured(cls, detail: str) -> Fact:
        """No value: the part of the platform that would know is not set up."""
        return cls(detail=detail, state="not-configured")


class Check(BaseModel):
    """One rule of the scorecard."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    level: str
    title: str
    description: str = ""
    fact: str
    operator: Operator
    value: Any

    @model_validator(mode="after")
    def _known_fact(self) -> Self:
        if self.fact not in FACTS:
            raise ValueError(f"check {self.id}: unknown fact {self.fact!r}")
        if self.operator == "in" and not isinstance(self.value, list):
            raise ValueError(f"check {self.id}: 'in' needs a list of values")
        return self

    @property
    def expected(self) -> str:
        """The rule as people read it, e.g. ``<= 168``."""
        shown = ", ".join(map(str, self.value)) if isinstance(self.value, list) else self.value
        return f"{self.operator} {shown}"


class ScorecardSpec(BaseModel):
    """The levels, lowest first, and the checks of each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: tuple[str, ...] = Field(min_length=1)
    checks: tuple[Check, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        unknown = sorted({c.level for c in self.checks} - set(self.levels))
        if unknown:
            raise ValueError(f"checks name levels that are not listed: {', '.join(unknown)}")
        ids = [c.id for c in self.checks]
        if len(ids) != len(set(ids)):
            raise ValueError("check ids must be unique")
        return self


def load_spec(path: Path | None = None) -> ScorecardSpec:
    """Read and check a scorecard file (the shipped one by default).

    Raises:
        ConfigurationError: the file is missing, not YAML, or not a scorecard.
    """
    source = path or DEFAULT_SCORECARDS
    try:
        return ScorecardSpec.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ConfigurationError(
            f"the scorecard {source} cannot be used: {e}",
            hint=f"fix the file; the facts a check may name are: {', '.join(sorted(FACTS))}",
        ) from e


class CheckResult(BaseModel):
    """How one service did on one check."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    level: str
    status: Status
    expected: str
    actual: str = ""
    detail: str = ""


class Scorecard(BaseModel):
    """One evaluation of one service, as stored, shown and compared with the last one."""

    model_config = ConfigDict(frozen=True)

    service: str
    evaluated_at: datetime
    levels: tuple[str, ...]
    level: str | None = Field(description="The highest level reached; None below the first.")
    checks: tuple[CheckResult, ...]

    @property
    def next_level(self) -> str | None:
        """The level it works towards, or None at the top."""
        index = self.levels.index(self.level) + 1 if self.level else 0
        return self.levels[index] if index < len(self.levels) else None

    def blocking(self) -> tuple[CheckResult, ...]:
        """The checks of the next level that do not pass yet."""
        return tuple(c for c in self.checks if c.level == self.next_level and c.status != "passed")


def _judge(check: Check, fact: Fact | None) -> CheckResult:
    base = {"id": check.id, "title": check.title, "level": check.level, "expected": check.expected}
    if fact is None or fact.state != "known" or fact.value is None:
        state = fact.state if fact is not None and fact.state != "known" else "no-data"
        detail = fact.detail if fact is not None else "nothing is recorded about it"
        return CheckResult(**base, status=state, detail=detail)
    try:
        passed = _COMPARE[check.operator](fact.value, check.value)
    except TypeError:
        passed = False
    status: Status = "passed" if passed else "failed"
    actual = f"{fact.value:.3g}" if isinstance(fact.value, float) else str(fact.value)
    return CheckResult(**base, status=status, actual=actual, detail=fact.detail)


def evaluate(
    spec: ScorecardSpec, service: str, facts: Mapping[str, Fact], *, now: datetime
) -> Scorecard:
    """Judge every check and find the highest level whose checks, and those below, all pass."""
    results = tuple(_judge(check, facts.get(check.fact)) for check in spec.checks)
    level = None
    for candidate in spec.levels:
        if any(r.status != "passed" for r in results if r.level == candidate):
            break
        level = candidate
    return Scorecard(
        service=service, evaluated_at=now, levels=spec.levels, level=level, checks=results
    )
