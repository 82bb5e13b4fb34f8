"""OSV online, asked by the platform on behalf of a sandboxed dependency scan.

pip-audit runs in a sandbox without network, so with the vulnerability
source set to OSV online (``kind="osv"``) it cannot reach OSV itself. The
platform serves it `tasks.osv_mirror`'s API on a unix socket as for the
mirror, answering from this relay: each package query becomes one
``POST`` to the configured OSV query URL, made by the platform on one
kept-alive connection (`slipway.http`), and nothing else crosses. The
sandbox can ask about packages; it can reach no other address and send
nothing but an OSV query.

Example:
    ```python
    with serve(OsvRelay(source.osv_url), socket_path=scratch / "osv.sock") as server:
        ...  # the sandbox reaches it at server.query_url through server.forward
    ```
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from slipway.http import shared_client

__all__ = ["OsvRelay"]

logger = logging.getLogger(__name__)

_TIMEOUT = 15.0
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


class OsvRelay:
    """Answers the mirror's queries from OSV's API at ``query_url``.

    Args:
        query_url: OSV's ``POST /v1/query`` endpoint, e.g. ``https://api.osv.dev/v1/query``.
        timeout: Seconds one upstream request may take.
    """

    def __init__(self, query_url: str, *, timeout: float = _TIMEOUT) -> None:
        self.query_url = query_url
        self.timeout = timeout

    def query(
        self, name: str, version: str | None, *, ecosystem: str = "PyPI"
    ) -> list[dict[str, Any]]:
        """The records OSV lists for ``name`` at ``version``.

        Raises:
            ValueError: OSV did not answer with its JSON; the sandbox gets a 400
                with the reason, and pip-audit reports the scan errored.
        """
        body: dict[str, Any] = {"package": {"name": name, "ecosystem": ecosystem}}
        if version is not None:
            body["version"] = version
        try:
            response = shared_client().post(self.query_url, json=body, timeout=self.timeout)
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as e:
            logger.warning("OSV at %s did not answer for %s: %s", self.query_url, name, e)
            raise ValueError(f"OSV online did not answer: {type(e).__name__}") from e
        vulns = answer.get("vulns") if isinstance(answer, dict) else None
        return [v for v in vulns or [] if isinstance(v, dict)]

    def get(self, vuln_id: str) -> dict[str, Any] | None:
        """Records by id are not relayed for a sandbox: pip-audit asks only ``/v1/query``."""
        return None

    def record(self, vuln_id: str) -> dict[str, Any] | None:
        """OSV's record ``vuln_id`` (``GET /v1/vulns/<id>`` beside the query URL), or None.

        The platform's own lookup, to rate a finding or answer ``slipway vuln``.

        Raises:
            ValueError: OSV did not answer with its JSON, or the id is not one.
        """
        if not _ID.fullmatch(vuln_id):
            raise ValueError(f"{vuln_id!r} is not an advisory id")
        url = f"{self.query_url.rstrip('/').removesuffix('/query')}/vulns/{vuln_id}"
        try:
            response = shared_client().get(url, timeout=self.timeout)
            if response.status_code == 404:
                return None
            response.raise_for_status()
            record = response.json()
        except (httpx.HTTPError, ValueError) as e:
            logger.warning("OSV at %s did not answer for %s: %s", url, vuln_id, e)
            raise ValueError(f"OSV online did not answer: {type(e).__name__}") from e
        return record if isinstance(record, dict) else None

    def __len__(self) -> int:
        return 0
