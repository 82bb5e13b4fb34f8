"""Run the portal: ``python -m deployments.portal --port 4400``; `slipway up` does.

It reads the platform's default blocks (git server, artifact store, deploy
target) and Prefect at ``PREFECT_API_URL``, and serves on loopback only.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta

from slipway.home import HOST
from tasks.insights.docs_freshness import DEFAULT_STALE_AFTER

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The portal's command line, as `slipway up` passes it."""
    parser = argparse.ArgumentParser(prog="python -m deployments.portal")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--stale-after-days",
        type=float,
        default=DEFAULT_STALE_AFTER.days,
        help="flag docs built from a commit older than the latest by more than this",
    )
    parser.add_argument(
        "--health-interval", type=float, default=15.0, help="seconds between health rounds"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the portal until terminated."""
    args = parse_args(argv)
    from slipway.run_log import log_to_stderr

    log_to_stderr()

    import uvicorn
    from prefect import get_client
    from prefect.settings import get_current_settings

    from blocks import ArtifactStore, Defaults, DeployTarget, GitServer
    from deployments.portal.app import build_app
    from deployments.portal.health import HealthBoard
    from deployments.portal.sources import CatalogCache, PortalSources
    from deployments.startup import wait_for_gate
    from slipway import heap
    from tasks.monitoring.view import monitoring_view
    from tasks.storage import open_store

    wait_for_gate()  # imported beside Prefect's start; the blocks are there now
    found = Defaults(ArtifactStore, GitServer, DeployTarget)  # one request, not three
    store = open_store(found[ArtifactStore])
    with get_client(sync_client=True) as client:
        sources = PortalSources(
            catalog=CatalogCache(found[GitServer]),
            store=store,
            client=client,
            monitoring=monitoring_view(),
            ui_url=str(get_current_settings().ui_url or "").rstrip("/"),
            bind_address=found[DeployTarget].bind_address,
            stale_after=timedelta(days=args.stale_after_days),
        )
        app = build_app(sources, health=HealthBoard(interval=args.health_interval))
        logging.getLogger(__name__).info(
            "portal on http://%s:%d over %s", HOST, args.port, store.describe()
        )
        heap.settle()
        uvicorn.run(
            app,
            host=HOST,
            port=args.port,
            log_config=None,  # as the bridge's: keeps uvicorn from flushing Prefect's log handler
            log_level="warning",
            access_log=False,
        )


if __name__ == "__main__":
    main()
