from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from slipway.errors import InvalidRequest
from tasks.scanners.accepted import ACCEPTED_RISKS_FILE, AcceptedRisk, load_accepted_risks
from tests.tasks.scanners.helpers import B602, PYSEC

TODAY = date(2026, 6, 1)


def write(root: Path, text: str) -> Path:
    (root / ACCEPTED_RISKS_FILE).write_text(text)
    return root


def test_an_absent_file_accepts_nothing(tmp_path: Path):
    assert load_accepted_risks(tmp_path).acceptance(PYSEC, TODAY) is None


def test_an_advisory_is_accepted_by_its_id_or_an_alias_until_it_expires(tmp_path: Path):
    risks = load_accepted_risks(
        write(
            tmp_path,
            "accepted_risks:\n"
            "  - id: CVE-2018-18074\n    reason: internal only\n    expires: 2026-06-01\n",
        )
    )

    accepted = risks.acceptance(PYSEC, TODAY)
    assert accepted is not None and accepted.reason == "internal only"
    assert risks.acceptance(PYSEC, date(2026, 6, 2)) is None  # the day after expiry
    assert risks.expired_entries(date(2026, 6, 2)) == (accepted,)
    assert risks.acceptance(B602, TODAY) is None


def test_an_entry_can_be_narrowed_to_one_tool_and_file():
    entry = AcceptedRisk(id="B602", reason="r", expires=TODAY, tool="bandit", file="app/other.py")
    assert not entry.covers(B602)
    assert AcceptedRisk(id="B602", reason="r", expires=TODAY, file="app/ops.py").covers(B602)
    assert AcceptedRisk(id=B602.fingerprint, reason="r", expires=TODAY).covers(B602)


@pytest.mark.parametrize(
    "text",
    [
        "accepted_risks:\n  - id: B602\n    expires: 2026-01-01\n",  # no reason
        "accepted_risks:\n  - id: B602\n    reason: later\n",  # no expiry
        "accepted_risks:\n  - id: B602\n    reason: r\n    expires: someday\n",
        "accepted_risks: [\n",
        # An unknown key: a typo must not silently widen or drop an acceptance.
        "accepted_risks:\n  - id: B105\n    reason: r\n    expires: 2026-01-01\n    owner: me\n",
    ],
)
def test_an_invalid_file_is_refused_naming_the_rule(tmp_path: Path, text: str):
    with pytest.raises(InvalidRequest, match="not a valid accepted-risk list"):
        load_accepted_risks(write(tmp_path, text))
