from __future__ import annotations

import json
from pathlib import Path

from tasks.scanners import ScanStatus
from tasks.scanners.sbom import SPEC_VERSION, SbomGenerator


def test_the_sbom_lists_every_pin_as_a_cyclonedx_component(insecure: Path):
    result = SbomGenerator().generate(insecure, timeout=120)

    assert result.status is ScanStatus.CLEAN, result.error
    assert result.document is not None and result.components == 2
    bom = json.loads(result.document)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == SPEC_VERSION
    assert {c["purl"] for c in bom["components"]} == {
        "pkg:pypi/requests@2.19.0",
        "pkg:pypi/urllib3@1.26.5",
    }


def test_the_same_pins_give_the_same_sbom(insecure: Path):
    first = SbomGenerator().generate(insecure, timeout=120)
    second = SbomGenerator().generate(insecure, timeout=120)

    assert first.document == second.document


def test_a_missing_requirements_file_is_reported_not_ignored(tmp_path: Path):
    result = SbomGenerator().generate(tmp_path, timeout=60)

    assert result.status is ScanStatus.ERRORED and result.document is None
    assert result.error is not None and "requirements.txt does not exist" in result.error


def test_a_missing_binary_errors_the_sbom(insecure: Path):
    result = SbomGenerator(executable="/nonexistent/cyclonedx-py").generate(insecure, timeout=60)

    assert result.status is ScanStatus.ERRORED
    assert result.error is not None and "not installed" in result.error
