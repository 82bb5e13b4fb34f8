"""How served flow runs start: the setting is checked, spawn leaves Prefect untouched, and a run's
process does not run its parent's main module again."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import prefect.flow_engine as engine
import pytest

from slipway.errors import ConfigurationError
from slipway.prefect_patches.forkserver import RUN_START_ENV, use_forkserver
from slipway.process import run

REPO = Path(__file__).resolve().parents[3]


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


_MAIN = """
import multiprocessing, os, sys, time
with open(os.environ["IMPORTS_LOG"], "a") as log:
    log.write(__name__ + "\\n")
if __name__ == "__main__":
    if sys.argv[1] == "patched":
        import prefect.flow_engine as engine
        from slipway.prefect_patches.forkserver import use_forkserver
        assert use_forkserver()
        context = engine.multiprocessing.get_context("spawn")  # what Prefect's engine asks for
    else:
        context = multiprocessing.get_context("forkserver")
    child = context.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    assert child.exitcode == 0
"""


@pytest.mark.parametrize("how", ["path", "module"])
def test_a_forked_run_does_not_run_its_parents_main_module_again(tmp_path, how):
    """multiprocessing runs it again in each child (as ``__mp_main__``); a run needs nothing of it."""
    (tmp_path / "parent_main.py").write_text(_MAIN)
    imports = tmp_path / "imports.log"
    env = {**os.environ, "IMPORTS_LOG": str(imports), "PYTHONPATH": str(REPO)}
    main = ["-m", "parent_main"] if how == "module" else [str(tmp_path / "parent_main.py")]
    seen = {}
    for way in ("upstream", "patched"):
        imports.unlink(missing_ok=True)
        run([sys.executable, *main, way], cwd=tmp_path, env=env, timeout=120)
        seen[way] = imports.read_text().split()

    assert seen == {"upstream": ["__main__", "__mp_main__"], "patched": ["__main__"]}
