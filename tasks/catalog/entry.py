"""A service's catalog entry, and what was provisioned for each of its environments.

An entry is a Backstage ``Component`` entity (``catalog-info.yaml``); Slipway
keeps its own facts in ``slipway.dev/*`` annotations. What provisioning
applied to an environment is one `EnvironmentRecord`, kept as JSON in the
annotation ``slipway.dev/outputs.<environment>``. Records written before they
were typed (every value a string, e.g. ``{"port": "8101", "variables": "{...}"}``)
are still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from slipway.errors import CatalogError, ConfigurationError
from slipway.names import EnvironmentName, NameDumper, ServiceName
from tasks.catalog.refs import canonical_ref, canonical_refs

__all__ = [
    "ANNOTATION_PREFIX",
    "API_VERSION",
    "CatalogEntry",
    "EnvironmentOutputs",
    "EnvironmentRecord",
    "record_strings",
]

ANNOTATION_PREFIX = "slipway.dev/"
"""Every annotation Slipway writes starts with this."""

API_VERSION = "backstage.io/v1alpha1"
_OUTPUTS = f"{ANNOTATION_PREFIX}outputs."
_EnvironmentKey = Annotated[str, AfterValidator(EnvironmentName.parse)]
"""An environment's name as a key: checked as an `EnvironmentName`, looked up with any string."""
_DEV = EnvironmentName.parse("dev")


class EnvironmentOutputs(BaseModel):
    """What an environment module's outputs say, typed where Slipway reads them.

    Every environment module provides ``port``, ``replicas`` and ``env_vars``
    (docs/operations/terraform.md); a value that does not fit its type is kept
    in `other` as it came, and the typed field stays empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int | None = Field(default=None, description="The host port the service publishes.")
    replicas: int | None = Field(default=None, description="How many containers run it.")
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="The environment variables of its containers."
    )
    other: dict[str, JsonValue] = Field(
        default_factory=dict, description="Every other output, e.g. container_name."
    )
    sensitive: tuple[str, ...] = Field(
        default=(), description="Outputs Terraform marks sensitive: named, never kept."
    )

    @classmethod
    def of(
        cls, values: Mapping[str, object], *, sensitive: Iterable[str] = ()
    ) -> EnvironmentOutputs:
        """From output values as Terraform gives them; ``sensitive`` names those withheld."""
        return cls.model_validate(_typed_outputs(values, sensitive))


def _typed_outputs(values: Mapping[str, object], sensitive: Iterable[str]) -> dict[str, Any]:
    hidden = set(sensitive)
    typed: dict[str, Any] = {"other": {}, "sensitive": tuple(sorted(hidden))}
    for name, value in values.items():
        if name in hidden:
            continue
        if name in ("port", "replicas") and _whole_number(value):
            typed[name] = int(value)  # type: ignore[call-overload]
        elif name == "env_vars" and isinstance(value, dict):
            typed[name] = {str(k): str(v) for k, v in value.items()}
        else:
            typed["other"][name] = value
    return typed


def _whole_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


class EnvironmentRecord(EnvironmentOutputs):
    """What provisioning applied to one environment, as the catalog keeps it.

    Drift checks and later runs plan the same `variables` again, on any machine.
    """

    variables: dict[str, JsonValue] | None = Field(
        default=None, description="Every variable applied last; None when unreadable."
    )
    state: str = Field(
        default="", description="Where Terraform keeps the state: a path or s3:// URL."
    )
    expires_at: datetime | None = Field(
        default=None, description="When a preview environment is destroyed; None: never."
    )

    @model_validator(mode="before")
    @classmethod
    def _read_untyped(cls, data: object) -> object:
        """A record written before records were typed: every value a string."""
        if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
            return _from_strings(data)
        return data

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """A time without a zone, as one written by hand may be, is taken as UTC."""
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    def applied_variables(self) -> dict[str, object]:
        """The variables that were applied last.

        Raises:
            ConfigurationError: the record was edited into something unreadable.
        """
        if self.variables is None:
            raise ConfigurationError(
                "the catalog's record of this environment has no readable `variables`",
                hint="provision the environment again with provision-environment",
            )
        return dict(self.variables)


_SENSITIVE = "(sensitive)"
"""How records written before they were typed showed a sensitive output."""


def record_strings(record: EnvironmentRecord) -> dict[str, str]:
    """``record`` as one string per name, for readers of annotations (Backstage's Resources).

    Module outputs (numbers and maps as JSON, a sensitive one as ``(sensitive)``),
    then ``variables``, ``state`` and ``expires_at`` where the record has them:
    the shape records had before they were typed.
    """
    outputs: dict[str, object] = {**record.other, **dict.fromkeys(record.sensitive, _SENSITIVE)}
    if record.port is not None:
        outputs["port"] = record.port
    if record.replicas is not None:
        outputs["replicas"] = record.replicas
    if record.env_vars:
        outputs["env_vars"] = record.env_vars
    if record.variables is not None:
        outputs["variables"] = record.variables
    if record.state:
        outputs["state"] = record.state
    if record.expires_at is not None:
        outputs["expires_at"] = record.expires_at.isoformat(timespec="seconds")
    return {
        name: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for name, value in outputs.items()
    }


def _from_strings(values: dict[str, str]) -> dict[str, Any]:
    """An untyped record's strings: module outputs (numbers and maps as JSON) and bookkeeping."""
    outputs = {
        name: _json(value) if name in ("port", "replicas", "env_vars") else value
        for name, value in values.items()
        if name not in ("variables", "state", "expires_at")
    }
    hidden = [name for name, value in outputs.items() if value == _SENSITIVE]
    variables = _json(values["variables"]) if "variables" in values else None
    return {
        **_typed_outputs(outputs, hidden),
        "variables": variables if isinstance(variables, dict) else None,
        "state": values.get("state", ""),
        "expires_at": values.get("expires_at") or None,
    }


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


class CatalogEntry(BaseModel):
    """One service in the catalog, as Slipway reads it back from Backstage's format.

    Example:
        ```python
        CatalogEntry(name="payments-api", owner="group:payments", port=8101,
                     repository="/srv/git/payments-api.git")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ServiceName = Field(
        description="The service's DNS-1123 name; also its repository's name."
    )
    description: str = Field(default="", max_length=500)
    owner: str = Field(description="The owning team, as a Backstage entity reference.")
    type: str = Field(default="service", description="Backstage's spec.type.")
    lifecycle: Literal["experimental", "production", "deprecated"] = "experimental"
    repository: str = Field(description="Where `git clone` finds the service.")
    port: int = Field(ge=1024, le=65535, description="The port the service listens on.")
    environments: tuple[EnvironmentName, ...] = (_DEV,)
    template: str = "python-service"
    template_version: str = ""
    outputs: dict[_EnvironmentKey, EnvironmentRecord] = Field(
        default_factory=dict,
        description="Per environment, what provisioning applied and its module reported.",
    )
    system: Annotated[str, AfterValidator(canonical_ref("system"))] = Field(
        default="", description="The System it is part of (partOf), if any."
    )
    depends_on: Annotated[tuple[str, ...], AfterValidator(canonical_refs(None))] = Field(
        default=(), description="Components and Resources it needs (dependsOn), as kind:name."
    )
    provides_apis: Annotated[tuple[str, ...], AfterValidator(canonical_refs("api"))] = Field(
        default=(), description="The APIs it serves (providesApi)."
    )
    consumes_apis: Annotated[tuple[str, ...], AfterValidator(canonical_refs("api"))] = Field(
        default=(), description="The APIs it calls (consumesApi)."
    )

    @property
    def environment_names(self) -> tuple[str, ...]:
        """Every environment it has: the declared ones, then provisioned ones such as previews."""
        return (*self.environments, *sorted(set(self.outputs) - set(self.environments)))

    def to_document(self) -> dict[str, Any]:
        """The Backstage ``Component`` entity of this service."""
        annotations = {
            f"{ANNOTATION_PREFIX}repository": self.repository,
            f"{ANNOTATION_PREFIX}port": str(self.port),
            f"{ANNOTATION_PREFIX}environments": ",".join(self.environments),
            f"{ANNOTATION_PREFIX}template": self.template,
            f"{ANNOTATION_PREFIX}template-version": self.template_version,
        }
        for environment, record in sorted(self.outputs.items()):
            annotations[f"{_OUTPUTS}{environment}"] = json.dumps(
                record.model_dump(mode="json"), sort_keys=True
            )
        spec: dict[str, Any] = {"type": self.type, "lifecycle": self.lifecycle, "owner": self.owner}
        relations = {
            "system": self.system,
            "dependsOn": list(self.depends_on),
            "providesApis": list(self.provides_apis),
            "consumesApis": list(self.consumes_apis),
        }
        spec.update({key: value for key, value in relations.items() if value})
        return {
            "apiVersion": API_VERSION,
            "kind": "Component",
            "metadata": {
                "name": self.name,
                "description": self.description,
                "annotations": annotations,
            },
            "spec": spec,
        }

    def to_yaml(self) -> str:
        """The file as it is committed: safe YAML, keys in a stable order."""
        return yaml.dump(self.to_document(), Dumper=NameDumper, sort_keys=False, allow_unicode=True)

    @classmethod
    def from_document(cls, document: object, *, source: str = "catalog entry") -> CatalogEntry:
        """Read a ``Component`` entity; refuses anything that is not Slipway's shape."""
        try:
            if not isinstance(document, dict):
                raise TypeError("not a mapping")
            if document.get("apiVersion") != API_VERSION or document.get("kind") != "Component":
                raise ValueError(f"must be apiVersion {API_VERSION}, kind Component")
            metadata, spec = document["metadata"], document["spec"]
            notes: dict[str, str] = metadata.get("annotations") or {}
            outputs = {
                key.removeprefix(_OUTPUTS): json.loads(value)
                for key, value in notes.items()
                if key.startswith(_OUTPUTS)
            }
            environments = notes.get(f"{ANNOTATION_PREFIX}environments", "")
            return cls(
                name=metadata["name"],
                description=metadata.get("description") or "",
                owner=spec["owner"],
                type=spec.get("type", "service"),
                lifecycle=spec.get("lifecycle", "experimental"),
                repository=notes[f"{ANNOTATION_PREFIX}repository"],
                port=int(notes[f"{ANNOTATION_PREFIX}port"]),
                environments=tuple(e for e in environments.split(",") if e),
                template=notes.get(f"{ANNOTATION_PREFIX}template", "python-service"),
                template_version=notes.get(f"{ANNOTATION_PREFIX}template-version", ""),
                outputs=outputs,
                system=spec.get("system") or "",
                depends_on=tuple(spec.get("dependsOn") or ()),
                provides_apis=tuple(spec.get("providesApis") or ()),
                consumes_apis=tuple(spec.get("consumesApis") or ()),
            )
        except (KeyError, TypeError, ValueError, ValidationError) as e:
            raise CatalogError(
                f"{source} is not a valid Slipway catalog entry: {e}",
                hint="fix the file in the platform-catalog repository, or remove it",
            ) from e
