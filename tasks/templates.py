"""Service templates: render a golden-path template into a new directory with copier.

The onboarding flow calls `render_service` and commits what it wrote. Answers
are checked twice: by `ServiceAnswers` before copier runs, so a bad name is
refused before anything exists on disk, and again by the validators in the
template's ``copier.yml``, which also guard people running copier by hand.

Free text (the description) reaches generated files only JSON-encoded, so it
stays data in YAML, HCL and JSON; no generated file name is built from it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import copier
import yaml
from copier.errors import CopierError
from prefect import task
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from blocks.git_server import GitServer

from blocks.platform import DEFAULT_BASE_IMAGE
from slipway.errors import InvalidRequest, TemplateError
from slipway.names import EnvironmentName, ServiceName

__all__ = [
    "ANSWERS_FILE",
    "DEFAULT_INFRA_MODULE_SOURCE",
    "TEMPLATES_DIR",
    "RenderedService",
    "ServiceAnswers",
    "TemplateRelease",
    "available_templates",
    "check_description",
    "check_owner",
    "publish_template",
    "release_template",
    "render_service",
    "template_version",
    "templates_root",
    "update_service",
]

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
"""Where the platform's own templates live: one copier template per sub-directory."""


def templates_root() -> Path:
    """The templates the platform offers: ``$SLIPWAY_TEMPLATES_DIR``, else Slipway's own.

    A platform team keeps its golden paths in a directory of its own this way,
    without forking Slipway.
    """
    configured = os.environ.get("SLIPWAY_TEMPLATES_DIR")
    return Path(configured).resolve() if configured else TEMPLATES_DIR


ANSWERS_FILE = ".copier-answers.yml"
"""The answers file every template keeps, so ``copier update`` works later."""

DEFAULT_INFRA_MODULE_SOURCE = (
    "git::file:///var/lib/slipway/git/platform-infra.git//modules/local-docker-env"
)
"""The environment module the rendered ``infra/main.tf`` points at by default."""

# Characters that survive a JSON-encoded round trip through YAML (PyYAML reads
# YAML 1.1): printable text plus tab and newline. Excluded are other control
# characters, U+2028/U+2029 (YAML line breaks), lone surrogates and U+FFFE/FFFF.
_TEXT = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
# No quotes, spaces, '$', '%' or braces: HCL would read "${...}" as an expression.
_MODULE_SOURCE = re.compile(r"[A-Za-z0-9./][A-Za-z0-9+:/._?=&@~-]{0,499}")


def check_description(value: str) -> str:
    """Free text that stays data in YAML: printable characters, tabs and newlines."""
    if not _TEXT.fullmatch(value):
        raise ValueError(
            "description may hold printable text, tabs and newlines only, no other control characters"
        )
    return value


def check_owner(value: str) -> str:
    """A Backstage entity reference such as ``group:payments``."""
    if not _OWNER.fullmatch(value):
        raise ValueError(
            f"owner {value!r} is not an entity reference: use letters, digits and . _ : / -"
        )
    return value


class ServiceAnswers(BaseModel):
    """What a service template asks, validated before anything is written.

    Example:
        ```python
        ServiceAnswers(service_name="payments-api", owner="group:payments", port=8081)
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_name: ServiceName = Field(
        title="Service name",
        description="A DNS-1123 label (lower-case letters, digits and '-', at most 63).",
    )
    description: str = Field(
        default="",
        max_length=500,
        title="Description",
        description="What the service does, in one or two sentences.",
    )
    owner: str = Field(
        title="Owner",
        description="The owning team as a Backstage entity reference, e.g. group:payments.",
    )
    port: int = Field(
        default=8080, ge=1024, le=65535, title="Port", description="The port it listens on."
    )
    environments: tuple[EnvironmentName, ...] = Field(
        default=(EnvironmentName.parse("dev"),),
        min_length=1,
        title="Environments",
        description="The environments to create, each a DNS-1123 label.",
    )
    base_image: str = Field(
        default=DEFAULT_BASE_IMAGE,
        title="Base image",
        description="The Dockerfile's default BASE_IMAGE; the platform overrides it at build time.",
    )
    infra_module_source: str = Field(
        default=DEFAULT_INFRA_MODULE_SOURCE,
        title="Environment module source",
        description="Terraform module source that infra/main.tf uses.",
    )

    @field_validator("description")
    @classmethod
    def _description_is_plain_text(cls, value: str) -> str:
        return check_description(value)

    @field_validator("owner")
    @classmethod
    def _owner_is_entity_ref(cls, value: str) -> str:
        return check_owner(value)

    @field_validator("base_image")
    @classmethod
    def _image_is_a_reference(cls, value: str) -> str:
        if not _IMAGE.fullmatch(value):
            raise ValueError(f"base_image {value!r} is not an image reference")
        return value

    @field_validator("infra_module_source")
    @classmethod
    def _module_source_is_plain(cls, value: str) -> str:
        if not _MODULE_SOURCE.fullmatch(value):
            raise ValueError(
                f"infra_module_source {value!r} may not hold spaces, quotes, '$', '%' or braces"
            )
        return value


@dataclass(frozen=True)
class RenderedService:
    """A service directory that a template was rendered into."""

    path: Path
    """The service's root directory."""
    files: tuple[Path, ...]
    """Every file written, relative to `path`, sorted."""
    answers_file: Path
    """The copier answers file, which ``copier update`` needs later."""


def available_templates(root: Path | None = None) -> list[str]:
    """The names of the templates under ``root``: directories holding a ``copier.yml``."""
    root = root or templates_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/copier.y*ml"))


def render_service(
    template: str,
    destination: Path,
    answers: ServiceAnswers,
    *,
    templates_root: Path | None = None,
    vcs_ref: str | None = None,
    release: TemplateRelease | None = None,
) -> RenderedService:
    """Render ``template`` into ``destination`` with ``answers``.

    Nothing is written when the template or the destination is refused, and
    copier removes a half-written destination itself when rendering fails.

    Args:
        template: A name from `available_templates`, e.g. ``python-service``.
        destination: A directory that does not exist yet or is empty.
        answers: The validated answers.
        templates_root: Where templates are looked up; a template that is its
            own git repository there also records its commit for ``copier update``.
        vcs_ref: The tag or commit to render, for a template in a git repository.
        release: Render this published release instead (its repository and tag),
            so that ``copier update`` can later find the template again.

    Raises:
        TemplateError: The template is unknown or copier failed to render it.
        InvalidRequest: The destination is not empty, or the template refused an answer.
    """
    source: str | Path = _template_path(template, templates_root)
    if release is not None:
        source, vcs_ref = release.source, release.tag
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise InvalidRequest(
            f"destination {destination} already exists and is not empty",
            hint="render into a new or empty directory",
        )
    log.info("Rendering template %s into %s", template, destination)
    try:
        copier.run_copy(
            str(source),
            destination,
            data=answers.model_dump(mode="json"),
            vcs_ref=vcs_ref,
            defaults=True,
            unsafe=False,
            quiet=True,
            cleanup_on_error=True,
        )
    except CopierError as e:
        raise TemplateError(
            f"template {template!r} could not be rendered: {e}",
            hint="check the template's copier.yml, then render again",
        ) from e
    except ValueError as e:
        # Copier reports a validator's refusal as a bare ValueError.
        raise InvalidRequest(f"template {template!r} refused an answer: {e}") from e
    except OSError as e:
        raise TemplateError(f"template {template!r} could not be written: {e}") from e
    return _describe(destination)


@dataclass(frozen=True)
class TemplateRelease:
    """A template version published as a tagged git repository, as copier wants it."""

    template: str
    version: str
    repository: str
    """The repository on the git server, e.g. ``template-python-service``."""
    url: str
    """Where git finds it."""

    @property
    def tag(self) -> str:
        """Copier takes versions from tags: ``v<version>``."""
        return f"v{self.version}"

    @property
    def source(self) -> str:
        """The template source copier records, so ``copier update`` finds it again."""
        return f"git+file://{self.url}"


def template_version(template: str, *, templates_root: Path | None = None) -> str:
    """The version a template declares in its copier.yml (``template_version``)."""
    config = _template_path(template, templates_root) / "copier.yml"
    try:
        data = yaml.safe_load(config.read_text())
        version = str(data["template_version"]["default"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise TemplateError(
            f"{config} declares no template_version",
            hint='add a `template_version` with `default: "1.0.0"` and `when: false`',
        ) from e
    return version


def publish_template(
    server: GitServer, template: str, *, templates_root: Path | None = None
) -> TemplateRelease:
    """Publish ``template`` to the git server as ``template-<name>``, tagged with its version.

    Idempotent: an unchanged template publishes nothing. Changing a template
    without raising its ``template_version`` is refused, because services
    rendered from that version could no longer be reproduced.
    """
    from tasks.git import create_repository, publish_directory, tag_commit

    version = template_version(template, templates_root=templates_root)
    repository = f"template-{template}"
    path = create_repository(server, repository)
    sha = publish_directory(
        server,
        repository,
        _template_path(template, templates_root),
        message=f"{template} {version}",
    )
    release = TemplateRelease(template, version, repository, str(path))
    tagged = tag_commit(server, repository, release.tag, sha)
    if tagged != sha:
        raise TemplateError(
            f"template {template!r} changed but still says version {version}, "
            f"which is already published as {tagged[:12]}",
            hint=f"raise template_version in templates/{template}/copier.yml",
        )
    return release


@task(name="publish-template", retries=2, retry_delay_seconds=1)
def release_template(server: GitServer, template: str) -> TemplateRelease:
    """The template's current version as a tagged repository, so `copier update` works later."""
    return publish_template(server, template)


def update_service(path: Path, *, vcs_ref: str | None = None) -> RenderedService:
    """Roll a newer template version out to an existing service with ``copier update``.

    Copier can only do this when the service is a clean git working tree and
    was rendered from a template in its own git repository (its answers file
    then records ``_commit``). The service's own changes are kept; where they
    clash with the template's, copier leaves ``*.rej`` files for a human.

    Args:
        path: The service's root directory, holding the answers file.
        vcs_ref: The template tag or commit to update to; the newest tag by default.

    Raises:
        InvalidRequest: ``path`` has no answers file.
        TemplateError: Copier refused the update or failed.
    """
    if not (path / ANSWERS_FILE).is_file():
        raise InvalidRequest(
            f"{path} has no {ANSWERS_FILE}, so it was not rendered from a template",
            hint="update only services that onboarding created",
        )
    log.info("Updating %s from its template (ref %s)", path, vcs_ref or "latest")
    try:
        copier.run_update(
            path,
            vcs_ref=vcs_ref,
            defaults=True,
            overwrite=True,
            skip_answered=True,
            conflict="rej",
            unsafe=False,
            quiet=True,
        )
    except CopierError as e:
        raise TemplateError(
            f"{path} could not be updated from its template: {e}",
            hint="commit the service's changes and render from a template in a git repository",
        ) from e
    except ValueError as e:
        raise InvalidRequest(f"the template refused a recorded answer of {path}: {e}") from e
    return _describe(path)


def _template_path(template: str, root: Path | None) -> Path:
    """The template's directory, refusing names that are unknown or not plain names."""
    root = root or templates_root()
    names = available_templates(root)
    if template not in names:
        raise TemplateError(
            f"unknown template {template!r}",
            hint=f"use one of: {', '.join(names) or '(none installed)'}",
        )
    return (root / template).resolve()


def _describe(destination: Path) -> RenderedService:
    files = tuple(
        sorted(
            p.relative_to(destination)
            for p in destination.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(destination).parts
        )
    )
    return RenderedService(path=destination, files=files, answers_file=destination / ANSWERS_FILE)
