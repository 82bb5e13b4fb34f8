"""The shared secret that webhook senders sign their deliveries with.

It is Prefect's own `Secret` block, so it is stored encrypted by the server
and editable (never shown) in the UI. `slipway up` creates a random one on a
new home; set the same value in GitHub, GitLab or Gitea's webhook settings.
"""

from __future__ import annotations

import secrets
from typing import cast

from prefect.blocks.system import Secret
from pydantic import SecretStr

from slipway.errors import ConfigurationError

__all__ = ["WEBHOOK_SECRET_BLOCK", "ensure_webhook_secret", "load_webhook_secret"]

WEBHOOK_SECRET_BLOCK = "slipway-webhook-secret"  # noqa: S105 - a block name, not a secret
"""Name of the `Secret` block document."""


def ensure_webhook_secret() -> bool:
    """Create a random secret when none exists; returns whether one was created."""
    try:
        Secret.load(WEBHOOK_SECRET_BLOCK)
    except ValueError:
        Secret(value=secrets.token_urlsafe(32)).save(WEBHOOK_SECRET_BLOCK)
        return True
    return False


def load_webhook_secret() -> SecretStr:
    """The secret, kept wrapped so that it cannot end up in a log line by accident."""
    try:
        block = cast(Secret[str], Secret.load(WEBHOOK_SECRET_BLOCK))
    except ValueError as e:
        raise ConfigurationError(
            f"the Secret block '{WEBHOOK_SECRET_BLOCK}' does not exist",
            hint="run `slipway up`, which creates it, or create it under Blocks in the Prefect UI",
        ) from e
    return SecretStr(str(block.get()))
