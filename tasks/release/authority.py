"""What lets an image reach prod, and which records prove that it did.

An image reaches prod only through the security gate and an approver of the
service's owning group (`approve_release`), who neither pushed nor wrote
the commit nor asked for the release. The release's record then names that
approver (``approved_by``) and is signed (`tasks.signed_records`).

A rollback asks no approval: it ends incidents. So a rollback in prod may
only return to a digest whose genuine record shows it reached prod that way
before (`rollback_choice`). A record that was forged or edited in Prefect
is refused, and a rollback to it fails naming it. Records from before
records were signed count as approved when they were a promotion or a
build-test-deploy, which passed the gate and an (unnamed) approval then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.errors import GateRefused
from tasks.approval import ApprovalRequest, await_approval, group_approvers
from tasks.git import commit_people
from tasks.release.history import DeploymentRecord, rollback_target, verified_history
from tasks.signed_records import Verified

if TYPE_CHECKING:
    from blocks.git_server import GitServer
    from tasks.catalog import CatalogEntry

__all__ = [
    "LEGACY_APPROVAL",
    "PROD",
    "approve_release",
    "carried_approval",
    "change_authors",
    "proves_approval",
    "rollback_choice",
]

PROD = "prod"
"""The environment that takes an approver."""
LEGACY_APPROVAL = "(approved before approvers were named)"
"""``approved_by`` of a rollback to a release recorded before records were signed."""
_ANONYMOUS = frozenset({"", "manual"})


def change_authors(
    server: GitServer, entry: CatalogEntry, sha: str, requester: str
) -> frozenset[str]:
    """Who made or asked for the release of ``sha``: none of them may approve it.

    The pushers of the commit (from the genuine release records of every
    environment of the service), its author and committer (names and email
    users), and whoever asked for this release.
    """
    environments = set(entry.environments) | set(entry.outputs)
    pushers = {
        record.triggered_by
        for environment in sorted(environments)
        for record in verified_history(entry.name, environment, limit=100).records
        if record.sha == sha and record.action == "build-test-deploy"
    }
    people = pushers | commit_people(server, entry.name, sha) | {requester}
    return frozenset(p for p in people if p not in _ANONYMOUS)


def approve_release(
    server: GitServer,
    entry: CatalogEntry,
    environment: str,
    sha: str,
    requester: str,
    *,
    timeout: int,
) -> str:
    """Wait for an approver of ``sha``'s release to ``environment``; returns who approved.

    Raises:
        GateRefused: rejected, nobody may approve, or no approval in time.
    """
    request = ApprovalRequest(
        service=entry.name,
        environment=environment,
        kind="release",
        subject=sha[:12],
        description=(
            f"Release `{entry.name}` at `{sha[:12]}` to **{environment}**? An approver of "
            f"{entry.owner} who did not push or write it: give your name and approver token, "
            "tick *Approve* (or leave it unticked to reject) and resume."
        ),
        approvers=group_approvers(server, entry),
        authors=change_authors(server, entry, sha, requester),
    )
    return await_approval(request, timeout=timeout).approver


def proves_approval(record: DeploymentRecord) -> bool:
    """Whether ``record`` shows its digest reached prod through the gate and an approval."""
    if record.outcome != "succeeded":
        return False
    if record.approved_by:
        return True
    return not record.signature and record.action in ("build-test-deploy", "promote")


def carried_approval(record: DeploymentRecord, environment: str) -> str:
    """The ``approved_by`` of a rollback to ``record``: the approval it returns to."""
    return record.approved_by or (LEGACY_APPROVAL if environment == PROD else "")


def rollback_choice(
    service: str, environment: str, *, current_digest: str | None, to: str | None
) -> DeploymentRecord:
    """The genuine record to roll back to; in prod, one that proves an approval.

    Raises:
        GateRefused: ``to`` names a release whose record was forged or edited,
            or (prod) one that never went through the gate and an approval.
        InvalidRequest: nothing genuine (and, in prod, approved) fits.
    """
    found = verified_history(service, environment)
    history = found.records
    if environment == PROD:
        history = [r for r in history if proves_approval(r)]
    if to is not None and not any(r.sha.startswith(to) for r in history):
        _refuse_unproven(found, environment, to)
    return rollback_target(history, current_digest=current_digest, to=to)


def _refuse_unproven(found: Verified[DeploymentRecord], environment: str, to: str) -> None:
    """Say why ``to``, which no usable record names, is refused when a record of it exists."""
    forged = [r for r in found.refused if str(r.row.get("sha", "")).startswith(to)]
    genuine = [r for r in found.records if r.sha.startswith(to) and r.outcome == "succeeded"]
    if forged and not genuine:
        raise GateRefused(
            f"the record of {to} in the history of {environment} is refused: {forged[0].reason}",
            hint="roll back to a release the platform recorded itself, or release it anew",
        )
    if genuine:
        raise GateRefused(
            f"{to} never reached {environment} through the security gate and an approval, "
            "so prod cannot be rolled back to it",
            hint="promote it to prod, which asks the gate and an approver",
        )
