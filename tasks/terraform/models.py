"""The values that Terraform commands return: plans, their summaries and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OutputValue", "PlanResult", "PlanSummary", "ResourceChange", "summarize_plan"]


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


@dataclass(frozen=True)
class OutputValue:
    """One root-module output after an apply."""

    value: object
    """The decoded JSON value: str, int, float, bool, list or dict."""
    sensitive: bool
    """Whether the module marked it sensitive; such values must not be logged."""


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
