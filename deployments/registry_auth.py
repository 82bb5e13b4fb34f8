"""The local registry's login and configuration: credentials required, deletion off.

Debian's ``docker-registry`` checks HTTP basic auth against an htpasswd file
(bcrypt only). The credentials are those of the ``slipway-container-registry``
block, the one place flows read them from, so the registry and every push and
pull agree: `slipway up` writes the htpasswd from the block at each start. A
home from before the registry required a login has a block without
credentials: `ensure_registry_login` generates them and saves them into the
block once. Deleting manifests is off: an image that ran in prod stays
pullable by its digest, for rollback and audit.

The registry's port is configurable (`slipway.home.Ports`). A block that
names the address the embedded registry had at the previous start (read
back from the configuration that start wrote) follows it to the new port,
with its login and namespace; a block naming any other registry, on this
host or not, is the platform team's choice and is left as it is.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from slipway.home import HOST, Ports, SlipwayHome
from slipway.private import write_private

__all__ = [
    "GENERATED_LENGTH",
    "RegistryLogin",
    "ensure_registry_login",
    "hash_rounds",
    "previous_registry_address",
    "write_registry_config",
]


@dataclass(frozen=True)
class RegistryLogin:
    """A user and password the registry accepts."""

    username: str
    password: SecretStr

    @classmethod
    def generate(cls) -> RegistryLogin:
        """A new random password for the local registry's user."""
        from blocks.container_registry import LOCAL_REGISTRY_USER

        return cls(LOCAL_REGISTRY_USER, SecretStr(secrets.token_urlsafe(24)))


def ensure_registry_login(home: SlipwayHome, ports: Ports) -> tuple[RegistryLogin, str | None]:
    """The login the local registry must require, and a note when the block was changed.

    Needs Prefect's API: it reads the ``default`` registry block, and must run
    before this start's `write_registry_config`. When that block names the
    embedded registry's previous address and its port changed, the block
    follows the new port. When it names this host's registry without
    credentials (a home from before they were required), generated ones are
    saved into it. When it names another registry, the local one is not the
    platform's: it gets a random login nobody holds.
    """
    from blocks import DEFAULT_DOCUMENT, ContainerRegistry

    block = ContainerRegistry.load_default()
    local = f"{HOST}:{ports.registry}"
    host, slash, namespace = block.url.partition("/")
    notes: list[str] = []
    if host != local and host == previous_registry_address(home):
        block = block.model_copy(update={"url": f"{local}{slash}{namespace}"})
        notes.append(f"the registry block follows the local registry from {host} to {local}")
    elif host != local:
        return RegistryLogin.generate(), None
    if block.username is not None and block.password is not None:
        login = RegistryLogin(block.username, block.password)
    else:
        login = RegistryLogin.generate()
        block = block.model_copy(update={"username": login.username, "password": login.password})
        notes.append(
            f"the local registry now requires a login: saved generated credentials for "
            f"{login.username!r}"
        )
    if notes:
        block.save(DEFAULT_DOCUMENT, overwrite=True)
        where = f"in the block slipway-container-registry/{DEFAULT_DOCUMENT}"
        return login, "; ".join(notes) + f" {where}"
    return login, None


def previous_registry_address(home: SlipwayHome) -> str | None:
    """``host:port`` of the embedded registry at the previous start, from its configuration.

    None for a home whose registry never ran, or a configuration this module
    did not write.
    """
    import yaml

    try:
        config = yaml.safe_load((home.run / "registry.yml").read_text())
        address = config["http"]["addr"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return address if isinstance(address, str) else None


GENERATED_LENGTH = 32
"""Characters of a password `RegistryLogin.generate` makes: 192 random bits."""
_LEAST_ROUNDS = 4
_ROUNDS = 10


def hash_rounds(password: str) -> int:
    """The bcrypt cost of ``password`` in the registry's htpasswd: the least for a generated one.

    The registry checks the hash at every request it serves (a login, and
    each of the several requests of a push or pull): at cost 10 that is about
    73 ms of CPU each on a 2-core host, and the login a release waits for
    before its build. The cost only slows down guessing the password from a
    stolen htpasswd; a password as long as a generated one (`GENERATED_LENGTH`,
    192 random bits) cannot be guessed at any cost, so it gets bcrypt's least
    (about 1 ms). A shorter one, set by hand in the block, keeps cost 10.
    """
    return _LEAST_ROUNDS if len(password) >= GENERATED_LENGTH else _ROUNDS


def write_registry_config(home: SlipwayHome, ports: Ports, login: RegistryLogin) -> Path:
    """Write the registry's htpasswd (0600) and configuration under ``<home>/run``; returns the config."""
    import bcrypt

    password = login.password.get_secret_value()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=hash_rounds(password)))
    htpasswd = home.run / "registry.htpasswd"
    write_private(htpasswd, f"{login.username}:{hashed.decode()}\n")
    config = home.run / "registry.yml"
    write_private(
        config,
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {home.registry}\n"
        "  delete:\n    enabled: false\n"
        f"auth:\n  htpasswd:\n    realm: slipway\n    path: {htpasswd}\n"
        f"http:\n  addr: {HOST}:{ports.registry}\n",
    )
    return config
