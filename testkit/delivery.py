"""What a delivery needs around it: a registry, a catalogued service, and tidying up after.

The delivery tests and ``bench/delivery.py`` set up the same parts: Debian's
docker-registry on a free loopback port (as `slipway up` starts it), a
service rendered from the python-service template with its repository and
catalog entry, and the removal of every container and image tag of it.
"""

from __future__ import annotations

import secrets
import subprocess  # nosec B404 - the registry, started as `slipway up` starts it
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from deployments.components import registry_binary, registry_spec
from deployments.registry_auth import RegistryLogin
from slipway.errors import ComponentError, MissingDependency
from slipway.home import Ports, SlipwayHome
from testkit.parts import BASE_IMAGE
from testkit.platform import configure_platform, free_port

if TYPE_CHECKING:
    import docker

    from blocks import ContainerRegistry

__all__ = [
    "BASE_IMAGE",
    "HEALTH_TIMEOUT",
    "catalogue_service",
    "osv_archive",
    "configure_delivery",
    "remove_service_containers",
    "remove_service_images",
    "render_source",
    "REGISTRY_LOGIN",
    "registry_block",
    "running_registry",
]

HEALTH_TIMEOUT = 10.0
OSV_RECORDS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "osv"
"""Real advisories (OSV JSON) that the delivery platform's mirror serves."""
"""Seconds a deployment gets to answer /healthz; short, so failures fail fast."""
_REGISTRY_SECONDS = 30


REGISTRY_LOGIN = RegistryLogin("slipway-tests", SecretStr(secrets.token_urlsafe(18)))
"""What every test registry requires, as the local registry of `slipway up` does."""
_AUTH = (REGISTRY_LOGIN.username, REGISTRY_LOGIN.password.get_secret_value())


def registry_block(url: str) -> ContainerRegistry:
    """The registry block of a test registry at ``url``, with the login it requires."""
    from blocks import ContainerRegistry

    login = REGISTRY_LOGIN
    return ContainerRegistry(url=url, username=login.username, password=login.password)


@contextmanager
def running_registry(root: Path) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port, as `slipway up` starts it; yields its address.

    Raises:
        MissingDependency: docker-registry is not installed.
        ComponentError: It did not answer within 30 s; carries its log.
    """
    binary = registry_binary()
    if binary is None:
        raise MissingDependency("docker-registry is not installed", hint="run `make setup` as root")
    home = SlipwayHome(root)
    home.ensure()
    spec = registry_spec(home, Ports(registry=free_port()), binary, REGISTRY_LOGIN)
    log_path = root / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(spec.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_answering(str(spec.health_url), process, log_path)
            yield spec.url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _REGISTRY_SECONDS
    while True:
        try:
            if httpx.get(url, timeout=1, auth=_AUTH).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise ComponentError(f"the registry did not start:\n{log.read_text()}")
        time.sleep(0.1)


def render_source(destination: Path, name: str, port: int) -> Path:
    """The python-service template rendered for ``name``."""
    from tasks.templates import ServiceAnswers, render_service

    answers = ServiceAnswers(
        service_name=name,
        owner="group:delivery",
        description="Delivery test service.",
        port=port,
        environments=("dev", "staging", "prod"),
        base_image=BASE_IMAGE,
    )
    return render_service("python-service", destination, answers).path


def osv_archive(destination: Path) -> Path:
    """OSV's all.zip format, holding the fixture advisories; returns ``destination``."""
    with zipfile.ZipFile(destination, "w") as archive:
        for record in sorted(OSV_RECORDS.glob("*.json")):
            archive.write(record, record.name)
    return destination


def configure_delivery(root: Path, registry: str) -> SlipwayHome:
    """Save the default block documents for a home under ``root``, using ``registry``."""
    from blocks import DEFAULT_DOCUMENT, PlatformSettings, VulnerabilitySource
    from blocks.vulnerability_source import MIRROR_ARCHIVE

    home = configure_platform(root).home
    registry_block(registry).save(DEFAULT_DOCUMENT, overwrite=True)
    # No OSV online here: pip-audit asks a synced mirror of real advisories,
    # so the gate sees a clean dependency scan rather than an errored one.
    mirror = root / "osv-mirror"
    mirror.mkdir(exist_ok=True)
    osv_archive(mirror / MIRROR_ARCHIVE)
    VulnerabilitySource(kind="mirror", mirror_path=mirror, known_exploited_url=None).save(
        DEFAULT_DOCUMENT, overwrite=True
    )
    # The known-exploited catalog is synced by a flow of its own; its gate is
    # covered by the security-scan tests. Everything else of the gate stays on.
    PlatformSettings(
        base_image=BASE_IMAGE,
        health_timeout_seconds=HEALTH_TIMEOUT,
        gate_block_known_exploited=False,
    ).save(DEFAULT_DOCUMENT, overwrite=True)
    return home


def catalogue_service(home: SlipwayHome, name: str, source: Path, ports: dict[str, int]) -> None:
    """Create the service's repository with its first commit, and its catalog entry."""
    from blocks import GitServer
    from tasks.catalog import Catalog, CatalogEntry, EnvironmentRecord
    from tasks.git import create_repository, publish_directory, repository_url

    server = GitServer.load_default()
    create_repository(server, name)
    publish_directory(server, name, source, message="Initial commit")
    Catalog(server).save(
        CatalogEntry(
            name=name,
            owner="group:delivery",
            repository=repository_url(server, name),
            port=ports["dev"],
            environments=("dev", "staging", "prod"),
            outputs={
                env: EnvironmentRecord(port=port) for env, port in ports.items() if env != "dev"
            },
        ),
        message=f"Add {name}",
    )


def remove_service_containers(client: docker.DockerClient, service: str) -> None:
    """Remove every container of the release contract of ``service``."""
    for container in client.containers.list(
        all=True, filters={"label": [f"dev.slipway.service={service}"]}
    ):
        container.remove(force=True)


def remove_service_images(client: docker.DockerClient, repository: str) -> None:
    """Remove every image (and tag) of ``repository``; what is already gone is fine."""
    for image in client.images.list(name=repository):
        for tag in image.tags:
            with suppress(Exception):
                client.images.remove(tag, force=True)
        with suppress(Exception):
            client.images.remove(image.id, force=True)
