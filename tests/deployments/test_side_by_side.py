"""`up`'s set-up jobs: a component is probed from its start, not after the slowest job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from deployments.components import ProcessSpec
from deployments.server_setup import SideBySide
from deployments.startup import Timeline
from deployments.supervisor import Supervisor, UpOptions
from slipway.api_auth import ApiAuth
from slipway.errors import ComponentError
from slipway.home import Ports, SlipwayHome
from testkit.platform import free_port


def _supervisor(tmp_path: Path) -> tuple[Supervisor, Timeline]:
    home = SlipwayHome(tmp_path / "home")
    home.ensure()
    options = UpOptions(home=home, ports=Ports(), project_dir=home.root, startup_timeout=30)
    return Supervisor(options, "a" * 32, lambda _: None, ApiAuth.generate()), Timeline(home, 0.0)


def _web_server(port: int) -> ProcessSpec:
    argv = (sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port))
    url = f"http://127.0.0.1:{port}"
    return ProcessSpec("web", argv, url, f"{url}/", port)


def test_a_started_component_answers_while_a_slow_job_still_runs(tmp_path: Path) -> None:
    supervisor, timeline = _supervisor(tmp_path)
    side = SideBySide(supervisor, timeline)

    def slow() -> None:
        """Ends only once the web server was seen answering: never, were it probed after it."""
        deadline = time.monotonic() + 20
        while "web answers" not in timeline.path.read_text():
            if time.monotonic() > deadline:
                raise AssertionError("nobody probed the web server while this job ran")
            time.sleep(0.05)

    try:
        side.submit({"web server": lambda: [_web_server(free_port())], "slow": slow})
        side.join(answering=[])
    finally:
        side.close()
        supervisor.stop_all()
    steps = [line.split(" s  ", 1)[1] for line in timeline.path.read_text().splitlines()[1:]]
    assert steps.index("web answers") < steps.index("slow set up"), steps
    assert [spec.name for spec in side.started] == ["web"]


def test_a_job_that_fails_is_raised_after_the_others_end(tmp_path: Path) -> None:
    supervisor, timeline = _supervisor(tmp_path)
    side = SideBySide(supervisor, timeline)
    ended: list[str] = []

    def broken() -> None:
        raise ComponentError("the registry's login could not be read", hint="fix it")

    def other() -> None:
        time.sleep(0.3)
        ended.append("other")

    gate = side.submit({"broken": broken})
    side.submit({"other": other})
    with pytest.raises(ComponentError, match="login could not be read"):
        try:
            side.join(gate)
        finally:
            side.close()
    assert ended == ["other"]
