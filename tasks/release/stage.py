"""Where a release of one service goes: its environment, port, variables, engine and blocks.

build-test-deploy, promote and rollback each open the stage of the service
and environment they release to first: it refuses an environment that the
service does not have before anything is built, pulled or started.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from blocks import (
    ArtifactStore,
    ContainerRegistry,
    Defaults,
    DeployTarget,
    GitServer,
    PlatformSettings,
)
from slipway.background import in_background
from slipway.errors import InvalidRequest
from slipway.names import EnvironmentName, GitSha, ServiceName
from tasks.catalog import Catalog, CatalogEntry
from tasks.containers import docker_client
from tasks.images import image_repository
from tasks.monitoring.teams import team_of
from tasks.registry import login_registry
from tasks.release.contract import Release, service_url
from tasks.secret_env import recorded_references, resolve_secret_env
from tasks.storage import ObjectStore, open_store

if TYPE_CHECKING:
    import docker

__all__ = ["Stage", "open_stage", "stage_blocks"]


@dataclass(frozen=True)
class Stage:
    """Everything a release to one environment of one service needs."""

    entry: CatalogEntry
    """The service's catalog entry."""
    environment: EnvironmentName
    port: int
    """The environment's provisioned port, else the catalog's."""
    env_vars: Mapping[str, str]
    """The environment's provisioned variables."""
    secrets: Mapping[str, SecretStr] = field(repr=False)
    """Its secret variables, read from the Secret blocks its provisioning names."""
    reserved_ports: frozenset[int]
    """Every service's ports: never a spare port for a candidate."""
    target: DeployTarget
    settings: PlatformSettings
    registry: ContainerRegistry
    git: GitServer
    store: ObjectStore
    engine: Future[docker.DockerClient] = field(repr=False)
    """The deploy target's engine, being reached and logged in to the registry (`client`)."""

    @property
    def client(self) -> docker.DockerClient:
        """The deploy target's engine, logged in to the registry; waits for that.

        Raises:
            DockerUnavailable: The engine is not reachable.
            ConfigurationError: The registry refused the block's login.
        """
        return self.engine.result()

    @property
    def service(self) -> ServiceName:
        """The service's name."""
        return self.entry.name

    @property
    def team(self) -> str:
        """The owning team, whose channel hears of the service's releases."""
        return team_of(self.entry.owner)

    @property
    def repository(self) -> str:
        """``<registry>/<service>``, where the service's images go."""
        return image_repository(self.registry, self.service)

    @property
    def url(self) -> str:
        """Where the service answers in this environment."""
        return service_url(self.target, self.port)

    def release(self, sha: GitSha, image: str) -> Release:
        """The release of ``image`` (built from ``sha``) to this stage."""
        return Release(
            self.service, self.environment, sha, image, self.port, self.env_vars, self.secrets
        )


_BLOCKS = (GitServer, DeployTarget, PlatformSettings, ContainerRegistry, ArtifactStore)
"""What a stage reads from Prefect, in one request (`Defaults`)."""


def stage_blocks() -> Defaults:
    """The blocks `open_stage` reads, in one request.

    build-test-deploy reads them itself, first thing, so that its clone
    starts as soon as the git server is known, beside the stage's opening.
    """
    return Defaults(*_BLOCKS)


def open_stage(
    service: ServiceName, environment: EnvironmentName, blocks: Defaults | None = None
) -> Stage:
    """The catalog entry, blocks and engine for a release; refuses an unknown environment.

    Not a task: it only reads, and a task's start and end (with the requests
    Prefect's server serves for them) took about 20 ms of the 0.16 s between
    a push's flow starting and its build. The engine is reached and logged in
    to the registry in the background; `Stage.client` waits for it and
    raises what went wrong there. The blocks are read now, unless given
    (`stage_blocks`).

    Raises:
        ServiceNotFound: The catalog has no such service.
        InvalidRequest: The service has no such environment.
        ConfigurationError: A block document does not exist.
    """
    loaded = blocks if blocks is not None else stage_blocks()
    catalog = Catalog(loaded[GitServer])
    entries = catalog.entries()  # one read: the entry, and every port that is taken
    entry = next((e for e in entries if e.name == service), None) or catalog.get(service)
    if environment not in entry.environments and environment not in entry.outputs:
        raise InvalidRequest(
            f"{service} has no environment {environment!r} (it has: {', '.join(entry.environments)})",
            hint="add the environment to the service (provision-environment) first",
        )
    provisioned = entry.outputs.get(environment)
    target, registry = loaded[DeployTarget], loaded[ContainerRegistry]
    # Reaching the engine and the registry's login (a password hash on its side) take
    # a tenth of a second: done beside what comes next (the release slot, the clone's end).
    engine = in_background(functools.partial(_logged_in, target, registry), name="registry-login")
    return Stage(
        entry=entry,
        environment=environment,
        port=provisioned.port if provisioned and provisioned.port else entry.port,
        env_vars=provisioned.env_vars if provisioned else {},
        secrets=resolve_secret_env(
            recorded_references(provisioned.variables if provisioned else None)
        ),
        reserved_ports=frozenset(
            {e.port for e in entries}
            | {o.port for e in entries for o in e.outputs.values() if o.port}
        ),
        target=target,
        settings=loaded[PlatformSettings],
        registry=registry,
        git=loaded[GitServer],
        store=open_store(loaded[ArtifactStore]),
        engine=engine,
    )


def _logged_in(target: DeployTarget, registry: ContainerRegistry) -> docker.DockerClient:
    """A client of the target's engine logged in to the registry (run `in_background`)."""
    client = docker_client(target)
    try:
        login_registry(client, registry)  # every push and pull of this client logs in
    except BaseException:
        client.close()  # refused by the registry: nobody will read it
        raise
    return client
