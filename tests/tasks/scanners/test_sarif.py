from __future__ import annotations

from datetime import date

import pytest
from jsonschema import Draft4Validator

from slipway.errors import ScanError
from tasks.scanners.accepted import AcceptedRisk, AcceptedRisks
from tasks.scanners.sarif import FINGERPRINT_KEY, sarif_schema, to_sarif, validate_sarif
from tests.tasks.scanners.helpers import B404, B602, CKV, PYSEC, result, summary


def test_one_run_per_tool_with_baseline_states_that_validates_against_sarif_2_1_0():
    scan = summary(
        result("bandit", B404),
        result("pip-audit", PYSEC),
        result("checkov", CKV),
        baseline=[B404, B602],
    )

    sarif = to_sarif(scan, repository="/srv/git/payments.git")

    assert not list(Draft4Validator(sarif_schema()).iter_errors(sarif))
    validate_sarif(sarif)
    assert sarif["version"] == "2.1.0"
    assert [r["tool"]["driver"]["name"] for r in sarif["runs"]] == [
        "bandit",
        "pip-audit",
        "checkov",
    ]
    bandit = sarif["runs"][0]
    states = {(r["ruleId"], r["baselineState"]) for r in bandit["results"]}
    assert states == {("B404", "unchanged"), ("B602", "absent")}
    first = bandit["results"][0]
    assert first["partialFingerprints"] == {FINGERPRINT_KEY: B404.fingerprint}
    assert first["locations"][0]["physicalLocation"]["region"] == {"startLine": 3}
    assert bandit["versionControlProvenance"][0]["revisionId"] == "b" * 40
    advisory = sarif["runs"][1]["results"][0]
    assert advisory["baselineState"] == "new" and advisory["properties"]["fixVersion"] == "2.20.0"
    assert "region" not in advisory["locations"][0]["physicalLocation"]
    rules = {r["id"]: r for r in sarif["runs"][2]["tool"]["driver"]["rules"]}
    assert rules["CKV_AWS_20"]["properties"]["security-severity"] == "8.0"


def test_an_errored_tool_is_a_failed_invocation_not_an_empty_clean_run():
    sarif = to_sarif(summary(result("bandit", error="syntax error in app/ops.py")))

    validate_sarif(sarif)
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["message"]["text"] == (
        "syntax error in app/ops.py"
    )


def test_an_accepted_risk_is_a_suppression_with_its_reason():
    risks = AcceptedRisks(
        accepted_risks=(
            AcceptedRisk(id="CVE-2018-18074", reason="not reachable", expires=date(2026, 12, 31)),
        )
    )

    sarif = to_sarif(summary(result("pip-audit", PYSEC), accepted=risks))

    validate_sarif(sarif)
    (finding,) = sarif["runs"][0]["results"]
    assert finding["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "not reachable (until 2026-12-31)",
        }
    ]


def test_a_document_that_breaks_the_schema_is_refused_naming_where():
    sarif = to_sarif(summary(result("bandit", B602)))
    sarif["runs"][0]["results"][0]["level"] = "fatal"

    with pytest.raises(ScanError, match="runs/0/results/0/level"):
        validate_sarif(sarif)
