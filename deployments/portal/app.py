"""The portal as an ASGI app: pages rendered on the server, docs served from the store.

Routes (every one GET; the portal changes nothing, so a page can never be
made to change something):

- ``/``: services with owner, lifecycle, level and health; filters by owner,
  system and level;
- ``/services/<name>``: environments, releases, findings, drift, DORA,
  scorecard, alerts; ``/history`` pages every release, ``/scans/<sha>/scan.sarif``
  hands out a scan's SARIF;
- ``/teams`` and ``/teams/<name>``: members, approvers, services, DORA;
- ``/docs``: every service's docs and their freshness; the sites themselves
  under ``/default/component/<name>/``, as TechDocs lays them out;
- ``/healthz``, and ``/static/`` for the stylesheet.

Every page escapes what it shows (Jinja2's autoescape, always on) and carries
a strict CSP (`deployments.portal.headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from deployments.portal.headers import SecurityHeaders
from deployments.portal.health import HealthBoard
from deployments.portal.listings import Filters, docs_rows, service_rows, team_view, teams
from deployments.portal.render import FILTERS
from deployments.portal.service_view import HISTORY_PAGE, history_rows, service_view
from deployments.portal.sources import PortalSources, environment_port
from slipway.errors import InvalidRequest, ObjectNotFound, ServiceNotFound, SlipwayError
from slipway.names import GitSha, ServiceName
from tasks.insights.records import latest_everywhere
from tasks.scanners.history import scan_prefix
from tasks.techdocs import DOCS_PREFIX, DocsReader

__all__ = ["build_app"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every page, every value: catalog and payload text is data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


class _Pages:
    """The portal's handlers, over one set of sources, health board and templates."""

    def __init__(self, sources: PortalSources, board: HealthBoard) -> None:
        self.sources = sources
        self.board = board
        self.templates = _templates()
        self.docs = DocsReader(sources.store)

    def page(self, request: Request, name: str, code: int = 200, **context: Any) -> Response:
        context.setdefault("problems", [])
        base = {"ui_url": self.sources.ui_url, "monitoring": self.sources.monitoring.status}
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=code)

    async def home(self, request: Request) -> Response:
        query = request.query_params
        filters = Filters(query.get("owner", ""), query.get("system", ""), query.get("level", ""))
        rows, choices = await run_in_threadpool(service_rows, self.sources, self.board, filters)
        return self.page(request, "home.html", rows=rows, choices=choices, filters=filters)

    async def service(self, request: Request) -> Response:
        name = _service_name(request)
        try:
            view = await run_in_threadpool(service_view, self.sources, name, self.board)
        except ServiceNotFound as e:
            raise HTTPException(404, str(e)) from e
        return self.page(request, "service.html", view=view)

    async def history(self, request: Request) -> Response:
        name = _service_name(request)
        raw = request.query_params.get("page", "0")
        number = int(raw) if raw.isdigit() and int(raw) < 10_000 else 0
        rows = await run_in_threadpool(history_rows, self.sources, name, page=number)
        more = len(rows) == HISTORY_PAGE
        return self.page(request, "history.html", service=name, rows=rows, page=number, more=more)

    async def sarif(self, request: Request) -> Response:
        name = _service_name(request)
        try:
            sha = GitSha.parse(request.path_params["sha"])
        except InvalidRequest as e:
            raise HTTPException(400, str(e)) from e
        key = f"{scan_prefix(name, sha)}/scan.sarif"
        try:
            body = await run_in_threadpool(self.sources.store.get, key)
        except ObjectNotFound as e:
            raise HTTPException(404, f"no scan of {name} at {sha}") from e
        disposition = f'attachment; filename="{name}-{sha[:12]}.sarif"'
        return Response(
            body, media_type="application/sarif+json", headers={"Content-Disposition": disposition}
        )

    async def team_list(self, request: Request) -> Response:
        return self.page(request, "teams.html", teams=await run_in_threadpool(teams, self.sources))

    async def team(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = await run_in_threadpool(team_view, self.sources, name, self.board)
        if view is None:
            raise HTTPException(404, f"no team {name!r}: not a group, and it owns no service")
        return self.page(request, "team.html", view=view)

    async def docs_index(self, request: Request) -> Response:
        rows, problems = await run_in_threadpool(docs_rows, self.sources)
        stale = self.sources.stale_after
        return self.page(request, "docs.html", rows=rows, problems=problems, stale=stale)

    async def docs_file(self, request: Request) -> Response:
        return await run_in_threadpool(_docs_file, self.docs, request.url.path)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def failed(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if _is_docs(request):  # inside a docs site: no portal page there
            return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)
        code = exc.status_code
        return self.page(request, "error.html", code, status=code, detail=exc.detail)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        logger.error("the portal could not read what %s needs: %s", request.url.path, exc)
        return self.page(request, "error.html", 502, status=502, detail=str(exc))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_probe_forever(self.sources, self.board))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_app(sources: PortalSources, *, health: HealthBoard | None = None) -> Starlette:
    """The portal over ``sources``; probes every environment's health while it runs."""
    pages = _Pages(sources, health or HealthBoard())
    app = Starlette(
        routes=[
            Route("/", pages.home),
            Route("/services/{name}", pages.service),
            Route("/services/{name}/history", pages.history),
            Route("/services/{name}/scans/{sha}/scan.sarif", pages.sarif),
            Route("/teams", pages.team_list),
            Route("/teams/{name}", pages.team),
            Route("/docs", pages.docs_index),
            Route("/default/component/{path:path}", pages.docs_file),
            Route("/healthz", pages.healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={HTTPException: pages.failed, SlipwayError: pages.unavailable},
        lifespan=pages.lifespan,
    )
    app.add_middleware(SecurityHeaders)
    return app


def _is_docs(request: Request) -> bool:
    return request.url.path.startswith("/default/component/")


def _service_name(request: Request) -> str:
    try:
        return ServiceName.parse(request.path_params["name"])
    except InvalidRequest as e:
        raise HTTPException(404, str(e)) from e


def _docs_file(docs: DocsReader, path: str) -> Response:
    """One file of a published site or of one of its versions; a directory gives its index.html."""
    key = DOCS_PREFIX + path.lstrip("/")
    if key.endswith("/"):
        key += "index.html"
    try:
        body = docs.get(key)
    except ObjectNotFound:
        if not path.endswith("/") and docs.exists(f"{key}/index.html"):
            return RedirectResponse(path + "/", status_code=301)
        return PlainTextResponse("not found\n", status_code=404)
    except InvalidRequest:
        return PlainTextResponse("bad path\n", status_code=400)
    kind = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(body, media_type=kind)


async def _probe_forever(sources: PortalSources, board: HealthBoard) -> None:
    """Refresh the health board every interval until the app stops; a failed round is logged."""
    async with httpx.AsyncClient() as client:
        while True:
            try:
                targets = await run_in_threadpool(_targets, sources)
                await board.refresh(targets, client)
            except (SlipwayError, httpx.HTTPError, OSError) as e:
                logger.warning("health round failed: %s", e)
            await asyncio.sleep(board.interval)


def _targets(sources: PortalSources) -> dict[tuple[str, str], str]:
    """Every environment that was provisioned or deployed, and its ``/healthz`` URL."""
    deployed = latest_everywhere(sources.client)
    found: dict[tuple[str, str], str] = {}
    for entry in sources.catalog.snapshot().components:
        for name in entry.environment_names:
            if name in entry.outputs or (entry.name, name) in deployed:
                port = environment_port(entry, name)
                found[(entry.name, name)] = f"http://{sources.bind_address}:{port}/healthz"
    return found
