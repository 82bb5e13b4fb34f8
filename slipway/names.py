"""Validation of names that reach git, Docker, Terraform or a URL.

These checks run before any command does, so a bad name is refused with the
rule it broke instead of failing half-way inside a tool.
"""

from __future__ import annotations

import re

from slipway.errors import InvalidRequest

__all__ = [
    "PREVIEW_PREFIX",
    "check_dns_label",
    "check_git_ref",
    "check_host_port",
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
