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
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.bridge_intake import MAX_BODY_BYTES, Answer, BridgeConfig, Intake
from deployments.bridge_metrics import CONTENT_TYPE
from deployments.bridge_services import Catalogued, PreviewBranches, platform_ready
from deployments.webhooks import Provider, signature_present
from slipway import heap
from slipway.home import HOST

__all__ = ["MAX_BODY_BYTES", "Answer", "BridgeConfig", "build_app", "main"]

logger = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _hook(request: Request) -> Response:
    intake: Intake = request.app.state.intake
    config, metrics = intake.config, intake.metrics
    try:
        provider = Provider(request.path_params["provider"])
    except ValueError:
        metrics.refused.labels("unknown-provider").inc()
        return Answer(404, "refused", "unknown provider; use github, gitlab or gitea").response()
    headers = request.headers
    if not signature_present(provider, headers):  # before a byte of the body is read
        metrics.signature_failures.inc()
        return Answer(401, "refused", "missing or bad signature").response()
    declared = headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) > config.max_body:
            raise _TooLarge
        async with asyncio.timeout(config.body_timeout):
            body = await _read_capped(request, config.max_body)
    except _TooLarge:
        metrics.refused.labels("too-large").inc()
        return Answer(413, "refused", f"body over {config.max_body} bytes").response()
    except TimeoutError:
        metrics.refused.labels("timeout").inc()
        reason = f"the body did not arrive within {config.body_timeout:g} s"
        return Answer(408, "refused", reason).response()
    return (await intake.take(provider, headers, body)).response()


async def _healthz(request: Request) -> JSONResponse:
    intake: Intake = request.app.state.intake
    try:
        stats = await intake.stats()
    except Exception as e:
        return Answer(503, "unavailable", f"the intake queue cannot be read: {e}").response()
    return Answer(200, "ok", "bridge is up", {"queue": intake.health(stats)}).response()


async def _metrics(request: Request) -> Response:
    intake: Intake = request.app.state.intake
    with contextlib.suppress(Exception):  # the counters still tell something without the queue
        await intake.stats()
    return Response(intake.metrics.render(), media_type=CONTENT_TYPE)


def build_app(config: BridgeConfig) -> Starlette:
    """The bridge as an ASGI app; its lifespan opens the queue and runs the forwarder."""
    intake = Intake(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with intake.running():
            yield

    app = Starlette(
        routes=[
            Route("/hooks/{provider}", _hook, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.intake = intake
    return app


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deployments.bridge")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--max-connections", type=int, default=256, help="connections served at once; more get 503"
    )
    parser.add_argument(
        "--body-timeout", type=float, default=10.0, help="seconds a client has to send its body"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the bridge on loopback with the platform's secret, git server and queue."""
    args = _arguments(argv)
    from slipway.run_log import log_to_stderr

    log_to_stderr()

    import os

    import uvicorn

    from blocks import GitServer, PlatformSettings
    from blocks.webhook import load_webhook_secret
    from deployments.startup import wait_for_gate
    from slipway.api_auth import http_auth
    from slipway.home import SlipwayHome
    from tasks.git import LocalCommits

    home = SlipwayHome.from_env()
    home.intake.mkdir(parents=True, exist_ok=True)
    wait_for_gate()  # imported beside Prefect's start; the blocks are there now
    server = GitServer.load_default()
    services = Catalogued(server)
    local = server.provider == "local" and server.root is not None
    queue_url = os.environ.get("SLIPWAY_INTAKE_DATABASE_URL") or (
        f"sqlite+aiosqlite:///{home.intake / 'deliveries.db'}"
    )
    config = BridgeConfig(
        api_url=os.environ["PREFECT_API_URL"],
        api_auth=http_auth(),
        secret=load_webhook_secret(),
        queue_url=queue_url,
        is_service=services,
        known_now=services.known_now,
        has_commit=LocalCommits(server) if local else (lambda _r, _s: True),
        default_branch=server.default_branch,
        preview_branch=PreviewBranches(lambda: PlatformSettings.load_default().preview_policy()),
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
