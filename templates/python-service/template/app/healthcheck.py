"""Docker's HEALTHCHECK: the image has no curl, so ask /healthz from Python."""

from __future__ import annotations

import os
import sys
import urllib.request

from app.server import load_service


def main() -> int:
    """0 when /healthz answers 200, else 1."""
    host = os.environ.get("HOST", "127.0.0.1")
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard bind is reachable on loopback
        host = "127.0.0.1"
    port = int(os.environ.get("PORT", load_service()["port"]))
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
