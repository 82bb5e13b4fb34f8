"""Prefect's ``Settings()`` reads its sources once per set of inputs, not on every call.

Stands in for the run-start cost of PrefectHQ/prefect#21944 that remains once
runs fork from a warm process (`forkserver`, `warm_runs`); there is no
upstream issue for it of its own.

``Settings`` is a pydantic-settings model of some 100 nested settings
classes, and each ``Settings(...)`` reads every source again for each of
them: the environment, ``.env``, ``prefect.toml`` and ``pyproject.toml`` of
the working directory, and the active profile. That is 25 ms of CPU on an
idle core here, 60-100 ms on a busy 2-core host, and every served flow run
pays it twice before its first line: `prefect.flow_engine.run_flow_in_subprocess`'s
child builds a new ``Settings()``, then hydrates the runner's serialized
settings context, which validates ``Settings(**values)`` and reads every
source again.

`apply` wraps ``Settings.__init__``: a call with the same keyword values,
the same environment, working directory and settings files as an earlier one
gets a deep copy of what that call built, instead of reading them again. The
inputs compared are everything Prefect's sources read
(``PrefectBaseSettings.settings_customise_sources``, fingerprinted):

- every environment variable whose name starts with ``PREFECT_`` in any case,
  except Prefect's own run-time variables (``PREFECT__...``, which no setting
  reads: no field name starts with ``_``), and ``HOME`` (``~/.prefect``);
- the working directory, and the inode, size and change times of its
  ``.env``, ``prefect.toml`` and ``pyproject.toml`` and of the profiles file
  (Prefect's own ``_read_toml_file`` caches on the modification time alike);
- the command line's ``--profile`` (``ProfileSettingsTomlLoader``, fingerprinted).

Anything else differing builds the settings as Prefect does. A warning a
validator gives about the settings is given when they are first built.

`prime` builds, in a warm parent that forks runs (the forkserver), what each
run's child asks for: ``Settings()`` in the environment Prefect's
``run_flow_in_subprocess`` hands the child, and ``Settings(**values)`` of the
serialized settings context; the forks start with both.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import os
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from slipway.prefect_patches.base import Patch, file_stamp

__all__ = ["PATCH", "PROFILE_PATCH", "apply", "prime"]

_UPSTREAM = "https://github.com/PrefectHQ/prefect/issues/21944"
PATCH = Patch(
    name="settings-memo",
    module="prefect.settings.base",
    qualname="PrefectBaseSettings.settings_customise_sources",
    upstream=_UPSTREAM,
    fingerprint="b998c5876dea1265",
)
PROFILE_PATCH = Patch(
    name="settings-memo-profile",
    module="prefect.settings.sources",
    qualname="ProfileSettingsTomlLoader._load_profile_settings",
    upstream=_UPSTREAM,
    fingerprint="1e057c7a0b526fc0",
)

_FILES = (".env", "prefect.toml", "pyproject.toml")
"""What Prefect's sources read from the working directory."""
_KEPT = 16
"""Settings kept; a process sees a handful of distinct inputs at most."""
_MARK = "_slipway_memo"

_Key = tuple[object, ...]


_VALUES = (Path, datetime.date, datetime.time, datetime.timedelta, enum.Enum, uuid.UUID, Decimal)
"""Types a serialized settings context holds besides JSON's: compared by type and ``repr``."""


def _json_default(value: object) -> object:
    if isinstance(value, _VALUES):
        return {f"{type(value).__module__}.{type(value).__qualname__}": repr(value)}
    if isinstance(value, set | frozenset):
        return {"set": sorted(value, key=repr)}
    raise TypeError(type(value).__name__)


def _key(values: dict[str, Any]) -> _Key | None:
    """What a ``Settings(**values)`` depends on, or None when it cannot be compared."""
    from prefect.settings.sources import _get_profiles_path

    if any(name.startswith("_") for name in values):  # pydantic-settings' own options
        return None
    try:
        given = json.dumps(values, sort_keys=True, default=_json_default)
    except (TypeError, ValueError):
        return None
    environment = tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.lower().startswith("prefect_") and not name.lower().startswith("prefect__")
        )
    )
    try:
        profiles = _get_profiles_path()
    except Exception:  # a file that does not parse: Prefect's own build says so
        return None
    return (
        given,
        environment,
        os.environ.get("HOME"),
        str(Path.cwd()),
        tuple(file_stamp(Path(name)) for name in _FILES),
        str(profiles),
        file_stamp(profiles),
        _command_line_profile(),
    )


def _command_line_profile() -> str | None:
    """The profile ``prefect --profile NAME ...`` names, read as ``ProfileSettingsTomlLoader`` does."""
    argv = sys.argv
    if argv[0].endswith("/prefect") and len(argv) >= 3 and argv[1] == "--profile":
        return argv[2]
    return None


class _Memo:
    """The settings built, by their inputs; the oldest go first."""

    def __init__(self) -> None:
        self._built: OrderedDict[_Key, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> Any | None:
        with self._lock:
            return self._built.get(key)

    def put(self, key: _Key, settings: Any) -> None:
        with self._lock:
            self._built[key] = settings
            while len(self._built) > _KEPT:
                self._built.popitem(last=False)


_MEMO = _Memo()


def _adopt(target: Any, source: Any) -> None:
    """Give ``target`` the state of ``source``, as pydantic's own ``__copy__`` does."""
    object.__setattr__(target, "__dict__", source.__dict__)
    object.__setattr__(target, "__pydantic_fields_set__", source.__pydantic_fields_set__)
    object.__setattr__(target, "__pydantic_extra__", source.__pydantic_extra__)
    object.__setattr__(target, "__pydantic_private__", source.__pydantic_private__)


def _memoized(init: Callable[..., None], settings_class: type) -> Callable[..., None]:
    @functools.wraps(init)
    def init_once(self: Any, /, **values: Any) -> None:
        key = _key(values) if type(self) is settings_class else None
        built = _MEMO.get(key) if key is not None else None
        if built is not None:
            _adopt(self, built.model_copy(deep=True))
            return
        init(self, **values)
        if key is not None:
            _MEMO.put(key, self.model_copy(deep=True))

    setattr(init_once, _MARK, True)
    return init_once


def apply() -> bool:
    """Build each set of settings once in this process (and its forks); safe to call twice.

    Returns whether it is in place (not when Prefect's settings sources changed since).
    """
    from prefect.settings import Settings

    if getattr(Settings.__init__, _MARK, False):
        return True
    if not (PATCH.applicable() and PROFILE_PATCH.applicable()):
        return False
    Settings.__init__ = _memoized(Settings.__init__, Settings)  # type: ignore[method-assign]
    return True


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prime() -> None:
    """Build what the flow runs forked from this process will ask for, so they find it built.

    As `prefect.flow_engine.run_flow_in_subprocess` does, the child's
    environment is the settings' own variables under this environment; the
    serialized settings context is this process's, as the runner's is.
    """
    from prefect.context import SettingsContext
    from prefect.settings import Settings, get_current_settings

    if not apply():
        return
    variables = get_current_settings().to_environment_variables(exclude_unset=True)
    with _environment({k: v for k, v in variables.items() if k not in os.environ}):
        Settings()
        context = SettingsContext.get()
        if context is not None:
            SettingsContext(**context.serialize())
