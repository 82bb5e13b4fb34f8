"""What keeps `slipway up`'s start short: the runner stays off the CPU until the gate opens."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deployments.startup import RegistrationProgress, read_registration
from slipway.home import SlipwayHome
from tests.deployments.conftest import REPO, slipway_env

# Runs the runner's `main` in a thread of a fresh interpreter, waits until it
# sits in `wait_for_gate`, then says which of Prefect's modules it imported by then.
_AT_THE_GATE = """
import sys, threading, time
from deployments import serve

runner = threading.Thread(target=serve.main, args=(["--project", sys.argv[1]],), daemon=True)
runner.start()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    frame = sys._current_frames().get(runner.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    if "wait_for_gate" in names:
        break
    time.sleep(0.01)
else:
    sys.exit("the runner never reached the gate")
print(sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect.")))
"""


def test_the_runner_imports_nothing_of_prefect_before_the_ready_gate(tmp_path: Path) -> None:
    env = slipway_env(
        {
            "SLIPWAY_HOME": str(tmp_path / "home"),
            "SLIPWAY_SUPERVISOR": "b" * 32,  # as a child of `up`, whose gate is shut
        }
    )
    assert _printed(_AT_THE_GATE, env, str(REPO)) == "[]"


def _printed(script: str, env: dict[str, str], *args: str) -> str:
    """What ``script`` prints, run by a fresh interpreter in the checkout; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_runner_beginning_after_up_keeps_the_start_up_gave_the_record(tmp_path: Path) -> None:
    home = SlipwayHome(tmp_path / "home")
    home.ensure()
    marker = "c" * 32
    by_up = RegistrationProgress(home, marker)
    by_up.begin(3)
    began = by_up.current.started_at

    RegistrationProgress(home, marker).begin(3)  # the runner, once the gate opened
    found = read_registration(home, marker)
    assert found is not None and found.started_at == began and found.total == 3

    failed = RegistrationProgress(home, marker)
    failed.fail("it broke", "fix it")
    RegistrationProgress(home, marker).begin(3)  # a restarted runner tries again: a new start
    again = read_registration(home, marker)
    assert again is not None and again.started_at > began
    assert again.last_error == "it broke Fix: fix it"
    assert datetime.now(UTC) - again.started_at < timedelta(minutes=1)


def test_up_imports_no_http_client_before_prefect_s_server_starts() -> None:
    # Every module `up` imports before it starts Prefect's server delays the server's
    # answer by as much; httpx alone pulled in rich and pygments (0.06-0.15 s).
    check = (
        "import sys\n"
        "import deployments.cli, deployments.roles\n"
        "print(sorted(m for m in ('httpx', 'rich', 'deployments.serve') if m in sys.modules))\n"
    )
    assert _printed(check, slipway_env()) == "[]"
