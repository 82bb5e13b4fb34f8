"""Prefect's server models on a SQLite file of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def own_database(path: Path) -> Iterator[None]:
    """Point Prefect's models at ``path`` for the block.

    Prefect keeps the first database configuration a process makes, for the
    whole process: a settings change alone would leave the models on the
    database of whichever test came first.
    """
    from prefect.server.database.configurations import AioSqliteConfiguration
    from prefect.server.database.dependencies import temporary_database_config
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    url = f"sqlite+aiosqlite:///{path}"
    with (
        temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: url}),
        temporary_database_config(AioSqliteConfiguration(connection_url=url)),
    ):
        yield
