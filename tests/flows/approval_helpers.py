"""Approvers for flow tests: a group in the catalog, pushed with git as a team would, and tokens."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from blocks import GitServer
from slipway.approver_tokens import ApproverTokens
from slipway.home import SlipwayHome
from tasks.catalog import Catalog


def give_group(
    group: str,
    *,
    members: tuple[str, ...],
    approvers: tuple[str, ...],
    server: GitServer | None = None,
) -> None:
    """Commit ``_groups/<group>.yaml`` to the catalog (of ``server``, else the platform's
    git server) through a clone and a push, as a team would."""
    document = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": group, "annotations": {"slipway.dev/approvers": ",".join(approvers)}},
        "spec": {"type": "team", "children": [], "members": list(members)},
    }
    catalog = Catalog(server or GitServer.load_default())
    catalog.ensure()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "catalog"
        _git(scratch, "clone", "--quiet", catalog.url, str(work))
        (work / "_groups").mkdir(exist_ok=True)
        (work / "_groups" / f"{group}.yaml").write_text(yaml.safe_dump(document))
        _git(work, "add", "--all")
        _git(work, "commit", "--quiet", "-m", f"Set the approvers of {group}")
        _git(work, "push", "--quiet", "origin", "HEAD:refs/heads/main")


def issue_tokens(*names: str) -> dict[str, str]:
    """A new approver token for each name, in this test's home; name to token."""
    tokens = ApproverTokens(SlipwayHome.from_env())
    return {name: tokens.issue(name).get_secret_value() for name in names}


def _git(cwd: str | Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Team Lead", "-c", "user.email=lead@example.test", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )
