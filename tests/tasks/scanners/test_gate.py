from __future__ import annotations

from datetime import date

import pytest

from tasks.scanners.accepted import AcceptedRisk, AcceptedRisks
from tasks.scanners.base import Severity
from tasks.scanners.exploited import KnownExploited
from tasks.scanners.gate import GatePolicy, evaluate
from tests.tasks.scanners.helpers import B404, B602, CKV, PYSEC, result, summary

NONE_EXPLOITED = KnownExploited(frozenset())
TODAY = date(2026, 6, 1)


def test_a_new_high_finding_is_refused_and_named():
    scan = summary(result("bandit", B602, B404), baseline=[B404])

    decision = evaluate(scan, GatePolicy(), known_exploited=NONE_EXPLOITED, today=TODAY)

    assert not decision.allowed
    assert decision.reasons == (
        "new findings of a blocked severity: high B602 at app/ops.py:8 (bandit)",
    )
    assert [f.rule_id for f in decision.blocking] == ["B602"]


def test_an_unchanged_high_finding_passes_unless_open_severities_block_it():
    scan = summary(result("checkov", CKV), baseline=[CKV])

    assert evaluate(scan, GatePolicy(), known_exploited=NONE_EXPLOITED, today=TODAY).allowed
    strict = GatePolicy(block_open_severities=frozenset({Severity.HIGH}))
    decision = evaluate(scan, strict, known_exploited=NONE_EXPLOITED, today=TODAY)
    assert decision.reasons == (
        "open findings of a blocked severity: high CKV_AWS_20 at infra/main.tf:2 (checkov)",
    )


def test_a_dependency_with_a_known_exploited_alias_is_refused():
    scan = summary(result("pip-audit", PYSEC), baseline=[PYSEC])
    catalog = KnownExploited(frozenset({"CVE-2018-18074"}))

    decision = evaluate(scan, GatePolicy(), known_exploited=catalog, today=TODAY)

    assert decision.reasons == (
        "dependencies with known-exploited advisories: unknown PYSEC-2018-28 at requirements.txt (pip-audit)",
    )
    off = GatePolicy(block_known_exploited=False)
    assert evaluate(scan, off, known_exploited=None, today=TODAY).allowed


def test_an_errored_scanner_is_refused_as_not_known_to_be_clean():
    scan = summary(result("bandit", error="bandit could not scan app/x.py: syntax error"))

    decision = evaluate(scan, GatePolicy(), known_exploited=NONE_EXPLOITED, today=TODAY)

    assert decision.reasons == (
        "scanners errored, so the commit is not known to be clean: "
        "bandit (bandit could not scan app/x.py: syntax error)",
    )
    lenient = GatePolicy(block_errored_scans=False)
    assert evaluate(scan, lenient, known_exploited=NONE_EXPLOITED, today=TODAY).allowed


def test_an_accepted_finding_passes_until_its_acceptance_expires():
    risks = AcceptedRisks(
        accepted_risks=(AcceptedRisk(id="B602", reason="sandboxed", expires=date(2026, 6, 30)),)
    )
    scan = summary(result("bandit", B602), accepted=risks)

    assert evaluate(scan, GatePolicy(), known_exploited=NONE_EXPLOITED, today=TODAY).allowed
    later = evaluate(scan, GatePolicy(), known_exploited=NONE_EXPLOITED, today=date(2026, 7, 1))
    assert not later.allowed and "B602" in later.reasons[0]


def test_a_policy_that_needs_the_catalog_refuses_to_run_without_it():
    with pytest.raises(ValueError, match="no catalog"):
        evaluate(summary(result("bandit")), GatePolicy(), known_exploited=None, today=TODAY)


def test_the_policy_comes_from_the_platform_settings():
    from blocks.platform import PlatformSettings

    settings = PlatformSettings(
        gate_block_new_severities=["critical"], gate_block_errored_scans=False
    )

    policy = GatePolicy.from_settings(settings)

    assert policy.block_new_severities == frozenset({Severity.CRITICAL})
    assert policy.block_errored_scans is False and policy.block_known_exploited is True
