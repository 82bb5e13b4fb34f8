"""Service logs: kept and rotated by the Docker engine, read back by `slipway logs` and releases.

Every container the platform starts gets `tasks.containers.LOG_CONFIG`:
Docker's ``local`` driver, which rotates the log at 10 MB and keeps three
files, compressed. ``docker logs`` and the engine's API read it as usual.

A release whose candidate fails, or whose analysis rolls it back, attaches
the candidate's last lines to its run as the markdown artifact
``logs-<service>--<environment>`` (`attach_log_tail`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from slipway.errors import InvalidRequest, ServiceNotFound
from tasks.release.contract import LABEL_ENVIRONMENT, LABEL_LIVE, LABEL_SERVICE

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

__all__ = [
    "TAIL_LINES",
    "attach_log_tail",
    "log_lines",
    "parse_since",
    "service_container",
]

logger = logging.getLogger(__name__)

TAIL_LINES = 50
"""Lines a release attaches when its candidate fails."""

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(raw: str, *, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``1d``, ``30s`` ago, or an ISO 8601 time, as a UTC datetime.

    Raises:
        InvalidRequest: Neither form.
    """
    now = now or datetime.now(UTC)
    match = _SINCE.match(raw.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError as e:
        raise InvalidRequest(
            f"--since {raw!r} is neither a duration nor a time",
            hint="use e.g. 10m, 2h, 1d or 2026-05-01T12:00:00Z",
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def service_container(client: docker.DockerClient, service: str, environment: str) -> Container:
    """The container that serves (or last served) ``service`` in ``environment``.

    Raises:
        ServiceNotFound: No container of the release contract exists for it.
    """
    filters = {"label": [f"{LABEL_SERVICE}={service}", f"{LABEL_ENVIRONMENT}={environment}"]}
    found = list(client.containers.list(all=True, filters=filters))
    if not found:
        known = sorted(
            {
                c.labels.get(LABEL_ENVIRONMENT, "")
                for c in client.containers.list(
                    all=True, filters={"label": [f"{LABEL_SERVICE}={service}"]}
                )
            }
        )
        raise ServiceNotFound(
            f"no container of {service} in {environment} "
            f"(it has containers in: {', '.join(known) or 'no environment'})",
            hint="deploy it first, or pass --env with one of those",
        )
    live = [c for c in found if c.labels.get(LABEL_LIVE) == "true"]
    return max(live or found, key=lambda c: str(c.attrs.get("Created", "")))


def log_lines(
    container: Container,
    *,
    since: datetime | None = None,
    follow: bool = False,
    grep: str | None = None,
    timestamps: bool = True,
) -> Iterator[str]:
    """The container's log lines (stdout and stderr), oldest first, filtered by ``grep``.

    With ``follow`` it keeps yielding new lines until the container stops or
    the caller stops iterating.
    """
    stream = container.logs(
        stream=True, follow=follow, since=since, timestamps=timestamps, stdout=True, stderr=True
    )
    pending = b""
    for chunk in stream:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            if grep is None or grep in line:
                yield line
    if pending:
        line = pending.decode(errors="replace")
        if grep is None or grep in line:
            yield line


def attach_log_tail(container: Container, *, why: str) -> str:
    """Attach the last `TAIL_LINES` of ``container``'s log to the current run; returns them.

    The artifact's key names the service and environment from the
    container's release labels: ``logs-<service>--<environment>``.

    Outside a run (or when the engine cannot give the log) it only returns
    what it could read: the caller's error message still carries it.
    """
    from docker.errors import DockerException
    from prefect.artifacts import create_markdown_artifact
    from prefect.exceptions import MissingContextError

    labels = container.labels or {}
    service = labels.get(LABEL_SERVICE, "unknown")
    environment = labels.get(LABEL_ENVIRONMENT, "unknown")
    try:
        tail = container.logs(tail=TAIL_LINES, timestamps=True).decode(errors="replace").strip()
    except DockerException as e:
        return f"(its log could not be read: {e})"
    text = tail or "(it wrote nothing)"
    markdown = (
        f"**{container.name}**: {why}\n\nLast {TAIL_LINES} lines of its log "
        f"(`slipway logs {service} --env {environment}` shows more):\n\n```\n{text}\n```\n"
    )
    try:
        create_markdown_artifact(
            markdown=markdown,
            key=f"logs-{service}--{environment}",
            description=f"Log of {container.name}: {why}"[:500],
        )
    except (MissingContextError, RuntimeError) as e:
        logger.info("log tail of %s not attached: %s", container.name, e)
    return text
