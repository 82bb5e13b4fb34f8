"""The Prefect server's database: its URL, checked and with the password hidden, and a probe.

A server host runs Prefect on SQLite (the default) or PostgreSQL. The URL comes
from ``--database`` or the environment (`DATABASE_ENV`); only the Prefect
server child ever sees it, and nothing prints its password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from slipway.errors import ComponentError, ConfigurationError

__all__ = ["DATABASE_ENV", "Database", "check_database"]

DATABASE_ENV = ("SLIPWAY_DATABASE_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
"""Where a database URL may come from besides ``--database``, first one wins.
Only the Prefect server child ever sees it."""

_DIALECTS = {"postgresql+asyncpg": "PostgreSQL", "sqlite+aiosqlite": "SQLite"}


@dataclass(frozen=True)
class Database:
    """The Prefect server's database URL; the password never leaves `url`.

    Example:
        >>> Database.parse("postgresql+asyncpg://slipway:pw@db:5432/slipway").redacted
        'postgresql+asyncpg://slipway:***@db:5432/slipway'
    """

    url: SecretStr
    """The full SQLAlchemy URL, password included."""
    redacted: str
    """The same URL with the password replaced by ``***``: safe to print and store."""
    kind: str
    """``PostgreSQL`` or ``SQLite``."""

    @classmethod
    def parse(cls, raw: str) -> Database:
        """Check that Prefect can use the URL and hide its password.

        Raises:
            ConfigurationError: the URL is not ``postgresql+asyncpg://`` or
                ``sqlite+aiosqlite://``, or names no host or database.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(raw.strip())
        except (ArgumentError, ValueError) as e:
            raise ConfigurationError(
                "the database URL cannot be parsed", hint=_DATABASE_HINT
            ) from e
        kind = _DIALECTS.get(parsed.drivername)
        if kind is None:
            raise ConfigurationError(
                f"Prefect cannot use a {parsed.drivername!r} database URL", hint=_DATABASE_HINT
            )
        if kind == "PostgreSQL" and not (parsed.host and parsed.database):
            raise ConfigurationError(
                "the PostgreSQL URL names no host or no database", hint=_DATABASE_HINT
            )
        redacted = parsed.render_as_string(hide_password=True)
        return cls(SecretStr(raw.strip()), redacted, kind)

    def describe(self) -> str:
        """``PostgreSQL postgresql+asyncpg://user:***@host/db``, for `status` and logs."""
        return f"{self.kind} {self.redacted}"


_DATABASE_HINT = (
    "use postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE (or sqlite+aiosqlite:///PATH); "
    "pass it in SLIPWAY_DATABASE_URL rather than on the command line"
)


def check_database(database: Database, *, timeout: float = 10.0) -> None:
    """Connect once to a PostgreSQL database, so a wrong URL fails before Prefect starts.

    Raises:
        ComponentError: the server cannot be reached or refuses the login. The
            message names host, database and user, never the password.
    """
    if database.kind != "PostgreSQL":
        return
    import asyncpg  # type: ignore[import-untyped]

    secret = database.url.get_secret_value()
    dsn = secret.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=timeout)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        password = urlsplit(dsn).password
        reason = str(e) or type(e).__name__
        if password:
            reason = reason.replace(password, "***")
        raise ComponentError(
            f"cannot connect to {database.describe()}: {reason}",
            hint="check that PostgreSQL runs and listens there, that the database exists "
            "and that the user and password in the URL are right",
        ) from e
