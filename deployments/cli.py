"""The `slipway` command.

    slipway up [--home DIR] [--prefect-port N ...]   start and supervise the platform
    slipway up --role server --database URL           ... as the server of several worker hosts
    slipway up --role worker --server URL             ... as one worker host of that server
    slipway status                                    each component, its URL and health
    slipway down                                      stop everything `up` started
    slipway onboard NAME --owner TEAM [...]           onboard a service (the onboard-service flow)
    slipway catalog list|validate|add-environment|... the catalog (deployments/catalog_cli.py)
    slipway dora [SERVICE|group:TEAM]                 DORA metrics over 7, 30 and 90 days
    slipway approver issue|revoke NAME, list          approvers' tokens for approval forms
    slipway vuln affected ID                          services and versions an advisory affects
    slipway logs SERVICE [--env ENV] [--since 10m] [--follow] [--grep TEXT]
                                                      a service's container log
    slipway settings base-image [IMAGE] [--no-check]  show or change the services' base image

Errors print as one line with the fix, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError, SlipwayError
from slipway.home import Ports, SlipwayHome

if TYPE_CHECKING:
    from deployments.supervisor import UpOptions

__all__ = ["main"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The checkout that holds prefect.yaml, flows/ and tasks/."""
_PORT_FLAGS = tuple(Ports().as_dict())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slipway", description="Slipway, the Prefect-built IDP.")
    parser.add_argument(
        "--home", type=Path, help="data directory (default: $SLIPWAY_HOME or ./.slipway)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start and supervise the platform on this machine")
    for name in _PORT_FLAGS:
        up.add_argument(f"--{name}-port", type=int, help=f"loopback port of {name}")
    up.add_argument(
        "--project", type=Path, default=PROJECT_DIR, help="directory holding prefect.yaml"
    )
    _scale_out_arguments(up)
    commands.add_parser("status", help="show each component with its URL and health")
    commands.add_parser("down", help="stop everything `slipway up` started")
    onboard = commands.add_parser("onboard", help="onboard a service from a template")
    onboard.add_argument("name", help="service name, a DNS-1123 label")
    onboard.add_argument("--owner", required=True, help="owning team, e.g. group:payments")
    onboard.add_argument("--description", default="", help="what the service does")
    onboard.add_argument("--template", default="python-service", help="template to start from")
    onboard.add_argument(
        "--env", action="append", dest="environments", help="environment (repeatable; default dev)"
    )
    onboard.add_argument("--port", type=int, help="port (default: next free in the range)")
    onboard.add_argument("--dry-run", action="store_true", help="render and check, create nothing")
    approver = commands.add_parser("approver", help="approvers' tokens, for approval forms")
    tokens = approver.add_subparsers(dest="approver_command", required=True)
    tokens.add_parser("issue", help="give NAME a new token (printed once)").add_argument("name")
    tokens.add_parser("revoke", help="take NAME's token away").add_argument("name")
    tokens.add_parser("list", help="who holds a token, and since when")
    from deployments import catalog_cli, vuln_cli

    catalog_cli.add_commands(commands)
    vuln_cli.add_commands(commands)
    logs = commands.add_parser("logs", help="print a service's container log")
    logs.add_argument("service", help="the service's name")
    logs.add_argument("--env", default="dev", help="its environment (default dev)")
    logs.add_argument("--since", help="only newer lines: 10m, 2h, 1d or an ISO time")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--grep", help="only lines that contain this text")
    settings = commands.add_parser("settings", help="platform settings (docs/configuration)")
    image = settings.add_subparsers(dest="settings_command", required=True).add_parser(
        "base-image", help="show, or change, the image service images build FROM"
    )
    image.add_argument("image", nargs="?", help="the new base image, e.g. python:3.12-slim")
    image.add_argument(
        "--no-check",
        action="store_true",
        help="save it without checking (or pulling) it in the deploy target's Docker engine",
    )
    return parser


def _scale_out_arguments(up: argparse.ArgumentParser) -> None:
    from deployments.components import ROLES
    from deployments.pool import CrashDetection

    scale = up.add_argument_group("scale-out (docs/operations/scale-out.md)")
    scale.add_argument(
        "--role",
        choices=ROLES,
        default=os.environ.get("SLIPWAY_ROLE", "embedded"),
        help="embedded (default): everything here, flows served in-process; server: Prefect "
        "and shared services, flows go to the work pool; worker: a pool worker of --server; "
        "all: server and one worker here  [$SLIPWAY_ROLE]",
    )
    scale.add_argument(
        "--database",
        help="Prefect's database, postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB; prefer "
        "$SLIPWAY_DATABASE_URL, which other users cannot read in the process list",
    )
    scale.add_argument(
        "--server", help="worker: the server's URL, e.g. http://10.0.0.5:4200  [$SLIPWAY_SERVER]"
    )
    scale.add_argument("--pool", default="slipway", help="worker: the work pool to poll")
    scale.add_argument("--worker-name", help="worker: unique name (default: host and home)")
    scale.add_argument(
        "--poll-seconds", type=float, default=5.0, help="worker: seconds between polls (5)"
    )
    scale.add_argument("--limit", type=int, help="worker: flow runs at once (default: no limit)")
    scale.add_argument(
        "--public-url",
        help="server: the URL users and workers reach Prefect at through your proxy, e.g. "
        "https://prefect.example.com (Slipway itself binds 127.0.0.1 only)",
    )
    scale.add_argument("--repository", help="server: git URL workers clone (default: origin)")
    scale.add_argument("--commit", help="server: commit workers check out (default: HEAD)")
    scale.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=CrashDetection.heartbeat_seconds,
        help="server: flow-run heartbeat interval of every worker (30, the minimum)",
    )
    scale.add_argument(
        "--crash-after",
        type=int,
        default=CrashDetection.crash_after_seconds,
        help="server: mark a run Crashed after this many seconds without heartbeat (90)",
    )


class _NoDrainProgress(logging.Filter):
    """Drops Prefect's "EventsWorker - Still processing items" from a command's output.

    Loading a block emits an event, which Prefect's events worker sends in the
    background; as a short command exits, the worker sends what is left and
    warns while it does. The events still go out: only the warning is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.getLogger("EventsWorker").addFilter(_NoDrainProgress())
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
        if args.command == "onboard":
            return _onboard(home, args)
        if args.command == "approver":
            from deployments.commands import approver_tokens

            print(approver_tokens(home, args.approver_command, getattr(args, "name", None)))
            return 0
        if args.command == "logs":
            from deployments.service_logs import run_logs

            return run_logs(home, args)
        if args.command in ("catalog", "dora"):
            from deployments.catalog_cli import run_catalog, run_dora

            return (run_catalog if args.command == "catalog" else run_dora)(home, args)
        if args.command == "vuln":
            from deployments.vuln_cli import run_vuln

            return run_vuln(home, args)
        if args.command == "settings":
            from deployments.settings import base_image

            present = base_image(home, args.image, check=not args.no_check)
            return 0 if present or args.image else 1
        return _status(home)
    except SlipwayError as e:
        print(f"slipway: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _up(home: SlipwayHome, args: argparse.Namespace) -> int:
    from deployments.roles import up
    from deployments.supervisor import UpOptions

    ports = Ports.from_env()
    overrides = {
        name: getattr(args, f"{name}_port")
        for name in _PORT_FLAGS
        if getattr(args, f"{name}_port") is not None
    }
    project = args.project.resolve()
    if not (project / "prefect.yaml").is_file():
        raise SlipwayError(
            f"{project} has no prefect.yaml", hint="pass --project with the Slipway checkout"
        )
    if args.role != "worker":  # a worker host runs the server's commit, not this checkout
        from deployments.project import check_project

        check_project(project)  # before the home is touched or anything starts
    options = UpOptions(home=home, ports=replace(ports, **overrides), project_dir=project)
    up(_with_role(options, args))
    return 0


def _with_role(options: UpOptions, args: argparse.Namespace) -> UpOptions:
    """Check the scale-out flags against the role before anything starts."""
    from deployments.components import DATABASE_ENV, Database, WorkerSettings, server_api_url
    from deployments.pool import CrashDetection, check_entrypoints_committed, platform_code

    role = args.role
    raw_db = args.database or next((os.environ[k] for k in DATABASE_ENV if os.environ.get(k)), "")
    server = args.server or os.environ.get("SLIPWAY_SERVER")
    if role == "worker":
        if args.database:
            raise ConfigurationError(
                "a worker host has no database of its own",
                hint="give --database to the server host; workers only need --server",
            )
        if not server:
            raise ConfigurationError(
                "a worker host needs the URL of its Prefect server",
                hint="pass --server http://SERVER-HOST:4200 or set SLIPWAY_SERVER",
            )
    elif args.server:
        raise ConfigurationError(
            f"role {role} runs its own Prefect server, so --server does not apply",
            hint="use --role worker to join another server",
        )
    if args.public_url and role == "worker":
        raise ConfigurationError(
            "--public-url belongs to the server host", hint="give workers --server URL instead"
        )
    worker = None
    if role in ("worker", "all"):
        worker = WorkerSettings(
            api_url=server_api_url(server or "")
            if role == "worker"
            else options.ports.prefect_api_url,
            pool=args.pool,
            name=args.worker_name,
            poll_seconds=args.poll_seconds,
            limit=args.limit,
        )
    code = None
    if role in ("server", "all"):
        code = platform_code(options.project_dir, repository=args.repository, commit=args.commit)
        check_entrypoints_committed(options.project_dir, code)
    return replace(
        options,
        role=role,
        database=Database.parse(raw_db) if raw_db and role != "worker" else None,
        worker=worker,
        code=code,
        crash=CrashDetection(args.heartbeat_seconds, args.crash_after),
        public_url=server_api_url(args.public_url).removesuffix("/api")
        if args.public_url
        else None,
    )


def _onboard(home: SlipwayHome, args: argparse.Namespace) -> int:
    from deployments.commands import onboard

    request = {
        "name": args.name,
        "owner": args.owner,
        "description": args.description,
        "template": args.template,
        "environments": args.environments or ["dev"],
        "port": args.port,
    }
    print(onboard(home, request, dry_run=args.dry_run))
    return 0


def _status(home: SlipwayHome) -> int:
    from deployments.state import read_state

    state = read_state(home)
    if state is not None:  # talk to this home's server, whatever the shell has set
        from deployments.commands import use_api_auth

        os.environ["PREFECT_API_URL"] = state.prefect_api_url()
        use_api_auth(home)
    from deployments.status import collect_status, format_table

    results = collect_status(home)
    print(format_table(results))
    return 0 if all(r.healthy or not r.required for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
