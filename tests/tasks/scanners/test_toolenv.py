"""The scanners run from their own environment (scanners.lock), and every report says which versions ran."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from slipway.errors import MissingDependency
from tasks.osv_mirror import MirrorServer
from tasks.scanners import ScanStatus
from tasks.scanners.bandit import BanditScanner
from tasks.scanners.runner import default_scanners, run_scanners
from tasks.scanners.sarif import to_sarif, validate_sarif
from tasks.scanners.sbom import SbomGenerator
from tasks.scanners.secrets import PLUGINS
from tasks.scanners.toolenv import SCANNERS_ENV, ToolEnvironment
from tests.tasks.scanners.helpers import summary

LOCK = Path(__file__).resolve().parents[3] / "scanners.lock"


def pinned() -> dict[str, str]:
    """scanners.lock as name -> version, names normalized."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_tools_are_not_importable_in_the_platforms_own_environment():
    # checkov's exact pins would hold boto3 and packaging back if they shared one.
    for module in ("checkov", "detect_secrets", "bandit", "pip_audit", "cyclonedx_py"):
        assert importlib.util.find_spec(module) is None, f"{module} leaked into the platform's env"


def test_the_tool_environment_holds_the_versions_scanners_lock_pins():
    tools = ToolEnvironment.default().require()
    pins = pinned()
    for tool in ("checkov", "bandit", "pip-audit", "bc-detect-secrets", "cyclonedx-bom"):
        assert tools.version(tool) == pins[tool], tool


def test_each_scan_and_its_reports_record_the_tool_versions(
    insecure: Path, tmp_path: Path, osv_socket: MirrorServer
):
    scanners = default_scanners(
        osv_url=osv_socket.query_url, cache_dir=tmp_path, osv_forward=osv_socket.forward
    )
    run = run_scanners(insecure, scanners, timeout=240)
    pins = pinned()

    versions = {r.tool: r.version for r in run.results}
    assert versions == {
        "bandit": pins["bandit"],
        "pip-audit": pins["pip-audit"],
        "detect-secrets": pins["bc-detect-secrets"],
        "checkov": pins["checkov"],
    }
    assert run.sbom.version == pins["cyclonedx-bom"] and run.sbom.status is ScanStatus.CLEAN
    for result in run.results:  # the fixture has one known problem per scanner
        assert result.status is ScanStatus.FINDINGS, (result.tool, result.error)

    scan = summary(*run.results)
    stored = json.loads(scan.model_dump_json())
    assert {t["tool"]: t["version"] for t in stored["tools"]} == versions
    sarif = to_sarif(scan)
    validate_sarif(sarif)
    drivers = {r["tool"]["driver"]["name"]: r["tool"]["driver"]["version"] for r in sarif["runs"]}
    assert drivers == versions


def test_a_missing_tool_environment_fails_with_the_fix(
    insecure: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(SCANNERS_ENV, str(tmp_path / "no-such-env"))

    with pytest.raises(MissingDependency, match="make setup"):
        default_scanners(osv_url=None, cache_dir=tmp_path)
    result = BanditScanner().scan(insecure, timeout=60)
    assert result.status is ScanStatus.ERRORED and "make setup" in (result.error or "")
    assert "no-such-env" in (result.error or "")
    sbom = SbomGenerator().generate(insecure, timeout=60)
    assert sbom.status is ScanStatus.ERRORED and "make setup" in (sbom.error or "")


def test_the_secret_type_table_matches_the_installed_detect_secrets():
    script = (
        "import json\n"
        "from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class as m\n"
        "print(json.dumps({k: v.__name__ for k, v in m().items()}))\n"
    )
    python = str(ToolEnvironment.default().require().python)
    done = subprocess.run(
        [python, "-I", "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == PLUGINS
