"""Fixtures for template tests: answers, and a render into ``tmp_path``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.templates import RenderedService, ServiceAnswers, render_service
from testkit.platform import free_port

HOSTILE = "He said \"quotes\" and 'single'\nline two {{ 7*7 }} {% raw %} : colon # hash\n- not: a list\n`x` ${var} 😀 <b>bold</b>"
"""A description that would break YAML, Jinja, HCL or Markdown if pasted in raw."""


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without PYTHONPATH, so the service's `tests` is not ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GIT_SHA")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_python(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def answers() -> ServiceAnswers:
    return ServiceAnswers(
        service_name="payments-api",
        description="Takes payments.",
        owner="group:payments",
        port=8081,
        environments=("dev", "staging"),
    )


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., RenderedService]:
    """Render python-service into a fresh directory under tmp_path."""
    count = 0

    def make(answers: ServiceAnswers, name: str | None = None) -> RenderedService:
        nonlocal count
        count += 1
        return render_service("python-service", tmp_path / (name or f"svc{count}"), answers)

    return make
