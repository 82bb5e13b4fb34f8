"""Approvers for flow tests: a group in the catalog, as `slipway catalog group` saves it, and tokens."""

from __future__ import annotations

from blocks import GitServer
from slipway.approver_tokens import ApproverTokens
from slipway.home import SlipwayHome
from tasks.catalog import Catalog
from tasks.catalog.entities import GroupEntity
from tasks.catalog.model import CatalogModel


def give_group(
    group: str,
    *,
    members: tuple[str, ...],
    approvers: tuple[str, ...],
    server: GitServer | None = None,
) -> None:
    """Save the Group ``group`` in the catalog (of ``server``, else the platform's git server)."""
    entity = GroupEntity(name=group, members=members, approvers=approvers)
    catalog = Catalog(server or GitServer.load_default())
    CatalogModel(catalog).save(entity, message=f"Set the approvers of {group}")


def issue_tokens(*names: str) -> dict[str, str]:
    """A new approver token for each name, in this test's home; name to token."""
    tokens = ApproverTokens(SlipwayHome.from_env())
    return {name: tokens.issue(name).get_secret_value() for name in names}
