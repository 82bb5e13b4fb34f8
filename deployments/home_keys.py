"""What `slipway up` checks and makes in its home before it starts anything.

- Everything under the home is made private to its owner (`slipway.private`),
  with a warning naming what was open to others;
- the Prefect API's auth string (`slipway.api_auth`): made on a new server
  home, given to a worker host's;
- the record key that signs release and approval records
  (`slipway.signing`): the same.
"""

from __future__ import annotations

from collections.abc import Callable

from slipway.api_auth import (
    API_AUTH_FILE,
    CLIENT_VARIABLE,
    ApiAuth,
    client_api_auth,
    ensure_api_auth,
)
from slipway.errors import ConfigurationError
from slipway.home import SlipwayHome
from slipway.private import make_private
from slipway.signing import SIGNING_KEY_FILE, ensure_signing_key, load_signing_key

__all__ = ["prepare_home"]

Report = Callable[[str], None]


def prepare_home(home: SlipwayHome, role: str, report: Report) -> ApiAuth:
    """Make the home private and its keys present; returns the API auth string to use.

    Raises:
        ConfigurationError: a worker host was not given its server's auth
            string or record key, or a key file is unreadable.
    """
    _make_home_private(home, report)
    auth = _api_auth(home, role, report)
    _record_key(home, role, report)
    return auth


def _make_home_private(home: SlipwayHome, report: Report) -> None:
    """Take from group and others whatever the data directory grants them, and say so."""
    loosened = make_private(home.root)
    fixed = [x for x in loosened if x.fixed]
    if fixed:
        report(
            f"warning: {len(fixed)} path(s) under {home.root} were open to other users; "
            "made them private (0600 files, 0700 directories): "
            + ", ".join(x.describe() for x in fixed[:5])
            + (" ..." if len(fixed) > 5 else "")
        )
    for x in loosened:
        if not x.fixed:
            report(f"warning: {x.describe()}: give it to this user or remove it")


def _api_auth(home: SlipwayHome, role: str, report: Report) -> ApiAuth:
    """The Prefect API's auth string: the home's own (made on a new home), or a worker's copy."""
    if role == "worker":
        auth = client_api_auth(home)
        if auth is None:
            raise ConfigurationError(
                "a worker host needs the auth string of its Prefect server",
                hint=f"copy <server home>/keys/{API_AUTH_FILE} to {home.keys}/ (mode 0600), "
                f"or set {CLIENT_VARIABLE}",
            )
        return auth
    auth, created = ensure_api_auth(home)
    if created:
        report(
            f"generated the Prefect API's auth string in {home.keys / API_AUTH_FILE}: "
            f"the UI asks for it (user {auth.username!r}, the password is in that file)"
        )
    return auth


def _record_key(home: SlipwayHome, role: str, report: Report) -> None:
    """The key that signs release and approval records: made on a server's home, given to a worker's."""
    if role == "worker":
        load_signing_key(home)  # refuses, saying what to copy, when it was not given
        return
    _, created = ensure_signing_key(home)
    if created:
        report(
            f"generated the record key in {home.keys / SIGNING_KEY_FILE}: release and "
            "approval records are signed with it; keep it with the data directory's backups"
        )
