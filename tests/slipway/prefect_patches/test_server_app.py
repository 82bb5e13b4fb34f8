"""The server's own clients get its app back without Prefect deriving it again."""

from __future__ import annotations

from typing import Any

from prefect.server.api import server
from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT, temporary_settings

from slipway.prefect_patches import server_app


def test_create_app_is_derived_once_per_settings_object(monkeypatch):
    prefect_create_app = server.create_app
    assert not getattr(prefect_create_app, "_slipway_memoized", False)
    derived: list[dict[str, Any]] = []

    def counting_create_app(*args: Any, **kwargs: Any) -> Any:
        # Counts Prefect's own derivations (settings hash, logging set-up, cache lookup).
        # Counting setup_logging instead is wrong: it calls itself again when an
        # incremental dictConfig fails, which depends on what ran earlier in the process.
        derived.append(kwargs)
        return prefect_create_app(*args, **kwargs)

    monkeypatch.setattr(server, "create_app", counting_create_app)  # undone after the test

    assert server_app.apply()
    assert server_app.apply()  # a second call wraps nothing twice
    with temporary_settings():  # one settings object for the whole context, as in the server
        first = server.create_app()
        assert server.create_app() is first
        assert len(derived) == 1

        with temporary_settings({PREFECT_SERVER_API_KEEPALIVE_TIMEOUT: 7}):
            other = server.create_app()  # other settings: Prefect decides, as before
            assert other is not first
            assert server.create_app() is other
        assert len(derived) == 2

        assert server.create_app() is first  # back to the first settings: Prefect's cache
        assert server.create_app() is first
        assert len(derived) == 3
        server.create_app(ignore_cache=True)  # any argument goes to Prefect unchanged
        assert len(derived) == 4
        assert derived[-1] == {"ignore_cache": True}
