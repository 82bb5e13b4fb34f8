"""Fixtures for the scanner tests: the vulnerable fixture service and a real OSV mirror.

The mirror listens on loopback (`osv_server`) for the tests that ask it
directly, and on a unix socket (`osv_socket`) for pip-audit, whose sandbox
reaches nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.osv_mirror import MirrorServer, OsvMirror, serve

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OSV_RECORDS = FIXTURES / "osv"
VULNERABLE_SERVICE = FIXTURES / "vulnerable-service"
INSECURE_SERVICE = FIXTURES / "insecure-service"


@pytest.fixture(scope="session")
def osv_server() -> Iterator[MirrorServer]:
    """The fixture advisories served by the real mirror, shared by the session."""
    with serve(OsvMirror.load(OSV_RECORDS)) as server:
        yield server


@pytest.fixture(scope="session")
def osv_socket() -> Iterator[MirrorServer]:
    """The fixture advisories served on a unix socket, as a scan's sandbox reaches them."""
    with (
        tempfile.TemporaryDirectory(prefix="slipway-osv-test-") as private,
        serve(OsvMirror.load(OSV_RECORDS), socket_path=Path(private) / "osv.sock") as server,
    ):
        yield server


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A private copy of the vulnerable service, so a test may change it."""
    return Path(shutil.copytree(VULNERABLE_SERVICE, tmp_path / "vulnerable-service"))


@pytest.fixture
def insecure(tmp_path: Path) -> Path:
    """A private copy of the insecure service: one known problem per scanner."""
    return Path(shutil.copytree(INSECURE_SERVICE, tmp_path / "insecure-service"))
