"""Who may approve a service's changes: the approvers of its owning group in the catalog.

A group is a Backstage ``Group`` entity in the catalog repository,
``_groups/<name>.yaml``; its ``spec.members`` are the team, and the
annotation ``slipway.dev/approvers`` (comma-separated) names the members who
may approve the team's production changes:

```yaml
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
  annotations:
    slipway.dev/approvers: alice,bob
spec:
  type: team
  children: []
  members: [alice, bob, carol]
```

A service's ``spec.owner`` (``group:payments``) names its group. Only
approvers who are also members count. The file is read at the catalog's
tip, so a change to it is a reviewed commit like any other catalog change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import git
import yaml

from slipway.errors import CatalogError
from tasks.catalog import ANNOTATION_PREFIX, Catalog, CatalogEntry

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = ["GROUPS_DIRECTORY", "group_approvers", "owner_group"]

GROUPS_DIRECTORY = "_groups"
_APPROVERS = f"{ANNOTATION_PREFIX}approvers"


def owner_group(owner: str) -> str | None:
    """The local group an owner reference names: ``group:payments`` and ``payments`` give ``payments``."""
    kind, colon, rest = owner.partition(":")
    if colon and kind.lower() != "group":
        return None  # a user, or another kind
    name = (rest if colon else owner).removeprefix("default/")
    return name or None


def group_approvers(server: GitServer, entry: CatalogEntry) -> frozenset[str]:
    """The approvers of ``entry``'s owning group who are also its members; empty when none.

    Raises:
        CatalogError: the group's file exists but is not a readable Group.
    """
    name = owner_group(entry.owner)
    if name is None:
        return frozenset()
    catalog = Catalog(server)
    tip = catalog.tip()
    if tip is None:
        return frozenset()
    path = f"{GROUPS_DIRECTORY}/{name}.yaml"
    try:
        blob = git.Repo(catalog.url).commit(tip).tree / path
    except KeyError:
        return frozenset()
    return _approvers(blob.data_stream.read(), path)


def _approvers(data: bytes, path: str) -> frozenset[str]:
    try:
        document = yaml.safe_load(data)
        notes = document["metadata"].get("annotations") or {}
        members = {str(m).removeprefix("user:") for m in document["spec"].get("members") or ()}
        if document.get("kind") != "Group":
            raise ValueError("not a Group entity")
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise CatalogError(
            f"{path} in the catalog is not a readable Group: {e}",
            hint="fix the file in the platform-catalog repository",
        ) from e
    approvers = {a.strip() for a in str(notes.get(_APPROVERS, "")).split(",") if a.strip()}
    return frozenset(approvers & members)
