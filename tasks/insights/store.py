"""Where DORA reports and scorecards are kept: the artifact store, next to scans and docs.

Layout (the ``_`` keeps it apart from services' own keys, which are DNS labels):

- ``_slipway/dora/component/<service>.json``: a service's `DoraReport`;
- ``_slipway/dora/group/<team>.json``: a team's, pooled over its services;
- ``_slipway/scorecards/<service>.json``: a service's latest `Scorecard`;
- ``_slipway/scorecards/levels.json``: every service's level, for lists of many.

The nightly insights flow writes them; the portal reads them, so a page
shows the last evaluation at once instead of recomputing it.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from slipway.errors import ObjectNotFound
from tasks.catalog.refs import EntityRef
from tasks.insights.dora import DoraReport
from tasks.insights.scorecards import Scorecard
from tasks.storage import ObjectStore

__all__ = [
    "Levels",
    "dora_key",
    "load_dora",
    "load_levels",
    "load_scorecard",
    "save_dora",
    "save_scorecard",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def dora_key(subject: str) -> str:
    """The key of a report on ``component:<service>`` or ``group:<team>``."""
    ref = EntityRef.parse(subject)
    return f"_slipway/dora/{ref.kind}/{ref.name}.json"


_LEVELS = "_slipway/scorecards/levels.json"


def _scorecard_key(service: str) -> str:
    return f"_slipway/scorecards/{service}.json"


class Levels(BaseModel):
    """Every service's level, so a list of a thousand services costs one read."""

    levels: dict[str, str | None] = {}


def _save(store: ObjectStore, key: str, value: BaseModel) -> None:
    store.put(key, value.model_dump_json(indent=1).encode(), content_type="application/json")


def _load(store: ObjectStore, key: str, model: type[M]) -> M | None:
    try:
        return model.model_validate_json(store.get(key))
    except ObjectNotFound:
        return None
    except ValidationError as e:
        # An old or damaged record is only out of date: the next evaluation replaces it.
        logger.warning("Ignoring the unreadable %s: %s", key, e)
        return None


def save_dora(store: ObjectStore, report: DoraReport) -> None:
    """Keep ``report`` under its subject's key, replacing the last one."""
    _save(store, dora_key(report.subject), report)


def load_dora(store: ObjectStore, subject: str) -> DoraReport | None:
    """The last report on ``subject``, or None when there is none yet."""
    return _load(store, dora_key(subject), DoraReport)


def save_scorecard(store: ObjectStore, scorecard: Scorecard) -> None:
    """Keep the service's latest evaluation, and its level in the index of all levels.

    Two evaluations ending at the same moment may both rewrite the index;
    the later one then drops the other's level until that service's next
    evaluation. Each service's own record is always right.
    """
    _save(store, _scorecard_key(scorecard.service), scorecard)
    levels = load_levels(store)
    levels.levels[scorecard.service] = scorecard.level
    _save(store, _LEVELS, levels)


def load_levels(store: ObjectStore) -> Levels:
    """Every evaluated service's level; empty before the first evaluation."""
    return _load(store, _LEVELS, Levels) or Levels()


def load_scorecard(store: ObjectStore, service: str) -> Scorecard | None:
    """The service's latest evaluation, or None before the first."""
    return _load(store, _scorecard_key(service), Scorecard)
