"""The registry block follows the embedded registry to a new port, and only that registry.

Against a real Prefect server: `ensure_registry_login` reads and saves the
``default`` registry block; the previous start is the configuration
`write_registry_config` wrote for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks import DEFAULT_DOCUMENT, ContainerRegistry
from deployments.registry_auth import (
    RegistryLogin,
    ensure_registry_login,
    write_registry_config,
)
from slipway.errors import ConfigurationError
from slipway.home import Ports, SlipwayHome
from testkit.platform import free_port


@pytest.fixture
def registry_block(prefect_server: str) -> Iterator[None]:
    """Put the session's registry block back afterwards: other tests read it."""
    try:
        kept: ContainerRegistry | None = ContainerRegistry.load_default()
    except ConfigurationError:  # none yet
        kept = None
    yield
    if kept is not None:
        kept.save(DEFAULT_DOCUMENT, overwrite=True)


def started_before(tmp_path: Path, login: RegistryLogin) -> tuple[SlipwayHome, Ports, Ports]:
    """A home whose embedded registry last ran on one port, and the ports of the next start."""
    home = SlipwayHome(tmp_path / "home")
    home.run.mkdir(parents=True)
    before, now = Ports(registry=free_port()), Ports(registry=free_port())
    write_registry_config(home, before, login)
    return home, before, now


def test_the_block_follows_the_embedded_registry_to_its_new_port_with_its_login(
    registry_block: None, tmp_path: Path
) -> None:
    login = RegistryLogin("slipway", SecretStr("kept-password"))
    home, before, now = started_before(tmp_path, login)
    ContainerRegistry(
        url=f"127.0.0.1:{before.registry}/team", username=login.username, password=login.password
    ).save(DEFAULT_DOCUMENT, overwrite=True)

    required, note = ensure_registry_login(home, now)

    block = ContainerRegistry.load_default()
    assert block.url == f"127.0.0.1:{now.registry}/team"
    assert block.password is not None and block.username == "slipway"
    assert block.password.get_secret_value() == "kept-password"
    assert required.password.get_secret_value() == "kept-password"
    assert note is not None and f"to 127.0.0.1:{now.registry}" in note
    write_registry_config(home, now, required)
    assert ensure_registry_login(home, now)[1] is None  # the next start changes nothing


@pytest.mark.parametrize("url", ["ghcr.io/acme", "127.0.0.1:{other}"])
def test_a_registry_the_platform_team_chose_is_left_alone_when_the_port_moves(
    registry_block: None, tmp_path: Path, url: str
) -> None:
    home, _, now = started_before(tmp_path, RegistryLogin.generate())
    chosen = url.format(other=free_port())
    ContainerRegistry(url=chosen, username="bot", password=SecretStr("token")).save(
        DEFAULT_DOCUMENT, overwrite=True
    )

    required, note = ensure_registry_login(home, now)

    block = ContainerRegistry.load_default()
    assert note is None
    assert (block.url, block.username) == (chosen, "bot")
    assert block.password is not None and block.password.get_secret_value() == "token"
    assert required.password.get_secret_value() != "token"  # the local one: nobody's login


def test_a_generated_registry_password_is_hashed_at_the_least_cost_and_still_required(
    tmp_path: Path,
) -> None:
    """Each registry request checks the hash: cost 10 was 73 ms of CPU per request and login."""
    import subprocess
    import time

    import bcrypt
    import httpx

    from deployments.components import registry_binary, registry_spec

    generated = RegistryLogin.generate()
    chosen = RegistryLogin("ops", SecretStr("a-password-set-by-hand"))
    for login, cost in ((generated, "04"), (chosen, "10")):
        home = SlipwayHome(tmp_path / login.username)
        home.ensure()
        binary = registry_binary()
        assert binary is not None, "docker-registry is not installed: run `make setup` as root"
        spec = registry_spec(home, Ports(registry=free_port()), binary, login)
        user, hashed = (home.run / "registry.htpasswd").read_text().strip().split(":", 1)
        password = login.password.get_secret_value()
        assert (user, hashed.split("$")[2]) == (login.username, cost)
        assert bcrypt.checkpw(password.encode(), hashed.encode())
        process = subprocess.Popen(spec.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            v2 = str(spec.health_url)
            for _ in range(100):
                try:
                    if httpx.get(v2, timeout=1).status_code == 401:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert httpx.get(v2, auth=(user, password), timeout=5).status_code == 200
            assert httpx.get(v2, auth=(user, password + "x"), timeout=5).status_code == 401
        finally:
            process.terminate()
            process.wait(timeout=10)
