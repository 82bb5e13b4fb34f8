"""The `slipway` command.

    slipway up [--home DIR] [--prefect-port N ...]   start and supervise the platform
    slipway status                                    each component, its URL and health
    slipway down                                      stop everything `up` started

Errors print as one line with the fix, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from slipway.errors import SlipwayError
from slipway.home import Ports, SlipwayHome

__all__ = ["main"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The checkout that holds prefect.yaml, flows/ and tasks/."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slipway", description="Slipway, the Prefect-built IDP.")
    parser.add_argument(
        "--home", type=Path, help="data directory (default: $SLIPWAY_HOME or ./.slipway)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start and supervise the platform on this machine")
    for name in ("prefect", "docs", "registry", "bridge"):
        up.add_argument(f"--{name}-port", type=int, help=f"loopback port of {name}")
    up.add_argument(
        "--project", type=Path, default=PROJECT_DIR, help="directory holding prefect.yaml"
    )
    commands.add_parser("status", help="show each component with its URL and health")
    commands.add_parser("down", help="stop everything `slipway up` started")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.home is not None:
            os.environ["SLIPWAY_HOME"] = str(args.home.expanduser().resolve())
        home = SlipwayHome.from_env()
        if args.command == "up":
            return _up(home, args)
        if args.command == "down":
            from deployments.supervisor import down

            down(home)
            return 0
        return _status(home)
    except SlipwayError as e:
        print(f"slipway: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _up(home: SlipwayHome, args: argparse.Namespace) -> int:
    from deployments.supervisor import UpOptions, up

    ports = Ports.from_env()
    overrides = {
        name: getattr(args, f"{name}_port")
        for name in ("prefect", "docs", "registry", "bridge")
        if getattr(args, f"{name}_port") is not None
    }
    project = args.project.resolve()
    if not (project / "prefect.yaml").is_file():
        raise SlipwayError(
            f"{project} has no prefect.yaml", hint="pass --project with the Slipway checkout"
        )
    up(UpOptions(home=home, ports=replace(ports, **overrides), project_dir=project))
    return 0


def _status(home: SlipwayHome) -> int:
    from deployments.state import read_state

    state = read_state(home)
    if state is not None:  # talk to this home's server, whatever the shell has set
        os.environ["PREFECT_API_URL"] = state.port_config().prefect_api_url
    from deployments.status import collect_status, format_table

    results = collect_status(home)
    print(format_table(results))
    return 0 if all(r.healthy or not r.required for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
