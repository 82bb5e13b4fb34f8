"""`slipway up` is ready when its components answer; deployments register after, visibly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.deployments.conftest import Up, api_post

_SLOW_FLOW = """\
import os
import time
from pathlib import Path

from prefect import flow

# The runner imports this before it registers anything: the test holds it here.
_release = Path(os.environ["SLIPWAY_TEST_RELEASE"])
while not _release.exists():
    time.sleep(0.05)


@flow
def hello() -> str:
    return "hello"
"""

# Defines its flow, so `up` starts (it parses entrypoints, never imports them), but fails
# as the runner imports it.
_BROKEN_FLOW = """\
raise ImportError("this flow module cannot be imported: broken on purpose")


def hello() -> str:
    return "never reached"
"""


def _project(root: Path, module: str, source: str) -> Path:
    """A checkout with one flow and a prefect.yaml that declares it, as `--project` takes."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "hello.py").write_text(source)
    (root / "prefect.yaml").write_text(
        "name: startup-test\n"
        "deployments:\n"
        f"  - name: {module}-hello\n"
        f"    entrypoint: {module}/hello.py:hello\n"
    )
    return root


def _line(up: Up, name: str) -> str:
    status = up.cli("status")
    return next(x for x in status.stdout.splitlines() if x.startswith(f"  {name} "))


def _wait_for_output(up: Up, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up._drain()
        found = next((line for line in up.output if text in line), None)
        if found is not None:
            return found
        assert up.process is not None and up.process.poll() is None, "".join(up.output)
        time.sleep(0.1)
    raise AssertionError(f"`up` never printed {text!r}:\n{''.join(up.output)}")


def test_up_is_ready_while_deployments_register_and_reports_when_they_are(make_up, tmp_path):
    release = tmp_path / "release"
    project = _project(tmp_path / "project", "slowflows", _SLOW_FLOW)
    up = make_up(extra_env={"SLIPWAY_TEST_RELEASE": str(release)}, args=["--project", str(project)])
    up.start(registered=False)

    # Ready with the runner still held before registering: every component answers.
    ready = next(line for line in up.output if "Slipway is up" in line)
    assert "still starting: deployments" in ready, ready
    assert not any("deployments: registered" in line for line in up.output), up.output
    line = _line(up, "deployments")
    assert "starting" in line.split() and "registering: 0 of 1" in line, line
    for name in ("prefect", "docs", "bridge", "monitor"):
        assert "healthy" in _line(up, name).split(), name
    assert up.cli("status").returncode == 1  # not all healthy yet
    record = json.loads((up.home / "run" / "registration.json").read_text())
    assert record["state"] == "registering" and record["total"] == 1
    # Pushes wait in the bridge until the triggers exist; the bridge still answers.
    bridge = httpx.get(f"http://127.0.0.1:{up.ports['bridge']}/healthz", timeout=5)
    assert bridge.is_success

    release.touch()
    done = _wait_for_output(up, "deployments: registered")
    assert "registered 1 in" in done, done
    line = _line(up, "deployments")
    assert "healthy" in line.split() and "1 served" in line, line
    found = api_post(
        up, "/deployments/filter", {"deployments": {"name": {"any_": ["slowflows-hello"]}}}
    )
    assert [d["name"] for d in found.json()] == ["slowflows-hello"]
    # up's own Prefect client talked to up's server, never to a temporary one of its own.
    assert "Starting temporary server" not in "".join(up.output), up.output
    timeline = (up.home / "logs" / "startup.log").read_text()
    for step in ("prefect answers", "gate open", "every component answers", "registered 1"):
        assert step in timeline, timeline
    # Monitoring's configs are written, and its parts started, before the children read the blocks.
    steps = [line.split(" s  ", 1)[1] for line in timeline.splitlines()[1:]]
    gate = steps.index("gate open: the children read the blocks now")
    assert steps.index("monitoring configs set up") < gate, timeline
    up.down()


def test_failed_registration_is_reported_by_up_and_shown_by_status(make_up, tmp_path):
    project = _project(tmp_path / "project", "brokenflows", _BROKEN_FLOW)
    up = make_up(args=["--project", str(project)])
    up.launch()
    failed = _wait_for_output(up, "deployments: registration FAILED")
    assert "brokenflows/hello.py:hello" in failed and "broken on purpose" in failed, failed
    assert "Fix: give `entrypoint` as path/to/module.py:flow_function" in failed, failed
    _wait_for_output(up, "Slipway is up")
    line = _line(up, "deployments")
    assert "UNHEALTHY" in line and "FAILED" in line and "broken on purpose" in line, line
    assert up.cli("status").returncode == 1
    up.down()
