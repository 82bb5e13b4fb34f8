"""Secret environment variables: names of Prefect Secret blocks until a container starts.

A service's secret (a database password, an API token) is kept in a Prefect
``Secret`` block, which the server stores encrypted. Everything before the
container holds only the block's *name*: the provisioning request
(``variables={"secret_env": {"DB_PASSWORD": "payments-db-password"}}``), the
run's parameters, Terraform's variables, state and outputs, and the catalog's
record of the environment. The release reads the blocks and hands the values
to the container's environment, as `SecretStr` until that moment.

A reference must name an existing block, and a variable may not be both an
``env_vars`` value and a ``secret_env`` reference; both are checked before
any Terraform command runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

from pydantic import SecretStr

from slipway.errors import ConfigurationError, InvalidRequest

__all__ = [
    "SECRET_ENV",
    "check_secret_references",
    "recorded_references",
    "resolve_secret_env",
]

SECRET_ENV = "secret_env"  # noqa: S105 - a variable's name, not a secret
"""The module variable and output: environment variable name to Secret block name."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_secret_references(variables: Mapping[str, object]) -> dict[str, str]:
    """The ``secret_env`` of a provisioning request, each naming an existing Secret block.

    Raises:
        InvalidRequest: a name is not an environment variable or block name, a
            variable is also in ``env_vars``, or a block does not exist.
    """
    raw = variables.get(SECRET_ENV) or {}
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"`{SECRET_ENV}` must map variable names to Secret block names")
    plain = variables.get("env_vars") or {}
    found: dict[str, str] = {}
    for name, block in raw.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise InvalidRequest(f"{SECRET_ENV} name {name!r} is not an environment variable name")
        if not isinstance(block, str) or not _BLOCK_NAME.fullmatch(block):
            raise InvalidRequest(
                f"{SECRET_ENV}[{name!r}] must be the name of a Secret block, not a value",
                hint="save the value as a Secret block (Blocks in the UI) and give its name here",
            )
        if isinstance(plain, Mapping) and name in plain:
            raise InvalidRequest(f"{name!r} is both in env_vars and in {SECRET_ENV}; keep one")
        _load(block, name)
        found[name] = block
    return found


def recorded_references(applied: Mapping[str, object] | None) -> dict[str, str]:
    """The Secret blocks a provisioned environment names: the ``secret_env`` of its applied variables."""
    found = (applied or {}).get(SECRET_ENV)
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def resolve_secret_env(references: Mapping[str, str]) -> dict[str, SecretStr]:
    """The values of the referenced Secret blocks, still wrapped.

    Raises:
        ConfigurationError: a block no longer exists.
    """
    try:
        return {name: _load(block, name) for name, block in references.items()}
    except InvalidRequest as e:
        raise ConfigurationError(e.message, hint=e.hint) from e


def _load(block: str, variable: str) -> SecretStr:
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret[str], Secret.load(block))
    except ValueError as e:
        raise InvalidRequest(
            f"{SECRET_ENV}[{variable!r}] names the Secret block {block!r}, which does not exist",
            hint=f"create the Secret block {block!r} under Blocks in the Prefect UI",
        ) from e
    return SecretStr(str(secret.get()))
