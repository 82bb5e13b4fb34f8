"""Input keys and carrying a scan's results over, with the real tools of the scanners' environment."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.scanners import ScanStatus
from tasks.scanners.accepted import AcceptedRisks
from tasks.scanners.bandit import BanditScanner
from tasks.scanners.base import UnavailableScanner
from tasks.scanners.compare import compare
from tasks.scanners.dependencies import DependencyScanner
from tasks.scanners.iac import IacScanner
from tasks.scanners.incremental import PreviousScan, run_incrementally
from tasks.scanners.inputs import inventory, tree_digest
from tasks.scanners.report import ScanSummary, build_summary
from tasks.scanners.runner import ScanRun
from tasks.scanners.sbom import SbomGenerator
from tasks.scanners.secrets import SecretsScanner
from tests.tasks.scanners.helpers import B602, CKV, result, summary

INSECURE = Path(__file__).resolve().parents[2] / "fixtures" / "insecure-service"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return Path(shutil.copytree(INSECURE, tmp_path / "service"))


def keys(tree: Path, advisories: str | None = "rev-1") -> dict[str, str | None]:
    scanners = [
        BanditScanner(),
        DependencyScanner("http://127.0.0.1:9/v1/query", advisories=advisories),
        SecretsScanner(),
        IacScanner(),
    ]
    files = inventory(tree)
    found = {s.name: s.input_key(files) for s in scanners}
    found["sbom"] = SbomGenerator().input_key(files)
    return found


def test_each_tool_key_follows_only_the_files_that_tool_reads(tree: Path) -> None:
    before = keys(tree)
    assert all(before.values())

    (tree / "infra" / "main.tf").write_text((tree / "infra" / "main.tf").read_text() + "\n")
    after_tf = keys(tree)
    changed = {name for name in before if before[name] != after_tf[name]}
    assert changed == {"checkov", "detect-secrets"}

    (tree / "requirements.txt").write_text("requests==2.31.0\n")
    after_req = keys(tree)
    changed = {name for name in after_tf if after_tf[name] != after_req[name]}
    assert changed == {"pip-audit", "detect-secrets", "sbom"}

    (tree / "app" / "ops.py").write_text("x = 1\n")
    after_py = keys(tree)
    changed = {name for name in after_req if after_req[name] != after_py[name]}
    assert changed == {"bandit", "detect-secrets"}


def test_new_advisory_data_changes_the_dependency_key_and_live_data_gives_none(tree: Path) -> None:
    assert keys(tree, "rev-1")["pip-audit"] != keys(tree, "rev-2")["pip-audit"]
    assert keys(tree, "rev-1")["bandit"] == keys(tree, "rev-2")["bandit"]
    assert keys(tree, None)["pip-audit"] is None
    assert UnavailableScanner("pip-audit", "no mirror").input_key(inventory(tree)) is None


def test_the_digest_skips_git_and_counts_a_symlink_by_its_target_without_following_it(
    tmp_path: Path, tree: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("one")
    (tree / "link.txt").symlink_to(outside)
    every = tree_digest(inventory(tree), lambda _: True)

    outside.write_text("two")  # what the link points at is not the checkout's content
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert tree_digest(inventory(tree), lambda _: True) == every
    assert "secret.txt" not in "".join(inventory(tree))

    (tree / "link.txt").unlink()
    (tree / "link.txt").symlink_to(tmp_path / "elsewhere")
    assert tree_digest(inventory(tree), lambda _: True) != every


def test_an_unchanged_checkout_carries_every_result_over_and_a_change_reruns_its_tools(
    tree: Path,
) -> None:
    scanners = [BanditScanner(), SecretsScanner(), IacScanner()]
    first = run_incrementally(tree, scanners, previous=None, timeout=300)
    assert all(r.carried_from is None and r.status is ScanStatus.FINDINGS for r in first.results)
    assert first.sbom.carried_from is None and first.sbom.document
    stored = _stored(first, "a" * 40)

    again = run_incrementally(
        tree, scanners, previous=PreviousScan.of(stored, first.sbom.document), timeout=300
    )
    assert [r.carried_from for r in again.results] == ["a" * 40] * 3
    assert again.sbom.carried_from == "a" * 40 and again.sbom.document == first.sbom.document
    assert {r.tool: {f.fingerprint for f in r.findings} for r in again.results} == {
        r.tool: {f.fingerprint for f in r.findings} for r in first.results
    }

    (tree / "app" / "ops.py").write_text(
        (tree / "app" / "ops.py").read_text() + "\n\ndef run(x):\n    return eval(x)\n"
    )
    changed = run_incrementally(
        tree, scanners, previous=PreviousScan.of(stored, first.sbom.document), timeout=300
    )
    by_tool = {r.tool: r for r in changed.results}
    assert by_tool["bandit"].carried_from is None and by_tool["detect-secrets"].carried_from is None
    assert by_tool["checkov"].carried_from == "a" * 40
    assert "B307" in {f.rule_id for f in by_tool["bandit"].findings}  # eval, found by running


def test_an_errored_or_keyless_result_is_never_lent() -> None:
    stored = summary(result("bandit", B602), result("checkov", CKV, error="checkov crashed"))
    keyed = stored.model_copy(
        update={"tools": tuple(t.model_copy(update={"input_key": "k"}) for t in stored.tools)}
    )
    assert PreviousScan.of(stored, b"{}").results == {}  # scanned before keys were recorded
    lent = PreviousScan.of(keyed, None)
    assert set(lent.results) == {"bandit"}
    assert lent.results["bandit"][1].findings == (B602,)
    assert lent.sbom is None  # no key, and no stored document


def _stored(run: ScanRun, sha: str) -> ScanSummary:
    return build_summary(
        service="svc",
        sha=sha,
        ref="main",
        default_branch=True,
        scanned_at=datetime.now(UTC),
        run=run,
        comparison=compare(run.results, None),
        baseline_sha=None,
        accepted=AcceptedRisks(),
    )
