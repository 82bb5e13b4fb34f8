"""Spare ports for candidates, on an engine that other releases use at the same time.

A candidate is proven on a free port of the deploy target's range before the
switch. Two releases on one engine can pick the same free port at once: each
creates its candidate with the port in its label, then looks, and the one the
engine created first keeps the port (`first_claim`).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from slipway.errors import DeployError
from tasks.release.contract import LABEL_PORT

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from blocks.deploy_target import DeployTarget

__all__ = ["first_claim", "port_free", "spare_port"]


def port_free(address: str, port: int) -> bool:
    """Whether nothing listens on ``port`` of ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def spare_port(client: docker.DockerClient, target: DeployTarget, reserved: frozenset[int]) -> int:
    """A free port of the target's range that no Slipway container or service claims.

    Searched from the top of the range, since services are given ports from the bottom.
    """
    claimed = set(reserved)
    # sparse: the engine's listing carries the labels; no inspection of each container
    labelled = client.containers.list(all=True, filters={"label": [LABEL_PORT]}, sparse=True)
    for container in labelled:
        label = str((container.attrs.get("Labels") or {}).get(LABEL_PORT, ""))
        if label.isdigit():
            claimed.add(int(label))
    for port in range(target.port_range_end, target.port_range_start - 1, -1):
        if port not in claimed and port_free(target.bind_address, port):
            return port
    raise DeployError(
        f"no free port in {target.port_range_start}-{target.port_range_end} for a candidate",
        hint="widen the slipway-deploy-target block's port range",
    )


def first_claim(client: docker.DockerClient, candidate: Container, port: int) -> bool:
    """Whether ``candidate`` is the first container the engine created with ``port`` in its label."""
    claims = client.containers.list(
        all=True, filters={"label": [f"{LABEL_PORT}={port}"]}, ignore_removed=True
    )
    return bool(min(claims, key=_created, default=candidate).id == candidate.id)


def _created(container: Container) -> tuple[str, str, str]:
    """When the engine created ``container`` (RFC 3339, nanoseconds), as a sortable key."""
    stamp = str(container.attrs.get("Created", ""))
    day, _, fraction = stamp.rstrip("Z").partition(".")
    return day, fraction.ljust(9, "0"), str(container.id)
