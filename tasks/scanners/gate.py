"""The security gate: may this commit of this service go to prod?

build-test-deploy calls `enforce_gate` before it deploys to ``prod``:

```python
from tasks.scanners.gate import enforce_gate

enforce_gate(service, sha)  # raises GateRefused naming the findings, else returns None
```

It reads the stored scan of exactly that commit (``<service>/<sha>/summary.json``)
and the policy in the ``slipway-platform-settings`` block:

- ``gate_block_new_severities`` (default critical, high): no new finding of these;
- ``gate_block_open_severities`` (default none): no finding of these at all;
- ``gate_block_known_exploited`` (default on): no dependency advisory in CISA's
  known-exploited catalog, checked against today's synced catalog;
- ``gate_block_errored_scans`` (default on): every scanner ran; errored is not clean.

A commit that was never scanned is refused, and so is one whose acceptance
has expired since the scan: accepted risks count as of the day the gate runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from slipway.errors import GateRefused
from tasks.scanners.base import Severity
from tasks.scanners.exploited import KnownExploited
from tasks.scanners.report import FindingRecord, ScanSummary

if TYPE_CHECKING:
    from blocks.platform import PlatformSettings

__all__ = ["GateDecision", "GatePolicy", "enforce_gate", "evaluate"]

logger = logging.getLogger(__name__)

_SHOWN = 10
"""How many findings a refusal names before it says "and N more"."""


class GatePolicy(BaseModel):
    """What the gate refuses; `from_settings` reads it from the platform settings."""

    model_config = ConfigDict(frozen=True)

    block_new_severities: frozenset[Severity] = frozenset({Severity.CRITICAL, Severity.HIGH})
    block_open_severities: frozenset[Severity] = frozenset()
    block_known_exploited: bool = True
    block_errored_scans: bool = True

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> GatePolicy:
        """The policy in a platform settings document."""
        return cls(
            block_new_severities=frozenset(Severity(s) for s in settings.gate_block_new_severities),
            block_open_severities=frozenset(
                Severity(s) for s in settings.gate_block_open_severities
            ),
            block_known_exploited=settings.gate_block_known_exploited,
            block_errored_scans=settings.gate_block_errored_scans,
        )


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer, with every reason for a refusal."""

    allowed: bool
    reasons: tuple[str, ...]
    """One line per broken rule, each naming the findings or tools."""
    blocking: tuple[FindingRecord, ...]
    """The findings that broke a rule."""


def evaluate(
    summary: ScanSummary,
    policy: GatePolicy,
    *,
    known_exploited: KnownExploited | None,
    today: date | None = None,
) -> GateDecision:
    """Apply ``policy`` to one scan; pure, so every rule is testable without tools.

    Args:
        summary: The scan of the commit to deploy.
        policy: The rules.
        known_exploited: The catalog; required when the policy blocks known-exploited.
        today: The day acceptances are checked against; today (UTC) by default.
    """
    day = today or datetime.now(UTC).date()
    open_findings = summary.open_findings(day)
    reasons: list[str] = []
    blocking: list[FindingRecord] = []

    def rule(name: str, found: Iterable[FindingRecord]) -> None:
        hits = [f for f in found if f not in blocking]
        if hits:
            blocking.extend(hits)
            reasons.append(f"{name}: {_describe(hits)}")

    if policy.block_errored_scans and summary.errored_tools:
        reasons.append(
            "scanners errored, so the commit is not known to be clean: "
            + "; ".join(f"{t.tool} ({t.error})" for t in summary.errored_tools)
        )
    rule(
        "new findings of a blocked severity",
        (
            f
            for f in open_findings
            if f.state == "new" and f.severity in policy.block_new_severities
        ),
    )
    rule(
        "open findings of a blocked severity",
        (f for f in open_findings if f.severity in policy.block_open_severities),
    )
    if policy.block_known_exploited:
        if known_exploited is None:
            raise ValueError(
                "the policy blocks known-exploited advisories but no catalog was given"
            )
        exploited = [f for f in open_findings if known_exploited.matches(f.ids)]
        rule("dependencies with known-exploited advisories", exploited)
    return GateDecision(not reasons, tuple(reasons), tuple(blocking))


def _describe(findings: list[FindingRecord]) -> str:
    shown = [f"{f.severity.value} {f.rule_id} at {f.where} ({f.tool})" for f in findings[:_SHOWN]]
    more = len(findings) - _SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@task(name="scanned", cache_policy=NO_CACHE)
def scanned(service: str, sha: str) -> bool:
    """Whether a scan of ``service`` at commit ``sha`` is stored, for the gate to read."""
    from blocks import ArtifactStore
    from tasks.scanners.history import load_summary
    from tasks.storage import open_store

    return load_summary(open_store(ArtifactStore.load_default()), service, sha) is not None


@task(name="security-gate", cache_policy=NO_CACHE)
def enforce_gate(service: str, sha: str) -> None:
    """Refuse ``service`` at commit ``sha`` for prod unless its scan passes the platform's policy.

    Call it before deploying to prod; it returns ``None`` when the commit may go.
    Loads the ``default`` platform settings, artifact store and vulnerability
    source blocks, so it runs wherever flows run.

    Args:
        service: The catalog name of the service.
        sha: The full commit id about to be deployed.

    Raises:
        GateRefused: The commit was never scanned, or it breaks the policy; the
            message names every blocking finding (rule, file, severity, tool)
            and every errored scanner.
        ConfigurationError: The policy needs the known-exploited catalog and none is synced.
    """
    from blocks import ArtifactStore, PlatformSettings, VulnerabilitySource
    from tasks.scanners.exploited import load_known_exploited
    from tasks.scanners.history import load_summary
    from tasks.storage import open_store

    policy = GatePolicy.from_settings(PlatformSettings.load_default())
    summary = load_summary(open_store(ArtifactStore.load_default()), service, sha)
    if summary is None:
        raise GateRefused(
            f"the security gate refuses {service} at {sha[:12]}: that commit was never scanned",
            hint=f"run the security-scan deployment with service={service} commit={sha}, then deploy again",
        )
    catalog = None
    if policy.block_known_exploited:
        catalog = load_known_exploited(VulnerabilitySource.load_default().mirror_path)
    decision = evaluate(summary, policy, known_exploited=catalog)
    if not decision.allowed:
        raise GateRefused(
            f"the security gate refuses {service} at {sha[:12]}: " + "; ".join(decision.reasons),
            hint="fix the findings, or accept a risk in accepted-risks.yaml with a reason and expiry, "
            "then scan again",
        )
    logger.info("security gate passed %s at %s", service, sha[:12])
