"""The service portal: one page per service and team, over the platform's own records.

Replaces the docs-only portal on the same port (`slipway up`'s ``docs``
component): a Starlette app rendered on the server with Jinja2, usable
without JavaScript, that still serves every service's TechDocs site from
the artifact store. See `deployments.portal.app` for the pages.
"""

from deployments.portal.app import build_app

__all__ = ["build_app"]
