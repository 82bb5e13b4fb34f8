"""How values look on a page: times, rates, durations, shas, and links that are safe to follow.

Registered as Jinja2 filters. A URL that comes from a record or the catalog
becomes a link only when it is http(s): ``javascript:`` and friends are shown
as text, never followed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["FILTERS", "hours", "link", "rate", "when"]


def when(value: object) -> str:
    """A timestamp in UTC to the minute; ISO text is read first; anything else as is."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return "" if value is None else str(value)


def rate(value: float | None) -> str:
    """A share as a whole percentage; a dash when there is none."""
    return "\N{EN DASH}" if value is None else f"{value:.0%}"


def hours(value: float | None) -> str:
    """A duration given in hours, in the unit that reads best."""
    if value is None:
        return "\N{EN DASH}"
    if value < 1:
        return f"{value * 60:.0f} min"
    if value < 48:
        return f"{value:.1f} h"
    return f"{value / 24:.1f} d"


def link(value: object) -> str | None:
    """``value`` when it is an http(s) URL, else None: the template shows it as text."""
    text = str(value or "")
    return text if urlsplit(text).scheme in ("http", "https") else None


def short(value: object, length: int = 12) -> str:
    """The first characters of a sha or digest."""
    text = str(value or "")
    return text.removeprefix("sha256:")[:length]


def segment(value: object) -> str:
    """``value`` quoted as one path segment of a link."""
    return quote(str(value), safe="")


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when,
    "rate": rate,
    "hours": hours,
    "link": link,
    "short": short,
    "segment": segment,
}
"""The filters every template may use."""
