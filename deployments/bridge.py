"""The webhook bridge: signed git pushes in, Prefect events out.

Self-hosted Prefect has no inbound webhooks, so this small ASGI app takes
GitHub, GitLab and Gitea/Forgejo deliveries, checks their signatures and
posts one ``slipway.git.push`` event per push to Prefect's events API.
Deployment triggers in prefect.yaml, not this code, decide what runs.

It answers 2xx only after Prefect accepted the event, and 503 when Prefect
is unreachable, so the sender can redeliver: no push is lost silently. The
event id is derived from the delivery id, so a redelivery starts nothing twice.
Pushes that arrive together share one request to Prefect (`EventPoster`), so
a burst costs Prefect a few requests, not one per push.

Run as ``python -m deployments.bridge --port 4300``; `slipway up` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deployments.webhooks import (
    Provider,
    PushEvent,
    delivery_id,
    event_id,
    event_kind,
    parse_push,
    signature_valid,
)
from slipway import heap
from slipway.errors import InvalidRequest
from slipway.home import HOST
from slipway.names import preview_environment

__all__ = ["MAX_BODY_BYTES", "PUSH_EVENT", "EventPoster", "build_app", "main", "push_event"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MB; anything larger is refused unread."""
PUSH_EVENT = "slipway.git.push"
"""The event name that deployment triggers match."""

_DOCS_PATHS = ("docs/", "mkdocs.yml")


class _TooLarge(Exception):
    pass


class EventPoster:
    """Posts events to Prefect's ``/api/events``, batching those that arrive together.

    One request is in flight at a time; events that arrive meanwhile wait and
    go together in the next one (group commit). Each caller still returns only
    once Prefect accepted the request that carried its event, or raises the
    `httpx.HTTPError` that request ended with. At low load every request
    carries one event, so batching adds no latency; under a burst it turns
    hundreds of requests into a few, which is what Prefect's server can take.
    """

    def __init__(self, client: httpx.AsyncClient, *, max_batch: int = 500) -> None:
        self._client = client
        self._max_batch = max_batch
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def post(self, event: dict[str, Any]) -> None:
        """Return when Prefect accepted ``event``; raise `httpx.HTTPError` when not."""
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, accepted))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting())
        await accepted

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            error: BaseException | None = None
            try:
                response = await self._client.post("/events", json=[e for e, _ in batch])
                response.raise_for_status()
            except Exception as e:  # every waiting caller gets it; none hangs
                error = e
            for _, accepted in batch:
                if accepted.done():  # its caller went away
                    continue
                if error is None:
                    accepted.set_result(None)
                else:
                    accepted.set_exception(error)


def push_event(
    provider: Provider, delivery: str, push: PushEvent, *, default_branch: str
) -> dict[str, Any]:
    """The Prefect event for a push, in the JSON form ``POST /api/events`` takes.

    Resource labels carry what triggers filter on (branch, default branch,
    whether docs changed, whether the branch has a preview environment), so
    prefect.yaml can say what runs without code here. A push to any other
    branch than the default names its ``preview-<branch>`` environment.
    """
    docs_changed = any(p.startswith(_DOCS_PATHS) for p in push.changed_paths)
    preview = ""
    if push.branch and push.branch != default_branch:
        with contextlib.suppress(InvalidRequest):  # a branch that names no environment
            preview = preview_environment(push.branch)
    return {
        "id": str(event_id(provider, delivery)),
        "occurred": datetime.now(UTC).isoformat(),
        "event": PUSH_EVENT,
        "resource": {
            "prefect.resource.id": f"slipway.service.{push.repository}",
            "prefect.resource.name": push.repository,
            "slipway.git.branch": push.branch or "",
            "slipway.git.default-branch": str(push.branch == default_branch).lower(),
            "slipway.git.docs-changed": str(docs_changed).lower(),
            "slipway.git.preview": str(bool(preview)).lower(),
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


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    *,
    api_url: str,
    secret: SecretStr,
    is_service: Callable[[str], bool],
    known_now: Callable[[str], bool] = lambda _: False,
    default_branch: str = "main",
    max_body: int = MAX_BODY_BYTES,
) -> Starlette:
    """The bridge as an ASGI app.

    Args:
        api_url: Prefect's API, e.g. ``http://127.0.0.1:4200/api``.
        secret: The shared webhook secret.
        is_service: Whether a repository name belongs to a known service;
            pushes to others are acknowledged and ignored. It may block
            (read git), so it runs in a worker thread.
        known_now: Whether a name is known from memory alone, without
            blocking; a yes skips ``is_service`` and its thread hand-off.
        default_branch: The branch whose pushes build and deploy.
        max_body: Largest accepted body in bytes.
    """
    client = httpx.AsyncClient(base_url=api_url, timeout=5.0)
    poster = EventPoster(client)

    def answer(status: int, state: str, reason: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"status": state, "reason": reason, **extra}, status_code=status)

    async def hook(request: Request) -> JSONResponse:
        try:
            provider = Provider(request.path_params["provider"])
        except ValueError:
            return answer(404, "refused", "unknown provider; use github, gitlab or gitea")
        try:
            body = await _read_capped(request, max_body)
        except _TooLarge:
            return answer(413, "refused", f"body over {max_body} bytes")
        headers = request.headers
        if not signature_valid(provider, headers, body, secret.get_secret_value()):
            logger.warning("%s delivery with a missing or bad signature refused", provider.value)
            return answer(401, "refused", "missing or bad signature")
        kind = event_kind(provider, headers)
        if kind == "ping":
            return answer(200, "ok", "pong")
        if kind != "push":
            logger.info("ignored %s event %r", provider.value, kind)
            return answer(202, "ignored", f"event {kind!r} is not handled")
        try:
            push = parse_push(provider, body)
        except InvalidRequest as e:
            return answer(400, "refused", str(e))
        if push.deleted:
            return answer(202, "ignored", f"{push.ref} was deleted; nothing to build")
        if not known_now(push.repository) and not await run_in_threadpool(
            is_service, push.repository
        ):
            logger.info("ignored push to %r: not a known service", push.repository)
            return answer(202, "ignored", f"{push.repository!r} is not a known service")
        delivery = delivery_id(provider, headers, body)
        event = push_event(provider, delivery, push, default_branch=default_branch)
        try:
            await poster.post(event)
        except httpx.HTTPError as e:
            logger.error("Prefect did not accept the push event: %s", type(e).__name__)
            return JSONResponse(
                {"status": "unavailable", "reason": "Prefect is not reachable; redeliver later"},
                status_code=503,
                headers={"Retry-After": "10"},
            )
        logger.info(
            "push to %s %s at %s became event %s",
            push.repository,
            push.ref,
            push.after,
            event["id"],
        )
        return answer(200, "accepted", "event emitted", event_id=event["id"])

    async def healthz(request: Request) -> JSONResponse:
        return answer(200, "ok", "bridge is up")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/hooks/{provider}", hook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the bridge on loopback with the platform's secret and git server."""
    parser = argparse.ArgumentParser(prog="python -m deployments.bridge")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import os

    import uvicorn

    from blocks import GitServer
    from blocks.webhook import load_webhook_secret

    server = GitServer.load_default()
    services = _Catalogued(server)
    app = build_app(
        api_url=os.environ["PREFECT_API_URL"],
        secret=load_webhook_secret(),
        is_service=services,
        known_now=services.known_now,
        default_branch=server.default_branch,
    )
    logger.info("webhook bridge on http://%s:%d/hooks/{github,gitlab,gitea}", HOST, args.port)
    heap.settle()
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)


KNOWN_SERVICE_SECONDS = 2.0
"""How long a service seen in the catalog counts as known without a new look."""


class _Catalogued:
    """Known services: the names in the service catalog.

    A name seen in the catalog within `KNOWN_SERVICE_SECONDS` is known without
    touching git (`known_now`), so a burst of pushes costs no catalog reads.
    Any other name makes it look again (the catalog's names are re-read only
    when its branch moved), so a service onboarded a moment ago is known at
    its first push, and one removed stops being known within that time.
    """

    def __init__(self, server: Any) -> None:
        from tasks.catalog import Catalog

        self._catalog = Catalog(server)
        self._lock = threading.Lock()
        self._tip: str | None = None
        self._names: frozenset[str] = frozenset()
        self._looked = float("-inf")

    def known_now(self, name: str) -> bool:
        """Whether ``name`` was in the catalog at a look within `KNOWN_SERVICE_SECONDS`; never blocks."""
        return name in self._names and time.monotonic() - self._looked < KNOWN_SERVICE_SECONDS

    def __call__(self, name: str) -> bool:
        """Whether ``name`` is in the catalog, looking at git when memory cannot say."""
        with self._lock:
            if self.known_now(name):
                return True
            now, current = time.monotonic(), self._catalog.tip()
            if current != self._tip:
                self._tip, self._names = current, self._catalog.names()
            self._looked = now
            return name in self._names


if __name__ == "__main__":
    main()
