"""The server's own clients get its app back without Prefect deriving it again."""

from __future__ import annotations

import prefect.logging.configuration
from prefect.server.api import server
from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT, temporary_settings

from slipway import server_app


def test_create_app_is_derived_once_per_settings_object(monkeypatch):
    monkeypatch.setattr(server, "create_app", server.create_app)  # undone after the test
    derived: list[object] = []
    setup_logging = prefect.logging.configuration.setup_logging

    def counting_setup_logging(*args, **kwargs):
        derived.append(object())  # Prefect's create_app sets logging up on every call
        return setup_logging(*args, **kwargs)

    monkeypatch.setattr(prefect.logging.configuration, "setup_logging", counting_setup_logging)

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
