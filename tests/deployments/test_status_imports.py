"""`slipway status` imports the blocks package before its probes run side by side.

CI once printed ``systems could not be checked: _DeadlockError ...``: the
registry probe imported ``blocks.container_registry`` while the systems probe
imported ``blocks``, and the two threads took Python's import locks in
opposite orders. Whether that deadlock happens depends on timing, so the test
asserts its cause instead: no module of ``blocks`` is first imported by a
probe thread.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from deployments.state import ChildRecord, UpLock, UpState, write_state
from slipway.home import Ports, SlipwayHome

_WATCH = """
import importlib.abc, json, sys, threading
from pathlib import Path

seen = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "blocks" or name.startswith("blocks."):
            seen.append([name, threading.current_thread().name])
        return None

sys.meta_path.insert(0, Watch())
from deployments.status import collect_status
from slipway.home import SlipwayHome

lines = collect_status(SlipwayHome(Path(sys.argv[1])))
print(json.dumps({"seen": seen, "names": [line.name for line in lines]}))
"""


def test_blocks_are_imported_before_the_probe_threads_start(tmp_path: Path) -> None:
    # A bound socket that does not listen: every component's port refuses at once.
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    try:
        port = refusing.getsockname()[1]
        ports = {name: port for name in Ports().as_dict()}
        home = SlipwayHome(tmp_path / "home")
        home.run.mkdir(parents=True)
        lock = UpLock(home)  # held: the record is of a live `up`
        lock.acquire()
        write_state(
            home,
            UpState(
                supervisor_pid=os.getpid(),
                marker="test",
                started_at=datetime.now(UTC),
                ports=ports,
                project_dir=str(tmp_path),
                # A registry child: its probe imports blocks.container_registry.
                children=[ChildRecord(name="registry", pid=os.getpid(), url=f"127.0.0.1:{port}")],
            ),
        )
        done = subprocess.run(
            [sys.executable, "-c", _WATCH, str(home.root)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        lock.release()
    finally:
        refusing.close()
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "registry" in found["names"]
    assert found["seen"], "the probes imported no module of blocks: nothing was checked"
    threads = {thread for _, thread in found["seen"]}
    assert threads == {"MainThread"}, found["seen"]
