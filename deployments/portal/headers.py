"""The portal's response headers: a strict CSP on every page, a sandbox around every docs site.

The portal's own pages run no script at all (``script-src`` is ``'none'``):
they are server-rendered and work without JavaScript, so a catalog text that
slipped past escaping still could not run. A service's docs are that
service's own HTML, built from its repository: they are served under a CSP
``sandbox`` without ``allow-same-origin``, so their scripts run in an opaque
origin of their own. They cannot read the portal's pages, cookies or
storage, nor script a portal window, even though both share a host and port.
``X-Content-Type-Options: nosniff`` goes on everything, so a file can never
be run as a type it was not served as.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DOCS_CSP", "PORTAL_CSP", "SecurityHeaders", "is_docs_path"]

PORTAL_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""Portal pages: no script, no frames, styles and images from the portal only."""

DOCS_CSP = (
    "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox "
    "allow-downloads; default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
"""Docs sites: their own scripts may run, but only inside a sandbox with an opaque origin."""

_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Portal pages only: a sandboxed docs page is another origin, so these would also
# stop it loading its own stylesheets and scripts; on the portal's pages they stop
# a docs page from framing them or pulling them in as a resource.
_PORTAL_ONLY = (
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_DOCS_PREFIX = "/default/component/"


def is_docs_path(path: str) -> bool:
    """Whether ``path`` is part of a published docs site (TechDocs' layout)."""
    return path.startswith(_DOCS_PREFIX)


class SecurityHeaders:
    """ASGI middleware: the right CSP and the common headers on every response, errors included.

    Headers a route set itself are replaced, never doubled: a route cannot
    loosen the policy by accident.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; rewrite the response's headers on their way out."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = is_docs_path(scope.get("path", ""))
        extra = [
            *_COMMON,
            (b"content-security-policy", (DOCS_CSP if docs else PORTAL_CSP).encode()),
        ]
        if not docs:
            extra += _PORTAL_ONLY
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
