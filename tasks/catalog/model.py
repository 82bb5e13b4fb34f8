"""The whole catalog as one model: every kind read at once, written in place, checked as a graph.

`CatalogModel` reads Components (through `tasks.catalog.Catalog`), Groups,
Systems and APIs, and writes the hand-kept kinds. Every commit to the
catalog, whoever makes it, also rewrites what is derived
(`tasks.catalog.entities.with_derived_files`):
a service's Resources whenever its entry changes, and the root Location
whenever a file comes or goes, in the same commit, so the repository is
always one a real Backstage can ingest as it is.

`validate` walks the relations (ownedBy, partOf, dependsOn, providesApi,
consumesApi) and names every reference that points at nothing, with the
command that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import git
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction, get_transaction

from slipway.errors import CatalogError, InvalidRequest
from tasks.catalog.entities import (
    HAND_KEPT,
    ApiEntity,
    GroupEntity,
    SystemEntity,
    resource_name,
    to_yaml,
    with_derived_files,
)
from tasks.catalog.entry import CatalogEntry
from tasks.catalog.refs import EntityRef
from tasks.catalog.repository import Catalog

if TYPE_CHECKING:
    from blocks.git_server import GitServer
    from tasks.git import Author

__all__ = [
    "HAND_KEPT",
    "CatalogModel",
    "CatalogSnapshot",
    "Problem",
    "ensure_owner_group",
    "save_entity",
    "validate",
    "with_derived_files",
]

_ENTRY_FILE = "catalog-info.yaml"
E = TypeVar("E", GroupEntity, SystemEntity, ApiEntity)


@dataclass(frozen=True)
class CatalogSnapshot:
    """Every entity of the catalog, read at about one moment."""

    components: tuple[CatalogEntry, ...] = ()
    groups: tuple[GroupEntity, ...] = ()
    systems: tuple[SystemEntity, ...] = ()
    apis: tuple[ApiEntity, ...] = ()
    unreadable: tuple[str, ...] = ()
    """Files that could not be read, each with why; the rest is still shown."""

    def group(self, name: str) -> GroupEntity | None:
        """The group called ``name``, or None."""
        return next((g for g in self.groups if g.name == name), None)

    def owned_by(self, group: str) -> tuple[CatalogEntry, ...]:
        """The services whose owner is the group ``group`` (any spelling of its reference)."""
        return tuple(c for c in self.components if owner_group(c.owner) == group)


def owner_group(owner: str) -> str | None:
    """The local group an owner reference names, or None (a user, another namespace)."""
    try:
        ref = EntityRef.parse(owner, default_kind="group")
    except InvalidRequest:
        return None
    return ref.name if ref.kind == "group" and ref.local else None


class CatalogModel:
    """Every kind of the catalog repository on one git server.

    Example:
        ```python
        model = CatalogModel(Catalog.load_default())
        model.save(GroupEntity(name="payments", members=("alice",)), message="Add payments")
        print([g.name for g in model.read().groups])
        ```
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @classmethod
    def load_default(cls) -> CatalogModel:
        """The catalog of the platform's git server."""
        return cls(Catalog.load_default())

    def read(self) -> CatalogSnapshot:
        """Every entity; an unreadable file is reported, not fatal, so one typo hides nothing else."""
        unreadable: list[str] = []
        found: dict[type, list[object]] = {kind: [] for kind in HAND_KEPT}
        for kind in HAND_KEPT:
            for path, data in sorted(self.catalog.files(kind.directory).items()):
                try:
                    found[kind].append(kind.parse(data, source=path))
                except CatalogError as e:
                    unreadable.append(str(e))
        return CatalogSnapshot(
            components=tuple(self.catalog.entries()),
            groups=tuple(found[GroupEntity]),  # type: ignore[arg-type]
            systems=tuple(found[SystemEntity]),  # type: ignore[arg-type]
            apis=tuple(found[ApiEntity]),  # type: ignore[arg-type]
            unreadable=tuple(unreadable),
        )

    def find(self, kind: type[E], name: str) -> E | None:
        """One hand-kept entity by kind and name, or None."""
        data = self.catalog.files(kind.directory).get(f"{kind.directory}/{name}.yaml")
        return None if data is None else kind.parse(data, source=f"{kind.directory}/{name}.yaml")

    def exists(self, entity: GroupEntity | SystemEntity | ApiEntity) -> bool:
        """Whether an entity of that kind and name is in the catalog already."""
        return entity.path in self.catalog.files(entity.directory)

    def save(
        self,
        entity: GroupEntity | SystemEntity | ApiEntity,
        *,
        message: str,
        author: Author | None = None,
    ) -> str | None:
        """Add or replace ``entity``; returns the commit, or None when nothing changed."""
        return self.catalog.write(
            {entity.path: to_yaml(entity.to_document())}, message=message, author=author
        )

    def remove(self, kind: type[E], name: str, *, message: str) -> str | None:
        """Remove one hand-kept entity; returns the commit, or None when it was not there."""
        return self.catalog.write({f"{kind.directory}/{name}.yaml": None}, message=message)

    def sync(self, *, message: str = "Rewrite the derived entities") -> str | None:
        """Rewrite every service's Resources and the Location from the entries as they are.

        Catalogs written before Resources existed get them here; it changes
        nothing else, and makes no commit when all is current.
        """
        files: dict[str, bytes | None] = {
            f"{e.name}/{_ENTRY_FILE}": e.to_yaml().encode() for e in self.catalog.entries()
        }
        return self.catalog.write(files, message=message)

    def stale_derived_files(self) -> list[str]:
        """Derived files that differ from what the entries imply: `sync` rewrites them."""
        repo, tip = git.Repo(self.catalog.url), self.catalog.tip()
        if tip is None:
            return []
        tree = repo.commit(tip).tree
        entries = {f"{e.name}/{_ENTRY_FILE}": e.to_yaml().encode() for e in self.catalog.entries()}
        expected = with_derived_files(repo, tip, entries)
        stale = []
        for path, data in expected.items():
            if path in entries:
                continue  # the entries are the source; only what derives from them can be stale
            try:
                current: bytes | None = (tree / path).data_stream.read()
            except KeyError:
                current = None
            if current != data:
                stale.append(path)
        return sorted(stale)


Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing `slipway catalog validate` found."""

    entity: str
    """The entity or file it is about, e.g. ``component:payments-api``."""
    message: str
    hint: str = ""
    level: Level = "error"

    def __str__(self) -> str:
        fix = f" Fix: {self.hint}" if self.hint else ""
        return f"{self.level}: {self.entity}: {self.message}.{fix}"


def validate(snapshot: CatalogSnapshot, *, stale: Sequence[str] = ()) -> list[Problem]:
    """Every relation that points at nothing, every empty team, every unreadable or stale file."""
    known = (
        {f"component:{c.name}" for c in snapshot.components}
        | {
            f"resource:{resource_name(c.name, e)}"
            for c in snapshot.components
            for e in c.environment_names
        }
        | {g.ref for g in snapshot.groups}
        | {s.ref for s in snapshot.systems}
        | {a.ref for a in snapshot.apis}
    )
    problems = [Problem("catalog", text) for text in snapshot.unreadable]
    for component in snapshot.components:
        problems += _component_problems(component, known)
    for group in snapshot.groups:
        if group.parent and group.parent not in known:
            problems.append(_missing(group.ref, "parent", group.parent))
        if not group.members:
            problems.append(
                Problem(
                    group.ref,
                    "has no members, so nobody can approve its changes",
                    f"slipway catalog group {group.name} --member NAME --approver NAME",
                    "warning",
                )
            )
    owned: tuple[SystemEntity | ApiEntity, ...] = (*snapshot.systems, *snapshot.apis)
    for entity in owned:
        if entity.owner not in known:
            problems.append(_missing(entity.ref, "owner", entity.owner))
    for api in snapshot.apis:
        if api.system and api.system not in known:
            problems.append(_missing(api.ref, "system", api.system))
    problems += [
        Problem(path, "is out of date with the entries", "slipway catalog sync") for path in stale
    ]
    return problems


def _component_problems(component: CatalogEntry, known: set[str]) -> list[Problem]:
    ref = f"component:{component.name}"
    found = []
    owner = owner_group(component.owner)
    if owner is not None and f"group:{owner}" not in known:
        found.append(_missing(ref, "owner", f"group:{owner}"))
    relations = [("system", component.system)] if component.system else []
    relations += [("dependsOn", r) for r in component.depends_on]
    relations += [("providesApis", r) for r in component.provides_apis]
    relations += [("consumesApis", r) for r in component.consumes_apis]
    found += [_missing(ref, name, target) for name, target in relations if target not in known]
    return found


def _missing(entity: str, relation: str, target: str) -> Problem:
    kind, _, name = target.partition(":")
    fixes = {
        "group": f"slipway catalog group {name} --member NAME",
        "system": f"slipway catalog system {name} --owner group:TEAM",
        "api": f"slipway catalog api {name} --owner group:TEAM --definition FILE",
    }
    hint = fixes.get(kind, f"add {target} to the catalog, or drop the relation")
    return Problem(entity, f"{relation} {target} is not in the catalog", hint)


@task(name="ensure-owner-group", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def ensure_owner_group(server: GitServer, owner: str, service: str) -> str | None:
    """Create the owner's Group when the catalog has none; returns the note shown, else None.

    A new team gets an empty group, so the catalog's relations hold at once;
    the note says how to add members and approvers. Inside a transaction,
    a rollback removes a group made here.
    """
    name = owner_group(owner)
    model = CatalogModel(Catalog(server))
    if name is None or model.find(GroupEntity, name) is not None:
        return None
    fix = f"slipway catalog group {name} --member NAME --approver NAME"
    group = GroupEntity(
        name=name,
        description=f"Created when {service} was onboarded. Add the team's members and approvers: {fix}",
    )
    model.save(group, message=f"Create group {name}, the owner of {service}, which had no entry")
    txn = get_transaction()
    if txn is not None:
        txn.set("created_group", name)
    note = (
        f"The owner {owner} had no Group in the catalog, so an empty one was created. "
        f"It has no members or approvers yet: `{fix}`."
    )
    get_run_logger().warning(note)
    create_markdown_artifact(
        key=f"group-{name.lower().replace('_', '-').replace('.', '-')}",
        markdown=f"# New group `{name}`\n\n{note}\n",
        description=f"Group {name} created for {service}",
    )
    return note


@ensure_owner_group.on_rollback
def _remove_new_group(txn: Transaction) -> None:
    name = txn.get("created_group", None)
    if name:
        CatalogModel.load_default().remove(GroupEntity, name, message=f"Roll back group {name}")
        get_run_logger().warning("rolled back: removed group %s", name)


@task(name="save-entity", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def save_entity(entity: GroupEntity | SystemEntity | ApiEntity) -> str | None:
    """Write one hand-kept entity; returns the catalog commit, or None when unchanged."""
    model = CatalogModel.load_default()
    verb = "Update" if model.exists(entity) else "Add"
    commit = model.save(entity, message=f"{verb} {entity.ref}")
    get_run_logger().info("%s %s: %s", verb, entity.ref, commit or "no change")
    return commit
