"""Accepted risks: findings a service's team has looked at and chosen to live with, for a while.

Each service keeps its list in its own repository, ``accepted-risks.yaml`` at
the root, so an acceptance is reviewed like code and belongs to the commit
it was made for. Every entry needs a reason and an expiry date; once it has
expired the finding counts again, so an acceptance cannot be forgotten.

Example ``accepted-risks.yaml``:

```yaml
accepted_risks:
  - id: PYSEC-2023-74          # a rule id, an advisory id or one of its aliases
    reason: Only talks to our own API over a pinned certificate; upgrade planned.
    expires: 2026-12-31
  - id: B105
    file: tests/fixtures.py    # optional: only in this file
    reason: Test credential for the local database.
    expires: 2027-03-01
```

Accepted findings stay in the reports, marked with the reason (SARIF
``suppressions``), and the gate ignores them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipway.errors import InvalidRequest
from tasks.scanners.base import Finding

__all__ = ["ACCEPTED_RISKS_FILE", "AcceptedRisk", "AcceptedRisks", "load_accepted_risks"]

ACCEPTED_RISKS_FILE = "accepted-risks.yaml"
"""Where a service's repository keeps its accepted risks."""


class AcceptedRisk(BaseModel):
    """One accepted finding: which, why and until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="A rule or advisory id, an alias, or a fingerprint.")
    reason: str = Field(min_length=1, description="Why the risk is acceptable for now.")
    expires: date = Field(description="The last day the acceptance holds.")
    tool: str | None = Field(default=None, description="Only findings of this tool.")
    file: str | None = Field(default=None, description="Only findings in this file.")

    def covers(self, finding: Finding) -> bool:
        """Whether this entry names ``finding`` (expiry aside)."""
        if self.tool is not None and self.tool != finding.tool:
            return False
        if self.file is not None and self.file != finding.file:
            return False
        return self.id in finding.ids or self.id == finding.fingerprint

    def expired(self, today: date) -> bool:
        """Whether the acceptance no longer holds on ``today``."""
        return today > self.expires


class AcceptedRisks(BaseModel):
    """A service's accepted-risk list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted_risks: tuple[AcceptedRisk, ...] = ()

    def acceptance(self, finding: Finding, today: date) -> AcceptedRisk | None:
        """The entry that accepts ``finding`` today, if any."""
        return next(
            (r for r in self.accepted_risks if r.covers(finding) and not r.expired(today)), None
        )

    def expired_entries(self, today: date) -> tuple[AcceptedRisk, ...]:
        """Entries past their expiry date, to be reported."""
        return tuple(r for r in self.accepted_risks if r.expired(today))


def load_accepted_risks(root: Path) -> AcceptedRisks:
    """Read ``accepted-risks.yaml`` of a checkout; an absent file accepts nothing.

    Raises:
        InvalidRequest: The file exists but is not a valid list; it names the problem.
    """
    path = root / ACCEPTED_RISKS_FILE
    if not path.is_file():
        return AcceptedRisks()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return AcceptedRisks.model_validate(data or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as e:
        raise InvalidRequest(
            f"{ACCEPTED_RISKS_FILE} is not a valid accepted-risk list: {e}",
            hint="give each entry an id, a reason and an expires date (YYYY-MM-DD)",
        ) from e
