"""What GitHub, GitLab and Gitea/Forgejo send, and how each proves it is them.

Pure functions over headers and raw bodies: the bridge (`deployments.bridge`)
does the HTTP. Signatures are checked over the raw bytes, before parsing, and
always in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slipway.errors import InvalidRequest

__all__ = [
    "DELIVERY_NAMESPACE",
    "Provider",
    "PushEvent",
    "delivery_id",
    "event_id",
    "event_kind",
    "parse_push",
    "signature_valid",
]

DELIVERY_NAMESPACE = uuid.UUID("6f1d3c52-8b7e-4f0a-9a51-3d0c2b7e5a10")
"""Namespace of the uuid5 event ids, so a redelivery maps to the same event id."""

_ZERO_SHA = "0" * 40


class Provider(enum.StrEnum):
    """A webhook source; the value is the path segment under ``/hooks/``."""

    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"


@dataclass(frozen=True)
class PushEvent:
    """A push, whatever the provider's payload looked like."""

    repository: str
    """Repository name without owner, which is the service name."""
    ref: str
    """Full ref, e.g. ``refs/heads/main``."""
    before: str
    """Commit the ref pointed at before the push."""
    after: str
    """Commit the ref points at now; all zeros when the ref was deleted."""
    pusher: str
    """Who pushed."""
    changed_paths: tuple[str, ...]
    """Paths added, modified or removed by the pushed commits, sorted."""
    deleted: bool
    """Whether the push deleted the ref."""

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...`` refs, else None (tags)."""
        prefix = "refs/heads/"
        return self.ref[len(prefix) :] if self.ref.startswith(prefix) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name) or headers.get(name.lower())
    return value.strip() if value else None


def signature_valid(
    provider: Provider, headers: Mapping[str, str], body: bytes, secret: str
) -> bool:
    """Whether the request proves knowledge of ``secret``.

    GitHub signs with ``X-Hub-Signature-256: sha256=<hex>``; Gitea and Forgejo
    with a bare hex ``X-Gitea-Signature`` (they send GitHub's header too);
    GitLab sends the secret itself in ``X-Gitlab-Token``.
    """
    if provider is Provider.GITLAB:
        token = _header(headers, "X-Gitlab-Token")
        return token is not None and hmac.compare_digest(token.encode(), secret.encode())
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider is Provider.GITEA and (bare := _header(headers, "X-Gitea-Signature")):
        return hmac.compare_digest(bare.lower().encode(), expected.encode())
    signed = _header(headers, "X-Hub-Signature-256")
    if signed is None or not signed.startswith("sha256="):
        return False
    return hmac.compare_digest(signed[len("sha256=") :].lower().encode(), expected.encode())


def event_kind(provider: Provider, headers: Mapping[str, str]) -> str:
    """``push``, ``ping``, or the provider's own name for anything else."""
    if provider is Provider.GITLAB:
        raw = _header(headers, "X-Gitlab-Event") or ""
        return {"Push Hook": "push"}.get(raw, raw)
    raw = _header(headers, "X-GitHub-Event") or _header(headers, "X-Gitea-Event") or ""
    return raw


def delivery_id(provider: Provider, headers: Mapping[str, str], body: bytes) -> str:
    """The sender's id of this delivery, which stays the same on redelivery.

    A sender without one gets the body's hash: identical redeliveries still
    map to one event.
    """
    names = {
        Provider.GITHUB: ("X-GitHub-Delivery",),
        Provider.GITEA: ("X-Gitea-Delivery", "X-GitHub-Delivery"),
        Provider.GITLAB: ("X-Gitlab-Event-UUID",),
    }[provider]
    for name in names:
        if value := _header(headers, name):
            return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_id(provider: Provider, delivery: str) -> uuid.UUID:
    """The Prefect event id of a delivery; the server drops a second event with it."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{provider.value}:{delivery}")


def parse_push(provider: Provider, body: bytes) -> PushEvent:
    """Read a push payload; GitHub's format also serves Gitea and Slipway's own hook.

    Raises:
        InvalidRequest: the body is not JSON or lacks a field a push must have.
    """
    try:
        payload = json.loads(body)
        if provider is Provider.GITLAB:
            return _gitlab_push(payload)
        return _github_push(payload)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidRequest(f"not a {provider.value} push payload: {type(e).__name__}: {e}") from e


def _changed(commits: list[dict[str, Any]]) -> tuple[str, ...]:
    paths = {
        str(path)
        for commit in commits
        for key in ("added", "modified", "removed")
        for path in commit.get(key) or []
    }
    return tuple(sorted(paths))


def _github_push(payload: dict[str, Any]) -> PushEvent:
    pusher = payload.get("pusher") or {}
    after = str(payload["after"])
    return PushEvent(
        repository=str(payload["repository"]["name"]),
        ref=str(payload["ref"]),
        before=str(payload["before"]),
        after=after,
        pusher=str(pusher.get("name") or pusher.get("login") or pusher.get("username") or ""),
        changed_paths=_changed(list(payload.get("commits") or [])),
        deleted=bool(payload.get("deleted")) or after == _ZERO_SHA,
    )


def _gitlab_push(payload: dict[str, Any]) -> PushEvent:
    after = str(payload["after"])
    project = payload.get("project") or payload["repository"]
    name = project.get("path") or project["name"]
    return PushEvent(
        repository=str(name),
        ref=str(payload["ref"]),
        before=str(payload["before"]),
        after=after,
        pusher=str(payload.get("user_username") or payload.get("user_name") or ""),
        changed_paths=_changed(list(payload.get("commits") or [])),
        deleted=after == _ZERO_SHA,
    )
