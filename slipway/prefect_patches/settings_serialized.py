"""The runner serializes its settings once while they are unchanged, not again for every run.

Stands in for the run-start cost of PrefectHQ/prefect#21944 left in the
runner once runs fork from a warm process (`forkserver`); there is no
upstream issue for it of its own.

For every run it starts, Prefect's `prefect.flow_engine.run_flow_in_subprocess`
serializes the runner's settings twice: its settings context
(``serialize_context``, for the child to hydrate) and its settings as
environment variables (``to_environment_variables``, for the child's
environment). Both walk some 100 nested settings models through Prefect's
own serializer: about 0.1 s of the runner's CPU on an idle core, paid after
the run is Pending and before its process exists.

`apply` remembers each result by the object it was made from, and gives a
copy of it while that object is unchanged: the same settings (or context)
object, no assignment to any settings object since (each renews every
result), and the same profile. Prefect changes settings by making new ones
(``copy_with_update``, ``temporary_settings``); a list or dict inside a
settings object changed in place, which neither Prefect nor the platform
does, would not be seen.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["CONTEXT_PATCH", "PATCH", "apply"]

_UPSTREAM = "https://github.com/PrefectHQ/prefect/issues/21944"
PATCH = Patch(
    name="settings-serialized",
    module="prefect.settings.base",
    qualname="PrefectBaseSettings.to_environment_variables",
    upstream=_UPSTREAM,
    fingerprint="ce72473cf8bf019b",
)
CONTEXT_PATCH = Patch(
    name="settings-serialized-context",
    module="prefect.context",
    qualname="SettingsContext.serialize",
    upstream=_UPSTREAM,
    fingerprint="b376d2fedcc5d667",
)

_MARK = "_slipway_serialized_once"
_KEPT = 8


class _Results:
    """Results by (method, object, arguments), each with the object and what it was made under."""

    def __init__(self) -> None:
        self.generation = 0
        """How many assignments to settings objects were made; each makes every result stale."""
        self._results: OrderedDict[tuple[object, ...], tuple[object, object, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def renew(self) -> None:
        with self._lock:
            self.generation += 1

    def get(self, key: tuple[object, ...], owner: object, stamp: object) -> Any | None:
        with self._lock:
            found = self._results.get(key)
        if found is None or found[0] is not owner or found[1] != stamp:
            return None
        return copy.deepcopy(found[2])

    def put(self, key: tuple[object, ...], owner: object, stamp: object, result: Any) -> None:
        with self._lock:
            self._results[key] = (owner, stamp, copy.deepcopy(result))  # holds owner: no id reuse
            while len(self._results) > _KEPT:
                self._results.popitem(last=False)


_RESULTS = _Results()


def _profile_stamp(profile: Any) -> object:
    settings = getattr(profile, "settings", None) or {}
    items = sorted((str(k), repr(v)) for k, v in settings.items())
    return (getattr(profile, "name", None), str(getattr(profile, "source", None)), tuple(items))


def _remembered(method: Callable[..., Any], stamp: Callable[[Any], object]) -> Callable[..., Any]:
    @functools.wraps(method)
    def once(self: Any, *args: Any, **kwargs: Any) -> Any:
        key = (method.__qualname__, id(self), args, tuple(sorted(kwargs.items())))
        current = (_RESULTS.generation, stamp(self))
        found = _RESULTS.get(key, self, current)
        if found is not None:
            return found
        result = method(self, *args, **kwargs)
        _RESULTS.put(key, self, current, result)
        return result

    setattr(once, _MARK, True)
    return once


def _renewing(setattr_: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(setattr_)
    def __setattr__(self: Any, name: str, value: Any) -> None:
        _RESULTS.renew()
        setattr_(self, name, value)

    return __setattr__


def apply() -> bool:
    """Serialize unchanged settings once in this process; safe to call twice.

    Returns whether it is in place (not when Prefect's serializers changed since).
    """
    from prefect.context import SettingsContext
    from prefect.settings import Settings
    from prefect.settings.base import PrefectBaseSettings

    if getattr(Settings.to_environment_variables, _MARK, False):
        return True
    if not (PATCH.applicable() and CONTEXT_PATCH.applicable()):
        return False
    for kind in (PrefectBaseSettings, SettingsContext):
        kind.__setattr__ = _renewing(kind.__setattr__)  # type: ignore[method-assign]
        kind.__delattr__ = _renewing(kind.__delattr__)  # type: ignore[method-assign]
    # Settings only: its nested settings classes are serialized by it, within one call.
    Settings.to_environment_variables = _remembered(  # type: ignore[method-assign]
        Settings.to_environment_variables, lambda settings: None
    )
    SettingsContext.serialize = _remembered(  # type: ignore[method-assign]
        SettingsContext.serialize, lambda context: _profile_stamp(context.profile)
    )
    return True
