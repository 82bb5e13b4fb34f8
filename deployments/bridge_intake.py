"""What the webhook bridge does with a delivery, apart from HTTP: check it, queue it, forward it.

`Intake.take` is the one path of a delivery, whether it came over HTTP
(`deployments.bridge`) or from the git hook's spool; `Intake.running` keeps
the queue open and the forwarder running for the app's lifetime.
"""

from __future__ import annotations

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
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from deployments.bridge_metrics import BridgeMetrics
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
    signature_valid,
)
from slipway.errors import InvalidRequest

__all__ = ["MAX_BODY_BYTES", "Answer", "BridgeConfig", "Intake"]

logger = logging.getLogger("deployments.bridge")

MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MB; anything larger is refused unread."""
_PARSE_INLINE_BYTES = 1024 * 1024
"""Larger bodies are parsed off the event loop, so they do not stall other requests."""


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge needs; `main` fills it from the platform's blocks."""

    api_url: str
    """Prefect's API, e.g. ``http://127.0.0.1:4200/api``."""
    api_auth: httpx.Auth | None
    """What the forwarder authenticates to Prefect with (`slipway.api_auth`)."""
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
    preview_branch: Callable[[str], bool] = lambda _branch: True
    """Whether a push to this branch gets a preview environment (the platform's policy); may block."""
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


class Intake:
    """What the bridge does with a delivery, and the queue and forwarder behind it.

    `running` opens the queue and runs the forwarder (and the spool's
    drain) for as long as the app lives.
    """

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
        try:
            known = c.known_now(name) or await run_in_threadpool(c.is_service, name)
        except Exception as e:  # unknown is not proven: a 503 is redelivered or kept spooled
            m.unavailable.inc()
            logger.error("could not tell whether %r is a service: %s", name, e)
            return Answer(503, "unavailable", "the service catalog could not be read; redeliver")
        if not known:
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
        config = self.config
        delivery = delivery_id(provider, headers, body)
        key = delivery_key(provider, delivery, body)
        allowed = True
        if push.branch is not None and push.branch != config.default_branch:
            allowed = await run_in_threadpool(config.preview_branch, push.branch)
        event = push_event(
            provider,
            key,
            delivery,
            push,
            default_branch=config.default_branch,
            preview_allowed=allowed,
        )
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

        said = ""
        while True:  # for the bridge's lifetime: no error may end it, or the spool waits a restart
            try:
                done = await drain(spool, deliver)
            except Exception as e:
                if repr(e) != said:  # once per distinct error, not every pass
                    logger.error("spool: could not drain %s, will retry: %r", spool, e)
                said = repr(e)
            else:
                said = ""
                if done.sent or done.rejected:
                    logger.info(
                        "spool: %d queued, %d refused (set aside in %s), %d waiting",
                        done.sent,
                        done.rejected,
                        spool / "rejected",
                        done.kept,
                    )
            await asyncio.sleep(self.config.spool_every)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the queue, run the forwarder and the spool's drain; undo all of it on exit."""
        config = self.config
        self.queue = await IntakeQueue.open(config.queue_url)
        client = httpx.AsyncClient(base_url=config.api_url, auth=config.api_auth, timeout=10.0)
        self.forwarder = Forwarder(
            self.queue,
            PrefectApi(client),
            self.metrics,
            settings=config.forwarding,
            ready=config.ready,
        )
        tasks = [asyncio.create_task(self.forwarder.run())]
        if config.spool is not None:
            tasks.append(asyncio.create_task(self.drain_spool()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await self.queue.close()

    def health(self, stats: QueueStats) -> dict[str, Any]:
        """The queue as ``/healthz`` and `slipway status` show it."""
        oldest = stats.oldest_age
        return {
            "waiting": stats.queued,
            "in_flight": stats.in_flight,
            "oldest_seconds": None if oldest is None else round(oldest, 1),
            "failed": stats.failed,
            "unrecorded": stats.unrecorded,
            "stalled": oldest is not None and oldest > self.config.stall_after,
        }
