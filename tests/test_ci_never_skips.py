"""Under CI=true a test that lacks a part fails; on a developer's machine it is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import pytest
from tests.conftest import missing_part

def test_needs_a_part_that_is_missing():
    missing_part("the flux capacitor is not installed", fix="run `make setup` as root")

def test_skips_by_hand():
    pytest.skip("forgot to install it")

def test_passes():
    pass
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_under_ci_a_missing_part_and_any_skip_fail_with_the_fix(tmp_path: Path):
    done = run_probe(tmp_path, "true")

    assert done.returncode == 1, done.stdout
    assert "2 failed, 1 passed" in done.stdout
    assert "the flux capacitor is not installed. Fix: run `make setup` as root" in done.stdout
    assert "forgot to install it" in done.stdout
    assert "skipped" not in done.stdout.splitlines()[-1]


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_they_are_skipped_with_the_reason(tmp_path: Path, ci: str | None):
    done = run_probe(tmp_path, ci)

    assert done.returncode == 0, done.stdout
    assert "1 passed, 2 skipped" in done.stdout
    assert "the flux capacitor is not installed. Fix: run `make setup` as root" in done.stdout
