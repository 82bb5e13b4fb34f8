"""Fixtures for the block tests: a data directory that is not the developer's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.home import Ports, SlipwayHome


@pytest.fixture
def home(tmp_path: Path) -> SlipwayHome:
    return SlipwayHome(tmp_path / ".slipway")


@pytest.fixture
def ports() -> Ports:
    return Ports()
