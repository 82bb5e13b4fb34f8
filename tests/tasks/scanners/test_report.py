from __future__ import annotations

from tasks.scanners.report import ScanSummary, finding_rows, render_markdown
from tests.tasks.scanners.helpers import B404, B602, CKV, PYSEC, result, summary


def test_the_summary_survives_its_json_round_trip():
    scan = summary(result("bandit", B602, B404), result("pip-audit", PYSEC), baseline=[B404])

    again = ScanSummary.model_validate_json(scan.model_dump_json())

    assert again == scan
    assert [f.to_finding() for f in again.findings] == [B602, B404, PYSEC]


def test_markdown_counts_open_findings_by_severity_and_lists_the_new_ones():
    scan = summary(
        result("bandit", B602, B404),
        result("checkov", CKV),
        result("pip-audit", error="mirror not synced"),
        baseline=[B404],
    )

    text = render_markdown(scan, stored_at="payments/bbbb/")

    assert (
        "| critical | high | medium | low | unknown |\n|---|---|---|---|---|\n| 0 | 2 | 0 | 1 | 0 |"
        in text
    )
    assert "## New findings (2)" in text
    assert "- **high** bandit `B602` at `app/ops.py:8`" in text
    assert "| pip-audit | ? | errored | 0 | 0.5 | mirror not synced |" in text
    assert scan.status == "errored"


def test_the_table_has_every_finding_with_its_state():
    scan = summary(result("bandit", B404), baseline=[B404, B602])

    rows = finding_rows(scan)

    assert [(r["state"], r["rule"]) for r in rows] == [("unchanged", "B404"), ("fixed", "B602")]
