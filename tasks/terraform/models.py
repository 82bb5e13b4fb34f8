"""The values that Terraform commands return: plans, their summaries and outputs."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OutputValue",
    "PlanResult",
    "PlanSummary",
    "PriorState",
    "ResourceChange",
    "plan_markdown",
    "prior_state",
    "refresh_changed_nothing",
    "saved_prior_state",
    "summarize_plan",
]


@dataclass(frozen=True)
class ResourceChange:
    """What a plan does to one resource instance."""

    address: str
    """Terraform's address, e.g. ``terraform_data.environment``."""
    actions: tuple[str, ...]
    """Terraform's verbs in order: ``("update",)``, or ``("delete", "create")`` for a replace."""


@dataclass(frozen=True)
class PlanSummary:
    """Which resources a plan adds, changes and destroys, by address.

    A replacement is both an add and a destroy, which is what an approval rule
    ("does this plan destroy anything?") must see.
    """

    adds: tuple[str, ...] = ()
    """Addresses of resources that are created, including replacements."""
    changes: tuple[str, ...] = ()
    """Addresses of resources that are updated in place."""
    destroys: tuple[str, ...] = ()
    """Addresses of resources that are deleted, including replacements."""
    drift: tuple[ResourceChange, ...] = ()
    """Resources whose real object no longer matches state (refresh found it)."""

    @property
    def counts(self) -> tuple[int, int, int]:
        """``(adds, changes, destroys)``, as Terraform's "Plan:" line counts them."""
        return len(self.adds), len(self.changes), len(self.destroys)

    def describe(self) -> str:
        """One line for a log or an artifact title."""
        add, change, destroy = self.counts
        return f"{add} to add, {change} to change, {destroy} to destroy"

    def rows(self) -> list[tuple[str, str]]:
        """``(address, action)`` per resource, as a reviewer reads them; replace is one row."""
        replaced = set(self.adds) & set(self.destroys)
        found = [(a, "replace") for a in self.adds if a in replaced]
        found += [(a, "create") for a in self.adds if a not in replaced]
        found += [(a, "update") for a in self.changes]
        found += [(a, "destroy") for a in self.destroys if a not in replaced]
        return found


@dataclass(frozen=True)
class OutputValue:
    """One root-module output after an apply."""

    value: object
    """The decoded JSON value: str, int, float, bool, list or dict."""
    sensitive: bool
    """Whether the module marked it sensitive; such values must not be logged."""


@dataclass(frozen=True)
class PriorState:
    """What the state held when a plan was made (``prior_state`` of ``show -json``)."""

    resources: tuple[str, ...] = ()
    """Addresses of every managed resource in state, child modules included."""
    outputs: Mapping[str, OutputValue] = field(default_factory=dict)
    """The root module's outputs as recorded in state."""


@dataclass(frozen=True)
class PlanResult:
    """A saved plan and what it would do; apply takes exactly this file."""

    plan_file: Path
    """The binary plan that `Terraform.apply` applies; never re-planned."""
    has_changes: bool
    """``-detailed-exitcode`` said 2: changes, or drift for a refresh-only plan."""
    refresh_only: bool
    """Whether this plan only records drift instead of undoing it."""
    summary: PlanSummary
    """Per-resource adds, changes, destroys and drift, from ``show -json``."""
    prior: PriorState | None = None
    """The state that the plan started from; ``None`` when ``show`` was skipped."""


def summarize_plan(document: Mapping[str, object]) -> PlanSummary:
    """Sort the resource changes of ``terraform show -json PLAN`` into a summary."""
    adds: list[str] = []
    changes: list[str] = []
    destroys: list[str] = []
    for change in _changes(document, "resource_changes"):
        if "create" in change.actions:
            adds.append(change.address)
        if "delete" in change.actions:
            destroys.append(change.address)
        if "update" in change.actions:
            changes.append(change.address)
    drift = tuple(_changes(document, "resource_drift"))
    return PlanSummary(tuple(adds), tuple(changes), tuple(destroys), drift)


def _changes(document: Mapping[str, object], field: str) -> list[ResourceChange]:
    """The entries of one list of ``show -json``, skipping anything malformed."""
    found = []
    entries = document.get(field)
    for entry in entries if isinstance(entries, list) else []:
        change = entry.get("change") if isinstance(entry, dict) else None
        actions = change.get("actions") if isinstance(change, dict) else None
        if isinstance(actions, list):
            found.append(ResourceChange(str(entry.get("address", "")), tuple(map(str, actions))))
    return found


def prior_state(document: Mapping[str, object]) -> PriorState:
    """The resources and outputs that state held, from ``show -json PLAN``.

    An empty state has no ``prior_state`` at all, which is an empty `PriorState`.
    """
    prior = document.get("prior_state")
    values = prior.get("values") if isinstance(prior, dict) else None
    if not isinstance(values, dict):
        return PriorState()
    outputs = {
        name: OutputValue(entry.get("value"), bool(entry.get("sensitive")))
        for name, entry in (values.get("outputs") or {}).items()
        if isinstance(entry, dict)
    }
    return PriorState(tuple(_addresses(values.get("root_module"))), outputs)


def saved_prior_state(plan_file: Path) -> PriorState | None:
    """What `prior_state` reads from ``show -json``, read from the saved plan itself.

    A saved plan is a zip holding the state that the plan started from as
    ``tfstate`` (state format 4): the very state that ``show -json`` prints
    as ``prior_state``. Reading it here spares a drift check's ``show`` of an
    environment in sync. None when the file holds no such state (another
    Terraform's format): the caller then asks ``show``.
    """
    states = _saved_states(plan_file, "tfstate")
    if states is None:
        return None
    (state,) = states
    outputs = {
        name: OutputValue(entry.get("value"), bool(entry.get("sensitive")))
        for name, entry in (state.get("outputs") or {}).items()
        if isinstance(entry, dict)
    }
    found = [a for r in state.get("resources") or [] for a in _instance_addresses(r)]
    return PriorState(tuple(address for _, address in sorted(found)), outputs)


def refresh_changed_nothing(plan_file: Path) -> bool:
    """Whether a saved plan's refresh left every managed resource exactly as state had it.

    A saved plan holds the state before its refresh (``tfstate-prev``) and
    after it (``tfstate``). When their managed resources differ, a
    refresh-only plan has something to report even where a normal plan has
    nothing to do (Terraform's ``Plan.CanApply``). False when the file holds
    no such pair (another Terraform's format): the caller then asks Terraform.
    """
    states = _saved_states(plan_file, "tfstate-prev", "tfstate")
    if states is None:
        return False
    before, after = (
        [r for r in s.get("resources") or [] if isinstance(r, dict) and r.get("mode") == "managed"]
        for s in states
    )
    return before == after


def _saved_states(plan_file: Path, *names: str) -> list[dict[str, Any]] | None:
    """The states ``names`` of a saved plan (a zip), or None unless each is state format 4."""
    try:
        with zipfile.ZipFile(plan_file) as saved:
            states = [json.loads(saved.read(name)) for name in names]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if all(isinstance(s, dict) and s.get("version") == 4 for s in states):
        return states
    return None


def _instance_addresses(resource: object) -> list[tuple[str, str]]:
    """(module, address) of each object of one managed resource in a state file."""
    if not isinstance(resource, dict) or resource.get("mode") != "managed":
        return []
    module = str(resource.get("module") or "")
    base = f"{module}.{resource.get('type')}.{resource.get('name')}".lstrip(".")
    found = []
    for instance in resource.get("instances") or []:
        key = instance.get("index_key") if isinstance(instance, dict) else None
        index = "" if key is None else f"[{json.dumps(key, ensure_ascii=False)}]"
        found.append((module, base + index))
    return found


def _addresses(module: object) -> list[str]:
    if not isinstance(module, dict):
        return []
    found = [
        str(r.get("address"))
        for r in module.get("resources") or []
        if isinstance(r, dict) and r.get("mode") == "managed"
    ]
    for child in module.get("child_modules") or []:
        found += _addresses(child)
    return found


def plan_markdown(title: str, summary: PlanSummary) -> str:
    """A plan for a reviewer: what happens to each resource, destroys called out first."""
    lines = [f"# {title}", "", f"**Plan:** {summary.describe()}.", ""]
    if any(action in {"destroy", "replace"} for _, action in summary.rows()):
        lines += ["> **This plan destroys resources.** Applying it needs an approval.", ""]
    if summary.rows():
        lines += ["| Resource | Action |", "| --- | --- |"]
        lines += [f"| `{address}` | {action} |" for address, action in summary.rows()]
    else:
        lines.append("No resource changes: the environment already matches its configuration.")
    if summary.drift:
        lines += ["", "Changed outside Terraform since the last apply:", ""]
        lines += [f"- `{d.address}`: {', '.join(d.actions)}" for d in summary.drift]
    return "\n".join(lines) + "\n"
