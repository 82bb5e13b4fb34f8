"""The catalog's other kinds: Group, System, API, and the Resources and Location derived from it.

Services are ``Component`` entities (`tasks.catalog.CatalogEntry`). Around
them, in Backstage's own format so a real Backstage ingests the repository
as it is:

- ``Group``: a team, its members and who may approve its changes
  (``_groups/<name>.yaml``); a Component's ``spec.owner`` points at one;
- ``System``: services that form one product (``_systems/<name>.yaml``),
  joined by each Component's ``spec.system`` (partOf);
- ``API``: what a service serves (``_apis/<name>.yaml``), joined by
  ``spec.providesApis`` and ``spec.consumesApis``;
- ``Resource``: one per environment of a service, with its Terraform outputs
  (``<service>/environments.yaml``, named ``<service>.<environment>``),
  ``dependencyOf`` the Component. Derived
  from the Component's entry whenever it is written, never edited by hand;
- ``Location`` (``catalog-info.yaml`` at the root): lists every entity file,
  so registering that one URL in Backstage imports the whole catalog.

The ``_`` prefix keeps these directories apart from services', whose names
are DNS labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

import git
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from slipway.errors import CatalogError
from slipway.names import NameDumper
from tasks.catalog.entry import (
    ANNOTATION_PREFIX,
    API_VERSION,
    CatalogEntry,
    record_strings,
)
from tasks.catalog.refs import canonical_ref, check_entity_name

__all__ = [
    "ENVIRONMENTS_FILE",
    "HAND_KEPT",
    "LOCATION_FILE",
    "ApiEntity",
    "GroupEntity",
    "SystemEntity",
    "location_document",
    "resource_documents",
    "resource_name",
    "to_yaml",
    "with_derived_files",
]

LOCATION_FILE = "catalog-info.yaml"
"""The root Location, at the repository's top level."""
ENVIRONMENTS_FILE = "environments.yaml"
"""Each service's Resources, next to its ``catalog-info.yaml``."""

_APPROVERS = f"{ANNOTATION_PREFIX}approvers"


def _name(value: str) -> str:
    return check_entity_name(value)


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({check_entity_name(v, what="member") for v in values}))


EntityName = Annotated[str, AfterValidator(_name)]
Owner = Annotated[str, AfterValidator(canonical_ref("group"))]


class _Entity(BaseModel):
    """What the hand-kept kinds share: a name, a description, a file of their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    directory: ClassVar[str]

    name: EntityName = Field(description="Backstage's metadata.name; also the file's name.")
    description: str = Field(default="", max_length=1000, description="What it is, for people.")

    @property
    def path(self) -> str:
        """Where the entity's file lives in the catalog repository."""
        return f"{self.directory}/{self.name}.yaml"

    @property
    def ref(self) -> str:
        """``kind:name``, as other entities refer to it."""
        return f"{self.kind.lower()}:{self.name}"

    def _document(self, spec: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "description": self.description}
        if annotations:
            metadata["annotations"] = annotations
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata, "spec": spec}

    @classmethod
    def _fields(cls, document: object, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The metadata and spec of a document of this kind; CatalogError otherwise."""
        if not isinstance(document, dict) or document.get("kind") != cls.kind:
            raise CatalogError(f"{source} is not a {cls.kind} entity")
        metadata, spec = document.get("metadata"), document.get("spec")
        if not isinstance(metadata, dict) or not isinstance(spec, dict):
            raise CatalogError(f"{source} has no metadata or spec mapping")
        return metadata, spec

    @classmethod
    def parse(cls, data: bytes, *, source: str) -> Self:
        """Read one entity file; anything unreadable is a CatalogError naming the file."""
        try:
            document = yaml.safe_load(data)
            metadata, spec = cls._fields(document, source)
            return cls.from_fields(metadata, spec)
        except (yaml.YAMLError, KeyError, TypeError, ValueError, ValidationError) as e:
            raise CatalogError(
                f"{source} is not a valid {cls.kind}: {e}",
                hint="fix the file in the platform-catalog repository, or remove it",
            ) from e

    @classmethod
    def from_fields(cls, metadata: dict[str, Any], spec: dict[str, Any]) -> Self:
        """Build the entity from its metadata and spec; each kind says how."""
        raise NotImplementedError

    def to_document(self) -> dict[str, Any]:
        """The Backstage entity; each kind says how."""
        raise NotImplementedError


class GroupEntity(_Entity):
    """A team: it owns services, its members work on them, its approvers may approve changes.

    Example:
        ```python
        GroupEntity(name="payments", members=("alice", "bob"), approvers=("alice",))
        ```
    """

    kind: ClassVar[str] = "Group"
    directory: ClassVar[str] = "_groups"

    title: str = Field(default="", max_length=200, description="Display name.")
    members: Annotated[tuple[str, ...], AfterValidator(_names)] = Field(
        default=(), description="User names of the team's members."
    )
    approvers: Annotated[tuple[str, ...], AfterValidator(_names)] = Field(
        default=(), description="Members who may approve the team's production changes."
    )
    parent: Annotated[str, AfterValidator(canonical_ref("group"))] = Field(
        default="", description="The group this one belongs to, if any."
    )

    @model_validator(mode="after")
    def _approvers_are_members(self) -> Self:
        outsiders = sorted(set(self.approvers) - set(self.members))
        if outsiders:
            raise ValueError(f"approvers {', '.join(outsiders)} are not members of {self.name}")
        return self

    def to_document(self) -> dict[str, Any]:
        """The Backstage Group; approvers travel as an annotation Backstage keeps as is."""
        spec: dict[str, Any] = {"type": "team", "children": [], "members": list(self.members)}
        if self.title:
            spec["profile"] = {"displayName": self.title}
        if self.parent:
            spec["parent"] = self.parent
        notes = {_APPROVERS: ",".join(self.approvers)} if self.approvers else {}
        return self._document(spec, notes)

    @classmethod
    def from_fields(cls, metadata: dict[str, Any], spec: dict[str, Any]) -> GroupEntity:  # noqa: D102
        notes = metadata.get("annotations") or {}
        return cls(
            name=metadata["name"],
            description=metadata.get("description") or "",
            title=(spec.get("profile") or {}).get("displayName") or "",
            members=tuple(str(m).removeprefix("user:") for m in spec.get("members") or ()),
            approvers=tuple(a for a in str(notes.get(_APPROVERS, "")).split(",") if a),
            parent=spec.get("parent") or "",
        )


class SystemEntity(_Entity):
    """Services that together make one product; each names it in ``spec.system``."""

    kind: ClassVar[str] = "System"
    directory: ClassVar[str] = "_systems"

    owner: Owner = Field(description="The owning group, e.g. group:payments.")

    def to_document(self) -> dict[str, Any]:  # noqa: D102
        return self._document({"owner": self.owner}, {})

    @classmethod
    def from_fields(cls, metadata: dict[str, Any], spec: dict[str, Any]) -> SystemEntity:  # noqa: D102
        return cls(
            name=metadata["name"],
            description=metadata.get("description") or "",
            owner=spec["owner"],
        )


class ApiEntity(_Entity):
    """An interface a service provides, with its definition (OpenAPI, AsyncAPI, gRPC, GraphQL)."""

    kind: ClassVar[str] = "API"
    directory: ClassVar[str] = "_apis"

    type: Literal["openapi", "asyncapi", "graphql", "grpc"] = "openapi"
    lifecycle: Literal["experimental", "production", "deprecated"] = "experimental"
    owner: Owner = Field(description="The owning group, e.g. group:payments.")
    system: Annotated[str, AfterValidator(canonical_ref("system"))] = ""
    definition: str = Field(
        min_length=1, max_length=200_000, description="The definition itself, as text."
    )

    def to_document(self) -> dict[str, Any]:  # noqa: D102
        spec: dict[str, Any] = {"type": self.type, "lifecycle": self.lifecycle, "owner": self.owner}
        if self.system:
            spec["system"] = self.system
        spec["definition"] = self.definition
        return self._document(spec, {})

    @classmethod
    def from_fields(cls, metadata: dict[str, Any], spec: dict[str, Any]) -> ApiEntity:  # noqa: D102
        return cls(
            name=metadata["name"],
            description=metadata.get("description") or "",
            type=spec["type"],
            lifecycle=spec.get("lifecycle", "experimental"),
            owner=spec["owner"],
            system=spec.get("system") or "",
            definition=spec["definition"],
        )


def to_yaml(*documents: dict[str, Any]) -> bytes:
    """Documents as committed: safe YAML, stable key order, ``---`` between several."""
    dumped = yaml.dump_all(documents, Dumper=NameDumper, sort_keys=False, allow_unicode=True)
    return dumped.encode()


def resource_name(service: str, environment: str) -> str:
    """The Resource of one environment: ``<service>.<environment>``, shortened past 63 characters.

    Both parts are DNS labels, which hold no ``.``: no two environments share a name.
    """
    name = f"{service}.{environment}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-_.')}-{digest}"


def resource_documents(entry: CatalogEntry) -> list[dict[str, Any]]:
    """One Resource per environment of ``entry``, previews included, with its Terraform outputs."""
    documents = []
    for environment in entry.environment_names:
        record = entry.outputs.get(environment)
        outputs = record_strings(record) if record is not None else {}
        metadata: dict[str, Any] = {
            "name": resource_name(entry.name, environment),
            "title": f"{entry.name} in {environment}",
            "description": f"The {environment} environment of {entry.name}.",
            "annotations": {
                f"{ANNOTATION_PREFIX}service": entry.name,
                f"{ANNOTATION_PREFIX}environment": environment,
                f"{ANNOTATION_PREFIX}provisioned": str(record is not None).lower(),
                f"{ANNOTATION_PREFIX}outputs": json.dumps(outputs, sort_keys=True),
            },
        }
        if outputs.get("url"):
            metadata["links"] = [{"url": outputs["url"], "title": f"{environment} endpoint"}]
        spec: dict[str, Any] = {
            "type": "environment",
            "owner": entry.owner,
            "dependencyOf": [f"component:{entry.name}"],
        }
        if entry.system:
            spec["system"] = entry.system
        documents.append(
            {"apiVersion": API_VERSION, "kind": "Resource", "metadata": metadata, "spec": spec}
        )
    return documents


def location_document(paths: list[str]) -> dict[str, Any]:
    """The root Location: every entity file of the repository, as relative targets."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Location",
        "metadata": {
            "name": "slipway-catalog",
            "description": "Every entity of Slipway's catalog. Register this file in Backstage.",
        },
        # No `type`: relative targets take the type of however Backstage reads this file.
        "spec": {"targets": [f"./{p}" for p in sorted(paths)]},
    }


# -- what follows from the entries: Resources and the root Location --------------


HAND_KEPT: tuple[type[GroupEntity] | type[SystemEntity] | type[ApiEntity], ...] = (
    GroupEntity,
    SystemEntity,
    ApiEntity,
)
"""The kinds people keep, each in a directory of its own."""

_ENTRY_FILE = "catalog-info.yaml"


def _is_entity_file(path: str) -> bool:
    top, slash, rest = path.partition("/")
    if not slash or "/" in rest:
        return False
    if top in {kind.directory for kind in HAND_KEPT}:
        return rest.endswith(".yaml")
    return rest in (_ENTRY_FILE, ENVIRONMENTS_FILE)


def _paths(repo: git.Repo, tip: str | None) -> set[str]:
    """Every file at ``tip`` down to the depth the catalog uses (two levels)."""
    if tip is None:
        return set()
    root = repo.commit(tip).tree
    return {str(b.path) for b in root.blobs} | {str(b.path) for t in root.trees for b in t.blobs}


def derived_resources(path: str, data: bytes | None) -> bytes | None:
    """The ``environments.yaml`` that belongs next to the entry file ``path`` holding ``data``."""
    if data is None:
        return None
    entry = CatalogEntry.from_document(yaml.safe_load(data), source=path)
    documents = resource_documents(entry)
    return to_yaml(*documents) if documents else None


def with_derived_files(
    repo: git.Repo, tip: str | None, files: Mapping[str, bytes | None]
) -> dict[str, bytes | None]:
    """``files`` plus what follows from them: changed services' Resources and the root Location."""
    changes = dict(files)
    for path, data in files.items():
        service, _, name = path.partition("/")
        if name == _ENTRY_FILE:
            changes[f"{service}/{ENVIRONMENTS_FILE}"] = derived_resources(path, data)
    paths = _paths(repo, tip)
    paths |= {p for p, d in changes.items() if d is not None}
    paths -= {p for p, d in changes.items() if d is None}
    entities = sorted(p for p in paths if _is_entity_file(p))
    changes[LOCATION_FILE] = to_yaml(location_document(entities))
    return changes
