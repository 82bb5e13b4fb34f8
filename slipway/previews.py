"""Which pushed branches get a preview environment, and how many may live at once.

A push to a branch other than the default provisions ``preview-<branch>``
(`slipway.names.preview_environment`). The platform team bounds that with two
settings of the platform block: the branches that qualify, as glob patterns,
and the number of previews one service may have live. The bridge asks
`PreviewPolicy.allows` before it asks Prefect for a run, and the
provisioning flow asks both again, under a lock per service, before any
Terraform command: the flow's answer is the one that holds.

>>> policy = PreviewPolicy(branches=("feature/*",), limit=2)
>>> policy.allows("feature/login"), policy.allows("wip")
(True, False)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from slipway.errors import GateRefused

__all__ = ["PreviewPolicy", "check_patterns"]


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """Refuse an empty or blank pattern, which could only ever match by mistake.

    Raises:
        ValueError: naming the pattern.
    """
    found = list(patterns)
    for pattern in found:
        if not pattern.strip() or pattern != pattern.strip():
            raise ValueError(f"preview branch pattern {pattern!r} is empty or has spaces around it")
    return found


@dataclass(frozen=True)
class PreviewPolicy:
    """The preview settings of the platform block, as one value."""

    branches: tuple[str, ...]
    """Glob patterns (``fnmatch``: ``*`` also matches ``/``); none means no previews from pushes."""
    limit: int
    """Preview environments one service may have live; 0 turns them off."""

    def allows(self, branch: str) -> bool:
        """Whether a push to ``branch`` may have a preview environment at all."""
        return self.limit > 0 and any(fnmatch.fnmatchcase(branch, p) for p in self.branches)

    def check(
        self,
        service: str,
        environment: str,
        live: dict[str, datetime | None],
        *,
        branch: str | None,
        now: datetime,
    ) -> None:
        """Refuse a preview the policy does not allow, before anything is provisioned.

        Args:
            service: The service.
            environment: The ``preview-<branch>`` environment asked for.
            live: The service's provisioned previews and when each expires.
            branch: The pushed branch, when a push asked; None for a person's run.
            now: The time that decides which previews still live.

        Raises:
            GateRefused: the branch does not qualify, or the service has as many
                live previews as it may and this one is new.
        """
        if branch is not None and not self.allows(branch):
            raise GateRefused(
                f"branch {branch!r} of {service} gets no preview environment: it matches none "
                f"of the preview branches ({', '.join(self.branches) or 'none'})",
                hint="push to a branch that matches, or change `preview_branches` of the "
                "slipway-platform-settings block",
            )
        if environment in live:
            return  # an existing preview: its TTL is extended, the count does not change
        alive = sorted(e for e, expires in live.items() if expires is None or expires > now)
        if len(alive) >= self.limit:
            raise GateRefused(
                f"{service} has {len(alive)} live preview environments ({', '.join(alive)}); "
                f"at most {self.limit} may live at once, so {environment} is not provisioned",
                hint="destroy one with destroy-environment, or raise `max_previews_per_service` "
                "of the slipway-platform-settings block",
            )
