from __future__ import annotations

from dataclasses import replace

from tasks.scanners.compare import compare
from tests.tasks.scanners.helpers import B404, B602, CKV, PYSEC, result


def test_without_a_baseline_everything_is_new():
    comparison = compare([result("bandit", B602, B404)], None)

    assert comparison.new == (B602, B404)
    assert comparison.unchanged == () and comparison.fixed == ()


def test_findings_are_new_unchanged_or_fixed_against_the_baseline():
    moved = replace(B404, line=40)  # a line above was added: still the same finding

    comparison = compare(
        [result("bandit", moved, B602), result("checkov", CKV)], baseline=[B404, PYSEC, CKV]
    )

    assert comparison.new == (B602,)
    assert comparison.unchanged == (moved, CKV)
    assert comparison.fixed == ()  # pip-audit did not run in this scan


def test_a_finding_of_a_tool_that_ran_cleanly_and_is_gone_is_fixed():
    comparison = compare([result("bandit"), result("pip-audit", PYSEC)], baseline=[B602, PYSEC])

    assert comparison.fixed == (B602,)
    assert comparison.unchanged == (PYSEC,)


def test_a_tool_that_errored_fixes_nothing():
    comparison = compare([result("bandit", error="syntax error in app/ops.py")], baseline=[B602])

    assert comparison.fixed == () and comparison.new == ()


def test_duplicates_are_matched_one_for_one():
    twin = replace(B602, line=30)

    comparison = compare([result("bandit", B602, twin)], baseline=[B602])

    assert len(comparison.unchanged) == 1 and len(comparison.new) == 1
