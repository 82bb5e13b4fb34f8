"""`slipway catalog ...` and `slipway dora`: the catalog and the metrics from a terminal.

    slipway catalog list                         every entity; services with every environment
    slipway catalog validate                     relations that point at nothing, stale files
    slipway catalog sync                         rewrite the derived Resources and Location
    slipway catalog add-environment SVC ENV      add an environment and provision it
    slipway catalog group NAME --member U ...    add or change a team
    slipway catalog system NAME --owner TEAM     add or change a System
    slipway catalog api NAME --owner TEAM --definition FILE
    slipway catalog relate SVC [--system S] [--depends-on REF] [--provides API] [--consumes API]
    slipway dora [SERVICE | group:TEAM]          DORA metrics over 7, 30 and 90 days

Reads go straight to the catalog repository and Prefect; every change runs
the deployment of the same name, as the form in the UI does.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.commands import format_rows, run_and_wait, use_running_platform, validated
from slipway.errors import InvalidRequest
from slipway.home import SlipwayHome

if TYPE_CHECKING:
    from tasks.catalog.entities import ApiEntity, GroupEntity, SystemEntity

__all__ = ["add_commands", "run_catalog", "run_dora"]


def add_commands(commands: Any) -> None:
    """Register ``catalog`` and ``dora`` on the CLI's subcommands."""
    catalog = commands.add_parser("catalog", help="the catalog: services, teams, systems, APIs")
    sub = catalog.add_subparsers(dest="catalog_command", required=True)
    sub.add_parser("list", help="every entity; services with every environment, previews too")
    sub.add_parser("validate", help="check every relation; exit 1 when one points at nothing")
    sub.add_parser("sync", help="rewrite the Resources and the Location from the entries")
    env = sub.add_parser("add-environment", help="add an environment, e.g. staging")
    env.add_argument("service")
    env.add_argument("environment")
    env.add_argument("--no-provision", action="store_true", help="only add it to the catalog")
    group = sub.add_parser("group", help="add or change a team")
    group.add_argument("name")
    group.add_argument("--member", action="append", default=[], help="a member (repeatable)")
    group.add_argument("--approver", action="append", default=[], help="a member who approves")
    group.add_argument("--title", default="")
    group.add_argument("--description", default="")
    group.add_argument("--parent", default="", help="the parent group, e.g. group:engineering")
    system = sub.add_parser("system", help="add or change a System")
    system.add_argument("name")
    system.add_argument("--owner", required=True, help="e.g. group:payments")
    system.add_argument("--description", default="")
    api = sub.add_parser("api", help="add or change an API")
    api.add_argument("name")
    api.add_argument("--owner", required=True, help="e.g. group:payments")
    api.add_argument("--definition", type=Path, required=True, help="the definition's file")
    api.add_argument(
        "--type", default="openapi", choices=["openapi", "asyncapi", "graphql", "grpc"]
    )
    api.add_argument("--system", default="")
    api.add_argument("--description", default="")
    relate = sub.add_parser("relate", help="set a service's system, dependencies and APIs")
    relate.add_argument("service")
    relate.add_argument("--system", default="")
    relate.add_argument("--depends-on", action="append", default=[], help="e.g. component:billing")
    relate.add_argument("--provides", action="append", default=[], help="an API it serves")
    relate.add_argument("--consumes", action="append", default=[], help="an API it calls")
    dora = commands.add_parser("dora", help="DORA metrics of a service or team")
    dora.add_argument("subject", nargs="?", help="a service, or group:TEAM; all when left out")


def run_catalog(home: SlipwayHome, args: argparse.Namespace) -> int:
    """Run one ``slipway catalog`` subcommand; returns the exit code."""
    use_running_platform(home)  # before anything imports Prefect
    command = args.catalog_command
    if command == "list":
        print(catalog_list())
        return 0
    if command == "validate":
        return _validate()
    if command == "sync":
        from tasks.catalog.model import CatalogModel

        commit = CatalogModel.load_default().sync(message="Rewrite the derived entities (CLI)")
        print(f"rewritten in {commit[:12]}" if commit else "the derived entities are up to date")
        return 0
    deployment, parameters, what = _change(args)
    print(f"{what}: done. Details: {run_and_wait(home, deployment, parameters, what=what)}")
    return 0


def _change(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """The deployment, checked parameters and description of a catalog change."""
    from flows.catalog import EnvironmentRequest, Relations

    command = args.catalog_command
    if command == "add-environment":
        request = validated(
            EnvironmentRequest,
            {
                "service": args.service,
                "environment": args.environment,
                "provision": not args.no_provision,
            },
        )
        what = f"adding {request.environment} to {request.service}"
        return "add-environment/add-environment", {"request": request.model_dump(mode="json")}, what
    if command == "relate":
        relations = validated(
            Relations,
            {
                "service": args.service,
                "system": args.system,
                "depends_on": args.depends_on,
                "provides_apis": args.provides,
                "consumes_apis": args.consumes,
            },
        )
        dump = relations.model_dump(mode="json")
        return "set-relations/set-relations", {"relations": dump}, f"relating {args.service}"
    entity = _entity(args)
    kind = command
    return f"set-{kind}/set-{kind}", {kind: entity.model_dump(mode="json")}, f"setting {entity.ref}"


def _entity(args: argparse.Namespace) -> GroupEntity | SystemEntity | ApiEntity:
    """The Group, System or API that ``slipway catalog group|system|api`` describes, checked."""
    from tasks.catalog.entities import ApiEntity, GroupEntity, SystemEntity

    if args.catalog_command == "group":
        return validated(
            GroupEntity,
            {
                "name": args.name,
                "title": args.title,
                "description": args.description,
                "members": args.member,
                "approvers": args.approver,
                "parent": args.parent,
            },
        )
    if args.catalog_command == "system":
        return validated(
            SystemEntity,
            {"name": args.name, "owner": args.owner, "description": args.description},
        )
    return validated(
        ApiEntity,
        {
            "name": args.name,
            "owner": args.owner,
            "type": args.type,
            "system": args.system,
            "description": args.description,
            "definition": _read(args.definition),
        },
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidRequest(f"cannot read the definition {path}: {e.strerror}") from e


def catalog_list() -> str:
    """Every entity of the catalog as tables, or a line saying it is empty."""
    from tasks.catalog import catalog_rows
    from tasks.catalog.model import CatalogModel

    snapshot = CatalogModel.load_default().read()
    if not snapshot.components and not snapshot.groups:
        return "The catalog is empty. Onboard a service: slipway onboard NAME --owner TEAM"
    parts = [format_rows(catalog_rows(list(snapshot.components)))]
    groups = [
        {
            "group": g.name,
            "members": ", ".join(g.members) or "-",
            "approvers": ", ".join(g.approvers) or "-",
            "services": ", ".join(c.name for c in snapshot.owned_by(g.name)) or "-",
        }
        for g in snapshot.groups
    ]
    systems = [
        {"system": s.name, "owner": s.owner, "services": _part_of(snapshot, s.ref)}
        for s in snapshot.systems
    ]
    apis = [{"api": a.name, "type": a.type, "owner": a.owner} for a in snapshot.apis]
    parts += [format_rows(rows) for rows in (groups, systems, apis) if rows]
    parts += [f"unreadable: {text}" for text in snapshot.unreadable]
    return "\n\n".join(p for p in parts if p)


def _part_of(snapshot: Any, ref: str) -> str:
    return ", ".join(c.name for c in snapshot.components if c.system == ref) or "-"


def _validate() -> int:
    from tasks.catalog.model import CatalogModel, validate

    model = CatalogModel.load_default()
    snapshot = model.read()
    problems = validate(snapshot, stale=model.stale_derived_files())
    for problem in problems:
        print(problem)
    errors = sum(p.level == "error" for p in problems)
    count = len(snapshot.components) + len(snapshot.groups) + len(snapshot.systems)
    count += len(snapshot.apis)
    print(f"{count} entities checked: {errors} errors, {len(problems) - errors} warnings")
    return 1 if errors else 0


def run_dora(home: SlipwayHome, args: argparse.Namespace) -> int:
    """Print DORA metrics of one service, one team, or every service and team."""
    use_running_platform(home)
    from prefect import get_client

    from blocks import ArtifactStore
    from tasks.catalog.model import CatalogModel, owner_group
    from tasks.insights.dora import dora_report
    from tasks.insights.measure import dora_rows, service_facts
    from tasks.storage import open_store

    snapshot = CatalogModel.load_default().read()
    names = {c.name for c in snapshot.components}
    subject: str | None = args.subject
    if subject and subject.startswith("group:"):
        services = [c.name for c in snapshot.owned_by(subject.removeprefix("group:"))]
        if not services:
            raise InvalidRequest(f"{subject} owns no service in the catalog")
        subjects: dict[str, list[str]] = {subject: list(services)}
    elif subject:
        if subject not in names:
            known = ", ".join(sorted(names)) or "none"
            raise InvalidRequest(f"no service {subject!r} in the catalog (known: {known})")
        subjects = {f"component:{subject}": [subject]}
    else:
        subjects = {f"component:{n}": [n] for n in sorted(names)}
        for team in sorted({t for c in snapshot.components if (t := owner_group(c.owner))}):
            subjects[f"group:{team}"] = [c.name for c in snapshot.owned_by(team)]
    if not subjects:
        print("The catalog has no services yet.")
        return 0
    store, now = open_store(ArtifactStore.load_default()), datetime.now(UTC)
    with get_client(sync_client=True) as client:
        facts = {n: service_facts(client, store, n)[1] for s in subjects.values() for n in s}
    reports = [
        dora_report(subject, {n: facts[n] for n in services}, now=now)
        for subject, services in subjects.items()
    ]
    print(format_rows(dora_rows(reports)))
    return 0
