"""A malformed prefect.yaml stops `slipway up` at once, before anything starts or is written."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.project import check_project, read_project
from slipway.errors import ConfigurationError
from tests.deployments.conftest import REPO, processes_of_home, slipway_env

_FLOW = """\
from prefect import flow


@flow
def hello() -> str:
    return "hello"
"""

_GOOD = "  - name: hello\n    entrypoint: myflows/hello.py:hello\n"

# Each: the deployments of a broken prefect.yaml, and words the error must hold.
_BAD = {
    "yaml-syntax": (_GOOD + "   broken: [\n", ["did not find expected", "line 5"]),
    "unknown-entrypoint-file": (
        "  - name: lost\n    entrypoint: myflows/gone.py:hello\n",
        ["'lost'", "myflows/gone.py", "cannot be read"],
    ),
    "missing-flow-function": (
        "  - name: lost\n    entrypoint: myflows/hello.py:goodbye\n",
        ["'lost'", "goodbye", "does not define"],
    ),
    "schedule-of-two-kinds": (
        _GOOD + "    schedules:\n      - cron: '* * * * *'\n        interval: 60\n",
        ["'hello'", "schedules", "exactly one of cron, interval or rrule"],
    ),
    "unknown-timezone": (
        _GOOD + "    schedules:\n      - cron: '* * * * *'\n        timezone: Mars/Olympus\n",
        ["'hello'", "Mars/Olympus", "unknown timezone"],
    ),
    "duplicate-names": (_GOOD + _GOOD, ["unique", "'hello'"]),
    "wrong-type": (_GOOD + "    tags: nightly\n", ["'hello'", "tags", "valid list"]),
    "no-entrypoint": ("  - name: lonely\n", ["'lonely'", "entrypoint", "Field required"]),
}


def _project(root: Path, deployments: str) -> Path:
    """A checkout with one flow module and a prefect.yaml with ``deployments``."""
    (root / "myflows").mkdir(parents=True)
    (root / "myflows" / "__init__.py").write_text("")
    (root / "myflows" / "hello.py").write_text(_FLOW)
    (root / "prefect.yaml").write_text(f"name: bad-yaml-test\ndeployments:\n{deployments}")
    return root


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("case", sorted(_BAD))
def test_malformed_prefect_yaml_stops_up_at_once_and_starts_nothing(make_up, tmp_path, case):
    deployments, words = _BAD[case]
    project = _project(tmp_path / "project", deployments)
    up = make_up(args=["--project", str(project)])
    began = time.monotonic()
    try:
        done = subprocess.run(up.argv(), env=up.env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as e:  # the old code started everything and stayed up
        raise AssertionError(f"`up` was still running after {e.timeout} s") from e
    took = time.monotonic() - began
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 8, f"`up` took {took:.1f} s to refuse prefect.yaml"
    message = done.stderr.strip()
    assert message.startswith("slipway: ") and len(message.splitlines()) == 1, message
    assert str(project / "prefect.yaml") in message and "Fix: " in message, message
    for word in words:
        assert word in message, (word, message)
    # Nothing started and nothing written: no process, no port, not even the home.
    assert processes_of_home(up.home) == []
    assert not any(_port_open(port) for port in up.ports.values()), up.ports
    assert not up.home.exists(), sorted(str(p) for p in up.home.rglob("*"))
    assert "Slipway" not in done.stdout, done.stdout  # nor a line of the start


# What only Prefect's own models refuse: `up` reads them as its server starts.
_REFUSED_BY_PREFECT = {
    "cron": ("    schedules:\n      - cron: 'every tuesday'\n", "Invalid cron string"),
    "trigger": ("    triggers:\n      - type: event\n        enabled: maybe\n", "enabled"),
}


@pytest.mark.parametrize("case", sorted(_REFUSED_BY_PREFECT))
def test_what_prefect_refuses_stops_up_with_nothing_left_running(make_up, tmp_path, case):
    extra, word = _REFUSED_BY_PREFECT[case]
    project = _project(tmp_path / "project", _GOOD + extra)
    up = make_up(args=["--project", str(project)])
    try:
        done = subprocess.run(up.argv(), env=up.env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:  # the old code served a bad cron on
        raise AssertionError(f"`up` was still running after {e.timeout} s") from e
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and str(project / "prefect.yaml") in message, message
    assert "'hello'" in message and word in message, message
    assert "Slipway is up" not in done.stdout, done.stdout
    assert processes_of_home(up.home) == []
    assert not _port_open(up.ports["prefect"])


def test_checking_prefect_yaml_before_the_start_imports_no_prefect() -> None:
    # Prefect reads its settings once, at import: `up` must point them at its server first.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from deployments.project import check_project\n"
        f"project = check_project(Path({str(REPO)!r}))\n"
        "print(len(project.deployments), 'prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=slipway_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    count, imported = done.stdout.split()
    assert int(count) > 10 and imported == "False", done.stdout


def test_the_platform_s_own_prefect_yaml_passes_both_stages() -> None:
    assert {d.name for d in check_project(REPO).deployments} == {
        d.name for d in read_project(REPO).deployments
    }


def test_an_entrypoint_bound_by_import_or_assignment_is_accepted(tmp_path) -> None:
    project = _project(
        tmp_path / "project",
        "".join(
            f"  - name: {name}\n    entrypoint: myflows/more.py:{name}\n"
            for name in ("imported", "assigned", "guarded")
        ),
    )
    (project / "myflows" / "more.py").write_text(
        "from myflows.hello import hello as imported\n"
        "assigned = imported\n"
        "try:\n    guarded = imported\nexcept ImportError:\n    pass\n"
    )
    assert [d.name for d in check_project(project).deployments] == [
        "imported",
        "assigned",
        "guarded",
    ]
    (project / "myflows" / "more.py").write_text("def imported(): ...\n")
    with pytest.raises(ConfigurationError, match=r"'assigned'.*does not define"):
        check_project(project)
