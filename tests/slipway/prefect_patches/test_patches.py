"""Each patch holds to the Prefect it was written for, and nothing else touches Prefect's insides."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from slipway.prefect_patches import ALL_PATCHES, Patch
from slipway.prefect_patches.base import prefect_source

REPO = Path(__file__).resolve().parents[3]
PRODUCT = ("slipway", "flows", "tasks", "blocks", "deployments", "bench", "tests")


@pytest.mark.parametrize("patch", ALL_PATCHES, ids=lambda p: p.name)
def test_the_installed_prefect_has_the_code_each_patch_was_written_for(patch: Patch):
    """Fails on a Prefect upgrade that changed a patched function: re-read the patch, maybe drop it."""
    assert patch.current_fingerprint() == patch.fingerprint, (
        f"{patch.module}.{patch.qualname} changed: check whether {patch.upstream} fixed it, "
        "then update or remove slipway/prefect_patches/" + patch.name.replace("-", "_") + ".py"
    )
    assert patch.applicable()
    assert patch.upstream.startswith("https://github.com/PrefectHQ/prefect/")


def test_a_patch_whose_target_changed_is_not_applied(caplog: pytest.LogCaptureFixture):
    stale = replace(ALL_PATCHES[0], fingerprint="0" * 16)

    assert not stale.applicable()
    assert "changed since it was written" in caplog.text


def test_the_fingerprint_is_read_from_prefects_file_not_the_patched_attribute(
    monkeypatch: pytest.MonkeyPatch,
):
    import prefect.flow_engine

    from slipway.prefect_patches import heartbeats

    monkeypatch.setattr(
        prefect.flow_engine, "_send_heartbeats", prefect.flow_engine._send_heartbeats
    )
    source = prefect_source("prefect.flow_engine", "_send_heartbeats")

    assert heartbeats.apply()
    assert prefect.flow_engine._send_heartbeats is heartbeats._send_heartbeats
    assert prefect_source("prefect.flow_engine", "_send_heartbeats") == source
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == heartbeats.PATCH.fingerprint


def _private_prefect_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "prefect" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")  # type: ignore[attr-defined]
    return found


def test_no_private_prefect_module_is_imported_outside_the_patch_package():
    patches = REPO / "slipway" / "prefect_patches"
    found = [
        hit
        for top in PRODUCT
        for path in sorted((REPO / top).rglob("*.py"))
        if patches not in path.parents
        for hit in _private_prefect_imports(path)
    ]
    assert found == []
