"""How served flow runs start: the setting is checked, and spawn leaves Prefect untouched."""

from __future__ import annotations

import multiprocessing

import prefect.flow_engine as engine
import pytest

from slipway.errors import ConfigurationError
from slipway.prefect_patches.forkserver import RUN_START_ENV, use_forkserver


def test_an_unknown_way_to_start_runs_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(RUN_START_ENV, "thread")
    with pytest.raises(ConfigurationError) as refused:
        use_forkserver()
    assert "'thread'" in refused.value.message and "forkserver" in str(refused.value.hint)
    assert engine.multiprocessing is multiprocessing


def test_spawn_keeps_prefects_own_way(monkeypatch):
    monkeypatch.setenv(RUN_START_ENV, "spawn")
    assert use_forkserver(["flows.delivery"]) is False
    assert engine.multiprocessing is multiprocessing
