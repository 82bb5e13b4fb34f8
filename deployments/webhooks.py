"""What GitHub, GitLab and Gitea/Forgejo send, and how each proves it is them.

Pure functions over headers and raw bodies: the bridge (`deployments.bridge`)
does the HTTP. Signatures are checked over the raw bytes, before parsing, and
always in constant time. A push is validated here, once: its ref must be a
branch or tag name git accepts (`slipway.names.GitRef`) and its commits full
shas (`slipway.names.GitSha`), so nothing behind the bridge sees a bad name.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slipway.errors import InvalidRequest
from slipway.names import GitRef, GitSha, preview_environment

__all__ = [
    "DELIVERY_NAMESPACE",
    "PUSH_EVENT",
    "Provider",
    "PushEvent",
    "delivery_id",
    "delivery_key",
    "event_id",
    "event_kind",
    "parse_push",
    "push_event",
    "signature_present",
    "signature_valid",
]

DELIVERY_NAMESPACE = uuid.UUID("6f1d3c52-8b7e-4f0a-9a51-3d0c2b7e5a10")
"""Namespace of the uuid5 event ids, so a redelivery maps to the same event id."""

PUSH_EVENT = "slipway.git.push"
"""The event name that deployment triggers match."""

_ZERO_SHA = "0" * 40
_DOCS_PATHS = ("docs/", "mkdocs.yml")


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
    ref: GitRef
    """Full ref, e.g. ``refs/heads/main``; a name git accepts."""
    before: GitSha
    """Commit the ref pointed at before the push; all zeros when it was created."""
    after: GitSha
    """Commit the ref points at now; all zeros when the ref was deleted."""
    pusher: str
    """Who pushed."""
    changed_paths: tuple[str, ...]
    """Paths added, modified or removed by the pushed commits, sorted."""
    deleted: bool
    """Whether the push deleted the ref."""
    pushed_at: float | None = None
    """When the push happened (seconds since the epoch), if the sender says:
    GitHub's ``repository.pushed_at`` and Slipway's own hook do. It orders
    pushes of one branch that arrive out of order (a spooled one, a redelivery)."""

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...`` refs, else None (tags)."""
        prefix = "refs/heads/"
        return self.ref[len(prefix) :] if self.ref.startswith(prefix) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name) or headers.get(name.lower())
    return value.strip() if value else None


_SIGNATURE_HEADERS = {
    Provider.GITHUB: ("X-Hub-Signature-256",),
    Provider.GITEA: ("X-Gitea-Signature", "X-Hub-Signature-256"),
    Provider.GITLAB: ("X-Gitlab-Token",),
}


def signature_present(provider: Provider, headers: Mapping[str, str]) -> bool:
    """Whether the request carries the header that proves its sender, so a body is worth reading."""
    return any(_header(headers, name) for name in _SIGNATURE_HEADERS[provider])


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


def delivery_key(provider: Provider, delivery: str, body: bytes) -> str:
    """What makes two deliveries the same: the sender, its delivery id and the signed body.

    The delivery id header is not covered by the signature, so it alone must
    not decide: anyone could send an old signed body under the id of a push
    yet to come, and that push would then count as a duplicate. With the body's
    digest in the key, a delivery is a duplicate only of one with the same
    id *and* the same signed content: a redelivery, nothing else.
    """
    digest = hashlib.sha256(body).hexdigest()
    return hashlib.sha256(f"{provider.value}\0{delivery}\0{digest}".encode()).hexdigest()


def event_id(key: str) -> uuid.UUID:
    """The Prefect event id of the delivery with this `delivery_key`; the same on every resend."""
    return uuid.uuid5(DELIVERY_NAMESPACE, key)


def parse_push(provider: Provider, body: bytes) -> PushEvent:
    """Read a push payload; GitHub's format also serves Gitea and Slipway's own hook.

    Raises:
        InvalidRequest: the body is not JSON (or nested too deep to read), lacks
            a field a push must have, or names a ref or commit git would refuse.
    """
    try:
        payload = json.loads(body)
    except RecursionError as e:
        raise InvalidRequest(f"not a {provider.value} push payload: JSON nested too deep") from e
    except ValueError as e:
        raise InvalidRequest(f"not a {provider.value} push payload: {type(e).__name__}: {e}") from e
    try:
        push = _gitlab_push(payload) if provider is Provider.GITLAB else _github_push(payload)
    except InvalidRequest:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidRequest(f"not a {provider.value} push payload: {type(e).__name__}: {e}") from e
    if push.branch is not None:
        GitRef.parse(push.branch)  # refs/heads/<name>: the name itself must be a valid branch
    return push


def _pushed_at(repository: Any) -> float | None:
    value = repository.get("pushed_at") if isinstance(repository, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


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
    after = GitSha.parse(str(payload["after"]))
    return PushEvent(
        repository=str(payload["repository"]["name"]),
        ref=GitRef.parse(str(payload["ref"])),
        before=GitSha.parse(str(payload["before"])),
        after=after,
        pusher=str(pusher.get("name") or pusher.get("login") or pusher.get("username") or ""),
        changed_paths=_changed(list(payload.get("commits") or [])),
        deleted=bool(payload.get("deleted")) or after == _ZERO_SHA,
        pushed_at=_pushed_at(payload["repository"]),
    )


def _gitlab_push(payload: dict[str, Any]) -> PushEvent:
    after = GitSha.parse(str(payload["after"]))
    project = payload.get("project") or payload["repository"]
    name = project.get("path") or project["name"]
    return PushEvent(
        repository=str(name),
        ref=GitRef.parse(str(payload["ref"])),
        before=GitSha.parse(str(payload["before"])),
        after=after,
        pusher=str(payload.get("user_username") or payload.get("user_name") or ""),
        changed_paths=_changed(list(payload.get("commits") or [])),
        deleted=after == _ZERO_SHA,
    )


def push_event(
    provider: Provider,
    key: str,
    delivery: str,
    push: PushEvent,
    *,
    default_branch: str,
    preview_allowed: bool = True,
) -> dict[str, Any]:
    """The Prefect event for a push, in the JSON form ``POST /api/events`` takes.

    Resource labels carry what triggers filter on (branch, default branch,
    whether docs changed, whether the branch has a preview environment), so
    prefect.yaml can say what runs without code here. A push to any other
    branch than the default names its ``preview-<branch>`` environment, unless
    the platform's preview policy does not allow the branch one
    (``preview_allowed``). The id comes from the delivery's `delivery_key`,
    so every resend is one event. The pusher is what the signed payload says.
    """
    docs_changed = any(p.startswith(_DOCS_PATHS) for p in push.changed_paths)
    preview = ""
    if push.branch and push.branch != default_branch and preview_allowed:
        with contextlib.suppress(InvalidRequest):  # a branch that names no environment
            preview = preview_environment(push.branch)
    return {
        "id": str(event_id(key)),
        "occurred": datetime.now(UTC).isoformat(),
        "event": PUSH_EVENT,
        "resource": {
            "prefect.resource.id": f"slipway.service.{push.repository}",
            "prefect.resource.name": push.repository,
            "slipway.git.branch": push.branch or "",
            "slipway.git.default-branch": str(push.branch == default_branch).lower(),
            "slipway.git.docs-changed": str(docs_changed).lower(),
            "slipway.git.preview": str(bool(preview)).lower(),
            # pairs the push with its build's scan-due event (tasks/scanners/due.py)
            "slipway.git.commit": push.after,
        },
        "related": [],
        "payload": {
            "service": push.repository,
            "ref": push.ref,
            "branch": push.branch,
            "before": push.before,
            "after": push.after,
            "pusher": push.pusher,
            "changed_paths": list(push.changed_paths),
            "preview_environment": preview,
            "provider": provider.value,
            "delivery": delivery,
        },
    }
