"""The git server: local bare repositories, or a hosted organisation."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from slipway.health import ComponentHealth

if TYPE_CHECKING:
    from blocks.git_server import GitServer

__all__ = ["check_git_server"]


def check_git_server(server: GitServer) -> ComponentHealth:
    """Whether repositories can be created: the root exists and is writable."""
    if server.provider != "local":
        where = server.api_url or server.provider
        return ComponentHealth(
            "git", where, True, f"{server.provider} organisation {server.organization}"
        )
    assert server.root is not None  # guaranteed by the block's validation
    root = server.root
    if not root.is_dir():
        return ComponentHealth(
            "git", str(root), False, f"{root} does not exist; `slipway up` creates it"
        )
    if not os.access(root, os.W_OK):
        return ComponentHealth("git", str(root), False, f"{root} is not writable by this user")
    count = sum(1 for p in root.glob("*.git") if p.is_dir())
    return ComponentHealth("git", str(root), True, f"{count} repositories")
