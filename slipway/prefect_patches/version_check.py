"""A flow run checks its server's version once, not once more for its suspension observer.

Stands in for a fix to the check that PrefectHQ/prefect#17210 added and
PrefectHQ/prefect#21875 put in the start of every run of a deployment
(still so in Prefect 3.9.1). Prefect checks the server's version once per
process and API, keyed by the API's URL, but spells that URL two ways: the
API clients key it as httpx's base URL, with a trailing slash
(``http://127.0.0.1:4200/api/``), the events subscriber as the setting has
it (``http://127.0.0.1:4200/api``). So the suspension observer, which every
run of a deployment waits for before it may propose Running, checked again
with a new HTTP client and TLS context: 45-75 ms of each run's start here.

`apply` keys both spellings of one URL alike. The check still runs once in
each process for each API (and client version), before the first client or
subscriber uses it; a failed check caches nothing, as before.

`prime` imports ahead, in a warm parent that forks flow runs, what the
observer imports in each run: its module and anyio's asyncio backend (some
40 ms of imports in every run otherwise).
"""

from __future__ import annotations

import importlib

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "apply", "prime"]

PATCH = Patch(
    name="version-check",
    module="prefect._internal.version_checking",
    qualname="_api_version_check_key",
    upstream="https://github.com/PrefectHQ/prefect/pull/21875",
    fingerprint="add82a02a43eed37",
)

_NAME = "_api_version_check_key"
_USERS = ("prefect._internal.version_checking", "prefect.client.orchestration")
"""The modules that hold Prefect's key function by name."""

_RUN_IMPORTS = (
    "anyio._backends._asyncio",
    "anyio.streams.tls",
    "prefect._internal.observers",
)
"""What a deployment's flow run imports for its suspension observer."""


def _api_version_check_key(api_url: str, client_version: str) -> tuple[str, str]:
    """Prefect's key, the same with or without a trailing slash on the URL."""
    return (str(api_url).rstrip("/"), client_version)


def apply() -> bool:
    """Key the version check by the API however its URL is spelled; safe to call twice.

    Returns whether it is in place (not when Prefect's code changed since this was written).
    """
    modules = [importlib.import_module(name) for name in _USERS]
    if all(getattr(m, _NAME) is _api_version_check_key for m in modules):
        return True
    if not PATCH.applicable():
        return False
    for module in modules:
        setattr(module, _NAME, _api_version_check_key)
    return True


def prime() -> None:
    """Import what each run's suspension observer imports, ahead of the runs."""
    for name in _RUN_IMPORTS:
        importlib.import_module(name)
