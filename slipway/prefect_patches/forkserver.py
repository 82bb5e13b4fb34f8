"""Served flow runs start by forking a warm interpreter, not by spawning a cold one.

Stands in for PrefectHQ/prefect#16802, which made the runner start every
served run with ``spawn`` (still so in Prefect 3.9.1).

Prefect's runner starts each served flow run in a new process made with
multiprocessing's ``spawn``: a fresh interpreter that imports Prefect and the
flow's modules before the flow's first line, 2 to 3 s of CPU on a 2-core
machine, paid by every push before its build starts. With ``forkserver``, one
server process imports them once and each run forks from it in milliseconds;
the run still gets a process of its own, with the runner's environment and
Prefect's own engine wrapper (settings, signals, cancellation) around it.

Prefect's runner calls `prefect.flow_engine.run_flow_in_subprocess`, which
asks ``multiprocessing.get_context("spawn")``. `use_forkserver` makes that one
call site get a preloaded forkserver context instead. It also makes a flow
that is a module attribute pickle by reference: the run's process takes the
flow from its (preloaded) module, with the module's globals, instead of a copy
of the function that lacks the names only its annotations use (our parameter
models, under ``from __future__ import annotations``).
A run's process also does not run the runner's main module again, as
multiprocessing does in each child so that functions defined there can be
unpickled (a run needs none: its flow and Prefect's engine come by
reference from their modules). Compiled anew in every run where there is no
bytecode cache, as on these machines, that took 35-43 ms of each run's
start, between the runner's Submitting state and the run's first request.
``SLIPWAY_RUN_START=spawn`` keeps Prefect's default, should a flow need it.
"""

from __future__ import annotations

import copyreg
import functools
import importlib
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.spawn
import os
import types
from collections.abc import Sequence
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "RUN_START_ENV", "use_forkserver"]

logger = logging.getLogger(__name__)

PATCH = Patch(
    name="forkserver",
    module="prefect.flow_engine",
    qualname="run_flow_in_subprocess",
    upstream="https://github.com/PrefectHQ/prefect/pull/16802",
    fingerprint="688246d8861d2fa9",
)

RUN_START_ENV = "SLIPWAY_RUN_START"
"""``forkserver`` (the default) or ``spawn``, Prefect's own way."""

_PRELOAD = (
    "slipway.prefect_patches.flow_run_process",
    "prefect.flow_engine",
    "prefect.runner",
    "blocks",
    "tasks.catalog",
)
"""What every run imports anyway, after the flow-run patches; the caller adds the flows' modules."""


class _ForkserverMultiprocessing(types.ModuleType):
    """`multiprocessing` as Prefect's flow engine sees it: every context is the forkserver."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        super().__init__("multiprocessing")
        self._context = context

    def get_context(self, method: str | None = None) -> multiprocessing.context.BaseContext:
        return self._context

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def _flow_from_module(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _reduce_flow(flow: Any) -> Any:
    """By reference when ``flow`` is its module's attribute of that name, else as usual."""
    module, name = getattr(flow, "__module__", None), getattr(flow, "__qualname__", "")
    if module and "." not in name:
        try:
            if getattr(importlib.import_module(module), name, None) is flow:
                return _flow_from_module, (module, name)
        except ImportError:
            pass
    return object.__reduce_ex__(flow, 4)


_MAIN_KEYS = ("init_main_from_name", "init_main_from_path")


def _without_main(prepare: Any) -> Any:
    """Multiprocessing's preparation data for a child, without this process's main module."""
    if getattr(prepare, "__slipway_patched__", False):
        return prepare

    @functools.wraps(prepare)
    def prepared(name: str) -> dict[str, Any]:
        data: dict[str, Any] = prepare(name)
        for key in _MAIN_KEYS:
            data.pop(key, None)
        return data

    prepared.__slipway_patched__ = True  # type: ignore[attr-defined]
    return prepared


def use_forkserver(modules: Sequence[str] = ()) -> bool:
    """Start this process's served flow runs from a forkserver that preloaded ``modules``.

    Returns whether it is in use: not when ``SLIPWAY_RUN_START=spawn`` or when
    this platform has no ``forkserver`` (it is POSIX-only).
    """
    import prefect.flow_engine as engine

    choice = os.environ.get(RUN_START_ENV, "forkserver").strip().lower()
    if choice == "spawn":
        logger.info("flow runs start with spawn (%s=spawn)", RUN_START_ENV)
        return False
    if choice != "forkserver":
        from slipway.errors import ConfigurationError

        raise ConfigurationError(
            f"{RUN_START_ENV}={choice!r} is not a way to start flow runs",
            hint=f"set {RUN_START_ENV} to 'forkserver' (the default) or 'spawn'",
        )
    if "forkserver" not in multiprocessing.get_all_start_methods():
        logger.info("flow runs start with spawn: this platform has no forkserver")
        return False
    if not PATCH.applicable():
        return False
    from slipway.prefect_patches.warm_server import RUN_ENGINE, third_party_imports

    context = multiprocessing.get_context("forkserver")
    # As a worker host's run starter does: the libraries the platform imports inside
    # functions (docker, ...) and Prefect's engine would otherwise load in every run.
    libraries = sorted(third_party_imports())
    context.set_forkserver_preload([*_PRELOAD, *RUN_ENGINE, *libraries, *modules])
    from prefect.flows import Flow

    copyreg.pickle(Flow, _reduce_flow)
    # This process starts no other children with multiprocessing: only the runs need this.
    multiprocessing.spawn.get_preparation_data = _without_main(
        multiprocessing.spawn.get_preparation_data
    )
    engine.multiprocessing = _ForkserverMultiprocessing(context)  # type: ignore[attr-defined]
    return True
