"""moto's S3 server in a process of its own on loopback, for the benches that time S3 stores.

In the bench's own process (``ThreadedMotoServer``) every request would
compete with the code being timed for one interpreter lock, which S3 never
does.

The process serves moto's S3 application alone, not ``moto_server``'s
dispatcher for every AWS service: that dispatcher takes one lock per request
and lists moto's package directory under it to find the service, which cost
about 40% of the server's CPU per request (py-spy, 600 puts and 600 gets).
The S3 behaviour is the same; only the harness's own overhead goes.

Run as a script, it serves on the port it is given: ``python s3_server.py PORT``.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["moto_server"]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _serve(port: int) -> None:
    """Serve S3 on loopback as ``moto_server`` does, minus its multi-service dispatch."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    run_simple(
        "127.0.0.1",
        port,
        create_backend_app("s3"),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
