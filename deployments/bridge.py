"""The webhook bridge: signed git pushes in, queued durably, then Prefect events out.

Self-hosted Prefect has no inbound webhooks, so this small ASGI app takes
GitHub, GitLab and Gitea/Forgejo deliveries at ``POST /hooks/{provider}``.
A push with a valid signature, of a catalogued service, whose commit the
platform's git server holds, is written to the intake queue
(`deployments.intake`: committed to disk first) and answered 202 at once.
The forwarder (`deployments.forwarder`) then sends it to Prefect and keeps
at it until Prefect has created its runs, coalescing the pushes of a branch
that wait together. Deployment triggers in prefect.yaml decide what runs.

A redelivery (same delivery id, same signed body) is answered 200
"duplicate" and adds nothing. The bridge refuses, before reading a body, a
request without a signature header; it reads a body of at most 25 MB within
`BridgeConfig.body_timeout`; uvicorn caps concurrent connections. It also
drains the git hook's spool (`deployments.spool`). ``GET /healthz`` says how
much waits, ``GET /metrics`` counts it all for Prometheus.

Run as ``python -m deployments.bridge --port 4300``; `slipway up` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.bridge_metrics import CONTENT_TYPE, BridgeMetrics
from deployments.bridge_services import Catalogued, platform_ready
from deployments.forwarder import Forwarder, ForwarderSettings
from deployments.intake import Accepted, IntakeQueue, QueueStats
from deployments.prefect_api import PrefectApi
from deployments.spool import drain
from deployments.webhooks import (
    Provider,
    delivery_id,
    delivery_key,
    event_kind,
    parse_push,
    push_event,
    signature_present,
    signature_valid,
)
from slipway import heap
from slipway.errors import InvalidRequest
from slipway.home import HOST

__all__ = ["MAX_BODY_BYTES", "Answer", "BridgeConfig", "build_app", "main"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MB; anything larger is refused unread."""
_PARSE_INLINE_BYTES = 1024 * 1024
"""Larger bodies are parsed off the event loop, so they do not stall other requests."""


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge needs; `main` fills it from the platform's blocks."""

    api_url: str
    """Prefect's API, e.g. ``http://127.0.0.1:4200/api``."""
    secret: SecretStr
    """The shared webhook secret."""
    queue_url: str
    """The intake queue's database (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``)."""
    is_service: Callable[[str], bool]
    """Whether a repository is a catalogued service; may block (reads git), runs in a thread."""
    known_now: Callable[[str], bool] = lambda _: False
    """Whether a name is known from memory alone; a yes skips ``is_service``."""
    has_commit: Callable[[str, str], bool] = lambda _repository, _sha: True
    """Whether the platform's git server holds a commit; never blocks for long."""
    default_branch: str = "main"
    spool: Path | None = None
    """The git hook's spool, drained every `spool_every` seconds."""
    spool_every: float = 2.0
    ready: Callable[[], bool] = lambda: True
    """Whether the platform's triggers are registered, so forwarding may start."""
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = 10.0
    """Seconds a client has to send its whole body (GitHub waits 10 s for an answer)."""
    stall_after: float = 300.0
    """A push waiting longer than this makes the health say the queue is stalled."""
    forwarding: ForwarderSettings = field(default_factory=ForwarderSettings)


@dataclass(frozen=True)
class Answer:
    """The bridge's answer to one delivery, over HTTP or to the spool."""

    status: int
    state: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        """As an HTTP response; a 503 asks the sender to come back in 10 s."""
        headers = {"Retry-After": "10"} if self.status == 503 else None
        body = {"status": self.state, "reason": self.reason, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=headers)


class _TooLarge(Exception):
    pass


class _Bridge:
    """The app's parts; the queue, the forwarder and their tasks live from start-up to shutdown."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.metrics = BridgeMetrics()
        self.queue: IntakeQueue | None = None
        self.forwarder: Forwarder | None = None
        self._stats: tuple[float, QueueStats] | None = None

    async def take(self, provider: Provider, headers: Any, body: bytes) -> Answer:
        """Check a delivery and queue it: the one path of HTTP deliveries and spooled ones."""
        c, m = self.config, self.metrics
        if not signature_valid(provider, headers, body, c.secret.get_secret_value()):
            m.signature_failures.inc()
            logger.warning("%s delivery with a bad signature refused", provider.value)
            return Answer(401, "refused", "missing or bad signature")
        kind = event_kind(provider, headers)
        if kind == "ping":
            return Answer(200, "ok", "pong")
        if kind != "push":
            m.ignored.inc()
            return Answer(202, "ignored", f"event {kind!r} is not handled")
        try:
            if len(body) > _PARSE_INLINE_BYTES:
                push = await run_in_threadpool(parse_push, provider, body)
            else:
                push = parse_push(provider, body)
        except InvalidRequest as e:
            m.refused.labels("payload").inc()
            return Answer(400, "refused", str(e))
        if push.deleted:
            m.ignored.inc()
            return Answer(202, "ignored", f"{push.ref} was deleted; nothing to build")
        name = push.repository
        if not c.known_now(name) and not await run_in_threadpool(c.is_service, name):
            m.ignored.inc()
            logger.info("ignored push to %r: not a known service", name)
            return Answer(202, "ignored", f"{name!r} is not a known service")
        if not c.has_commit(name, push.after):
            m.refused.labels("unknown-commit").inc()
            return Answer(
                422,
                "refused",
                f"commit {push.after} is not in repository {name!r} on the platform's git "
                "server; push it there, then send the webhook again",
            )
        return await self._queue(provider, headers, body, push)

    async def _queue(self, provider: Provider, headers: Any, body: bytes, push: Any) -> Answer:
        delivery = delivery_id(provider, headers, body)
        key = delivery_key(provider, delivery, body)
        event = push_event(provider, key, delivery, push, default_branch=self.config.default_branch)
        now = time.time()
        accepted = Accepted(
            key=key,
            delivery=delivery,
            service=push.repository,
            ref=push.ref,
            after=push.after,
            pusher=push.pusher,
            received_at=now,
            pushed_at=push.pushed_at if push.pushed_at is not None else now,
            event=event,
        )
        try:
            assert self.queue is not None  # opened at start-up, before any request
            new = await self.queue.accept(accepted)
        except Exception as e:
            self.metrics.unavailable.inc()
            logger.error("the intake queue could not store a push: %s", e)
            return Answer(503, "unavailable", "the intake queue is not available; redeliver later")
        if not new:
            self.metrics.duplicates.inc()
            return Answer(
                200, "duplicate", "this delivery was accepted before", {"event_id": event["id"]}
            )
        self.metrics.accepted.inc()
        if self.forwarder is not None:
            self.forwarder.wake()
        logger.info(
            "queued the push to %s %s at %s as event %s",
            push.repository,
            push.ref,
            push.after,
            event["id"],
        )
        return Answer(202, "accepted", "queued for Prefect", {"event_id": event["id"]})

    async def stats(self) -> QueueStats:
        """The queue's counts, at most a second old."""
        now = time.time()
        if self._stats is None or now - self._stats[0] > 1.0:
            assert self.queue is not None
            self._stats = (now, await self.queue.stats(now))
            self.metrics.observe(self._stats[1])
        return self._stats[1]

    async def drain_spool(self) -> None:
        """Hand the git hook's spool to `take` every few seconds, for the bridge's lifetime."""
        spool = self.config.spool
        assert spool is not None

        async def deliver(headers: dict[str, str], body: bytes) -> int:
            return (await self.take(Provider.GITHUB, headers, body)).status

        while True:
            with contextlib.suppress(OSError):
                done = await drain(spool, deliver)
                if done.sent or done.rejected:
                    logger.info(
                        "spool: %d queued, %d refused (set aside in %s), %d waiting",
                        done.sent,
                        done.rejected,
                        spool / "rejected",
                        done.kept,
                    )
            await asyncio.sleep(self.config.spool_every)


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(config: BridgeConfig) -> Starlette:
    """The bridge as an ASGI app; its lifespan opens the queue and runs the forwarder."""
    bridge = _Bridge(config)

    async def hook(request: Request) -> Response:
        try:
            provider = Provider(request.path_params["provider"])
        except ValueError:
            bridge.metrics.refused.labels("unknown-provider").inc()
            return Answer(
                404, "refused", "unknown provider; use github, gitlab or gitea"
            ).response()
        headers = request.headers
        if not signature_present(provider, headers):  # before a byte of the body is read
            bridge.metrics.signature_failures.inc()
            return Answer(401, "refused", "missing or bad signature").response()
        declared = headers.get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > config.max_body:
                raise _TooLarge
            async with asyncio.timeout(config.body_timeout):
                body = await _read_capped(request, config.max_body)
        except _TooLarge:
            bridge.metrics.refused.labels("too-large").inc()
            return Answer(413, "refused", f"body over {config.max_body} bytes").response()
        except TimeoutError:
            bridge.metrics.refused.labels("timeout").inc()
            reason = f"the body did not arrive within {config.body_timeout:g} s"
            return Answer(408, "refused", reason).response()
        return (await bridge.take(provider, headers, body)).response()

    async def healthz(request: Request) -> JSONResponse:
        try:
            stats = await bridge.stats()
        except Exception as e:
            return Answer(503, "unavailable", f"the intake queue cannot be read: {e}").response()
        oldest = stats.oldest_age
        queue = {
            "waiting": stats.queued,
            "in_flight": stats.in_flight,
            "oldest_seconds": None if oldest is None else round(oldest, 1),
            "failed": stats.failed,
            "unrecorded": stats.unrecorded,
            "stalled": oldest is not None and oldest > config.stall_after,
        }
        return Answer(200, "ok", "bridge is up", {"queue": queue}).response()

    async def metrics(request: Request) -> Response:
        with contextlib.suppress(Exception):  # counters still tell something without the queue
            await bridge.stats()
        return Response(bridge.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bridge.queue = await IntakeQueue.open(config.queue_url)
        client = httpx.AsyncClient(base_url=config.api_url, timeout=10.0)
        bridge.forwarder = Forwarder(
            bridge.queue,
            PrefectApi(client),
            bridge.metrics,
            settings=config.forwarding,
            ready=config.ready,
        )
        tasks = [asyncio.create_task(bridge.forwarder.run())]
        if config.spool is not None:
            tasks.append(asyncio.create_task(bridge.drain_spool()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await bridge.queue.close()

    return Starlette(
        routes=[
            Route("/hooks/{provider}", hook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the bridge on loopback with the platform's secret, git server and queue."""
    parser = argparse.ArgumentParser(prog="python -m deployments.bridge")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--max-connections", type=int, default=256, help="connections served at once; more get 503"
    )
    parser.add_argument(
        "--body-timeout", type=float, default=10.0, help="seconds a client has to send its body"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per forwarder request is noise

    import os

    import uvicorn

    from blocks import GitServer
    from blocks.webhook import load_webhook_secret
    from slipway.home import SlipwayHome
    from tasks.git import LocalCommits

    home = SlipwayHome.from_env()
    home.intake.mkdir(parents=True, exist_ok=True)
    server = GitServer.load_default()
    services = Catalogued(server)
    local = server.provider == "local" and server.root is not None
    queue_url = os.environ.get("SLIPWAY_INTAKE_DATABASE_URL") or (
        f"sqlite+aiosqlite:///{home.intake / 'deliveries.db'}"
    )
    config = BridgeConfig(
        api_url=os.environ["PREFECT_API_URL"],
        secret=load_webhook_secret(),
        queue_url=queue_url,
        is_service=services,
        known_now=services.known_now,
        has_commit=LocalCommits(server) if local else (lambda _r, _s: True),
        default_branch=server.default_branch,
        spool=home.spool,
        ready=platform_ready(home),
        body_timeout=args.body_timeout,
    )
    logger.info("webhook bridge on http://%s:%d/hooks/{github,gitlab,gitea}", HOST, args.port)
    heap.settle()
    uvicorn.run(
        build_app(config),
        host=HOST,
        port=args.port,
        # No dictConfig of uvicorn's own: replacing the handlers flushes Prefect's API log
        # handler, which waited 5 s on Prefect's events worker at every start of the bridge.
        log_config=None,
        log_level="warning",
        access_log=False,
        limit_concurrency=args.max_connections,
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
