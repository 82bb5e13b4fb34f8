"""Names that reach git, Docker, Terraform or a URL: checked once, where input enters, then typed.

A form, a webhook or the CLI turns a string into a `ServiceName`,
`EnvironmentName`, `GitSha` or `GitRef` with ``parse`` (or pydantic does, for
a field or flow parameter of that type). Code behind that edge takes the type
and trusts it: a bad name is refused with the rule it broke before any
command runs, and never checked twice.

>>> ServiceName.parse("payments-api")
'payments-api'
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

import yaml
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from slipway.errors import InvalidRequest

__all__ = [
    "PREVIEW_PREFIX",
    "EnvironmentName",
    "GitRef",
    "GitSha",
    "NameDumper",
    "ServiceName",
    "check_dns_label",
    "check_git_ref",
    "check_host_port",
    "check_sha",
    "is_preview",
    "preview_environment",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")


def check_dns_label(value: str, *, what: str = "name") -> str:
    """Refuse anything but a DNS-1123 label: what Docker, DNS and URLs all accept.

    >>> check_dns_label("payments-api")
    'payments-api'
    """
    if len(value) > 63:
        raise InvalidRequest(
            f"{what} {value[:20]!r}... has {len(value)} characters; DNS-1123 allows at most 63"
        )
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value!r} is not a DNS-1123 label",
            hint="use lower-case letters, digits and '-', starting and ending with a letter or digit",
        )
    return value


def check_git_ref(value: str, *, what: str = "branch") -> str:
    """Refuse a ref that git would reject or that could pass as an option.

    Follows ``git check-ref-format`` and also forbids a leading ``-`` so that a
    ref like ``--upload-pack=x`` can never become a flag.
    """
    bad = (
        not _GIT_REF.fullmatch(value)
        or ".." in value
        or "//" in value
        or value.endswith((".lock", "/", "."))
        or "/." in value
    )
    if bad:
        raise InvalidRequest(
            f"{what} {value!r} is not a valid git ref",
            hint="use letters, digits and . _ / -, not starting with '-' and without '..'",
        )
    return value


def check_host_port(value: str, *, what: str = "registry") -> str:
    """Refuse a registry address that is not ``host[:port][/namespace]``."""
    if "://" in value or not _HOST_PORT.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value!r} is not of the form host[:port][/namespace]",
            hint="drop the scheme, e.g. '127.0.0.1:5001' or 'ghcr.io/acme'",
        )
    return value


PREVIEW_PREFIX = "preview-"
"""Environments named ``preview-<branch>`` are previews: they expire and need no approval to go."""


def is_preview(environment: str) -> bool:
    """Whether ``environment`` is a ``preview-<branch>`` environment."""
    return environment.startswith(PREVIEW_PREFIX) and len(environment) > len(PREVIEW_PREFIX)


def preview_environment(branch: str) -> str:
    """The preview environment of a git branch: ``feature/Fix_login`` → ``preview-feature-fix-login``.

    Raises:
        InvalidRequest: nothing of the branch name is left to name an environment.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    slug = slug[: 63 - len(PREVIEW_PREFIX)].rstrip("-")
    if not slug:
        raise InvalidRequest(f"branch {branch!r} gives no preview environment name")
    return check_dns_label(PREVIEW_PREFIX + slug, what="environment")


_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def check_sha(value: str, *, what: str = "commit") -> str:
    """Refuse anything but a lower-case hex commit id of 7 to 40 characters."""
    if not _SHA.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value[:50]!r} is not a commit id",
            hint="pass the commit's hex sha (7 to 40 characters, lower case)",
        )
    return value


class _CheckedName(str):
    """A string that passed its check once; subclasses say which check."""

    what: ClassVar[str] = "name"
    """What the value is, in error messages."""
    pattern: ClassVar[str] = ""
    """The JSON-schema pattern that UI forms show and check before submitting."""

    @classmethod
    def check(cls, value: str) -> str:
        """Return ``value`` if it is valid, else raise `InvalidRequest`; subclasses implement it."""
        raise NotImplementedError

    @classmethod
    def parse(cls, value: object) -> Self:
        """The checked value, or `InvalidRequest` with the rule it broke."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise InvalidRequest(f"{cls.what} must be a string, not {type(value).__name__}")
        return cls(cls.check(value))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # InvalidRequest is a ValueError, so pydantic reports it as a validation error.
        return core_schema.json_or_python_schema(
            json_schema=core_schema.no_info_after_validator_function(
                cls.parse, core_schema.str_schema()
            ),
            # `parse` takes a value of this type as it is: it passed its check where it entered.
            python_schema=core_schema.no_info_plain_validator_function(cls.parse),
            serialization=core_schema.to_string_ser_schema(),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        if cls.pattern:
            found["pattern"] = cls.pattern
        return found


class ServiceName(_CheckedName):
    """A service's name in the catalog: a DNS-1123 label."""

    what = "service"
    pattern = _DNS_LABEL.pattern

    @classmethod
    def check(cls, value: str) -> str:
        """Refuse anything but a DNS-1123 label."""
        return check_dns_label(value, what=cls.what)


class EnvironmentName(_CheckedName):
    """An environment of a service (``dev``, ``prod``, ``preview-<branch>``): a DNS-1123 label."""

    what = "environment"
    pattern = _DNS_LABEL.pattern

    @classmethod
    def check(cls, value: str) -> str:
        """Refuse anything but a DNS-1123 label."""
        return check_dns_label(value, what=cls.what)

    @property
    def is_preview(self) -> bool:
        """Whether this is a ``preview-<branch>`` environment."""
        return is_preview(self)


class GitSha(_CheckedName):
    """A commit id: 7 to 40 lower-case hex digits.

    Surrounding space is dropped and upper-case hex lowered first, as a sha
    pasted into a form often comes.
    """

    what = "commit"
    pattern = r"^\s*[0-9a-fA-F]{7,40}\s*$"

    @classmethod
    def check(cls, value: str) -> str:
        """The sha in lower case; refuses anything but hex of 7 to 40 digits."""
        return check_sha(value.strip().lower(), what=cls.what)


class GitRef(_CheckedName):
    """A git ref or branch name that git accepts and that can never pass as an option."""

    what = "ref"
    pattern = _GIT_REF.pattern

    @classmethod
    def check(cls, value: str) -> str:
        """Refuse what ``git check-ref-format`` would, and a leading ``-``."""
        return check_git_ref(value, what=cls.what)

    @property
    def branch(self) -> str | None:
        """The branch a ``refs/heads/...`` ref names, else None."""
        return self.removeprefix("refs/heads/") if self.startswith("refs/heads/") else None


class NameDumper(yaml.SafeDumper):
    """Safe YAML that writes a typed name (`ServiceName`, ...) as the plain string it is.

    PyYAML's safe dumper refuses a subclass of ``str``; every YAML the
    platform writes (the catalog, Prometheus' rules and config) may hold names.
    """


NameDumper.add_multi_representer(str, yaml.representer.SafeRepresenter.represent_str)
