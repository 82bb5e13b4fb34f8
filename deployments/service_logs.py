"""`slipway logs SERVICE [--env ENV] [--since 10m] [--follow] [--grep TEXT]`.

Reads a service's container log from the deploy target's Docker engine, as
the platform's block configures it, so it works wherever the platform runs
its services, not only on the Docker host of this shell.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from slipway.home import SlipwayHome
from slipway.names import EnvironmentName, ServiceName

__all__ = ["print_logs", "run_logs"]


def print_logs(
    home: SlipwayHome,
    service: str,
    *,
    environment: str = "dev",
    since: str | None = None,
    follow: bool = False,
    grep: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print the lines; returns how many were printed.

    Raises:
        InvalidRequest: A bad service or environment name, or ``since``.
        ServiceNotFound: No container of the service runs in that environment.
        DockerUnavailable: The engine cannot be reached.
    """
    from deployments.commands import use_running_platform

    name = ServiceName.parse(service)
    env = EnvironmentName.parse(environment)
    use_running_platform(home)
    from blocks import DeployTarget
    from tasks.containers import docker_client
    from tasks.monitoring.logs import log_lines, parse_since, service_container

    moment = parse_since(since) if since else None
    client = docker_client(DeployTarget.load_default())
    printed = 0
    try:
        container = service_container(client, name, env)
        for line in log_lines(container, since=moment, follow=follow, grep=grep):
            print(line, file=out, flush=follow)
            printed += 1
    finally:
        client.close()
    return printed


def run_logs(home: SlipwayHome, args: argparse.Namespace) -> int:
    """`slipway logs` from its parsed arguments; returns the exit code."""
    print_logs(
        home,
        args.service,
        environment=args.env,
        since=args.since,
        follow=args.follow,
        grep=args.grep,
    )
    return 0
