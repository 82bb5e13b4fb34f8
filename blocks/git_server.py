"""Where service repositories live: local bare repositories, GitHub or GitLab."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from blocks.base import SlipwayBlock
from slipway.home import Ports, SlipwayHome
from slipway.names import check_git_ref

__all__ = ["GitServer"]


class GitServer(SlipwayBlock):
    """The git server that holds service repositories and the catalog.

    The local provider keeps bare repositories under ``root``; pushing to them
    works with plain ``git push``. GitHub and GitLab organisations sit behind
    the same interface and need an organisation and a token.

    Example:
        ```python
        from blocks import GitServer
        server = GitServer.load("default")
        ```
    """

    _block_type_name = "Slipway Git Server"
    _block_type_slug = "slipway-git-server"

    provider: Literal["local", "github", "gitlab"] = Field(
        default="local",
        title="Provider",
        description="'local' keeps bare repositories on this machine; 'github' or 'gitlab' use an organisation.",
    )
    root: Path | None = Field(
        default=None,
        title="Repository root",
        description="Directory of the bare repositories (local provider only).",
    )
    organization: str | None = Field(
        default=None,
        title="Organisation",
        description="GitHub organisation or GitLab group that owns service repositories.",
    )
    api_url: str | None = Field(
        default=None,
        title="API URL",
        description="REST API of a self-hosted GitHub Enterprise or GitLab; empty for the public service.",
    )
    token: SecretStr | None = Field(
        default=None,
        title="Token",
        description="Access token that may create repositories in the organisation.",
    )
    default_branch: str = Field(
        default="main",
        title="Default branch",
        description="Pushes to this branch build and deploy; others only scan.",
    )

    @field_validator("default_branch")
    @classmethod
    def _branch_is_a_ref(cls, value: str) -> str:
        return check_git_ref(value, what="default_branch")

    @model_validator(mode="after")
    def _provider_has_what_it_needs(self) -> Self:
        if self.provider == "local":
            if self.root is None or not self.root.is_absolute():
                raise ValueError("the local provider needs `root`, an absolute directory path")
        elif not self.organization or self.token is None:
            raise ValueError(f"the {self.provider} provider needs `organization` and `token`")
        return self

    @classmethod
    def local_default(cls, home: SlipwayHome, ports: Ports) -> Self:
        """Bare repositories under the data directory."""
        return cls(provider="local", root=home.git_root)
