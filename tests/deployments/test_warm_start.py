"""`up`'s forked children: stopped by `slipway down` after any crash, never `up`'s failure."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deployments.supervisor import down
from deployments.warm_start import preload
from slipway.home import SlipwayHome
from tests.deployments.conftest import REPO, alive, slipway_env

_UP = """
import os, signal, sys
from pathlib import Path
from deployments.components import ProcessSpec
from deployments.supervisor import Supervisor, UpOptions
from slipway.api_auth import ApiAuth
from slipway.home import Ports, SlipwayHome

home = SlipwayHome(Path(sys.argv[1]))
home.ensure()
options = UpOptions(home=home, ports=Ports(), project_dir=home.root)
supervisor = Supervisor(options, "a" * 32, print, ApiAuth.generate())
argv = (sys.executable, "-m", "sleeper")
supervisor.start(ProcessSpec("sleeper", argv, "-", None, cwd=Path(sys.argv[2]), preload=("json",)))
os.kill(os.getpid(), signal.SIGKILL)  # `up` killed right after the fork
"""

_SLEEPER = (
    "import os, pathlib, time\npathlib.Path('pid').write_text(str(os.getpid()))\ntime.sleep(60)\n"
)


def test_down_stops_a_forked_child_of_an_up_killed_right_after_the_fork(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "sleeper.py").write_text(_SLEEPER)
    home = SlipwayHome(tmp_path / "home")
    argv = [sys.executable, "-c", _UP, str(home.root), str(work)]
    subprocess.run(argv, cwd=REPO, env=slipway_env(), timeout=60, check=False)
    deadline = time.monotonic() + 30
    while not (work / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((work / "pid").read_text())
    try:
        assert "forked from `up`" in (home.logs / "sleeper.log").read_text()
        assert down(home, report=lambda _: None)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_module_that_fails_to_import_is_reported_not_raised() -> None:
    try:
        failed = preload(["json", "slipway_no_such_module"])
    finally:
        gc.unfreeze()  # this test process is not forked from
    assert list(failed) == ["slipway_no_such_module"]
    assert "ModuleNotFoundError" in failed["slipway_no_such_module"]
