"""The server's own clients find its app at once.

Stands in for a fix to what PrefectHQ/prefect#14513 added to ``create_app``
(the logging set-up on every call), still so in Prefect 3.9.1.

Inside Prefect's server, the actions service and other services call the API
through clients that reach the running app in memory. Each such client calls
``create_app()``, which returns the app it cached for the current settings,
but first serializes every setting to compute the cache key and loads and
applies the logging configuration again from YAML. Measured under a push
burst, that took 0.2-0.4 s of the server's event loop per client, so every
run a trigger started stopped every request in flight for that long.

`apply` makes a call with no arguments return the app that the same settings
object got last time. That is the app Prefect's cache would return: same
settings, same key. Any other call, including the one that starts the server,
goes to Prefect unchanged. The server runs inside one settings context, so
its settings object stays the same; outside a context Prefect builds a new
one on every call, and then this memo never hits and costs what it did before.
"""

from __future__ import annotations

import weakref
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply"]

PATCH = Patch(
    name="server-app",
    module="prefect.server.api.server",
    qualname="create_app",
    upstream="https://github.com/PrefectHQ/prefect/pull/14513",
    fingerprint="b3eb703357468aec",
)


def apply() -> bool:
    """Memoize ``create_app()`` by settings object in this process; safe to call twice.

    Returns whether the memo is in place (not when Prefect's code changed since this was written).
    """
    from prefect.server.api import server
    from prefect.settings import get_current_settings

    original = server.create_app
    if getattr(original, "_slipway_memoized", False):
        return True
    if not PATCH.applicable():
        return False
    settings_seen: weakref.ref[Any] | None = None
    app_seen: Any = None

    def create_app(settings: Any = None, *args: Any, **kwargs: Any) -> Any:
        nonlocal settings_seen, app_seen
        if settings is not None or args or any(kwargs.values()):
            return original(settings, *args, **kwargs)
        current = get_current_settings()
        if settings_seen is None or settings_seen() is not current:
            settings_seen, app_seen = weakref.ref(current), original()
        return app_seen

    create_app._slipway_memoized = True  # type: ignore[attr-defined]
    create_app.__doc__ = original.__doc__
    server.create_app = create_app
    return True
