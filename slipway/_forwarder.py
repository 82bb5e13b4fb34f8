"""Inside a sandbox: relay loopback ports to unix sockets of the host, then run a command.

`slipway.sandbox` runs this file, by path and with ``python -I -S``, as the
first process of a sandbox that was given forwards (`slipway.sandbox.Forward`).
The sandbox has a network namespace of its own, so its ``127.0.0.1`` is
private: the one way out is a unix socket the platform bound into it (the
OSV mirror, say), and this relay is what lets a tool that only speaks TCP
(pip-audit's HTTP client) use it.

It uses the standard library alone: nothing of Slipway is visible inside.

    python -I -S _forwarder.py '[[8765, "/run/osv.sock"]]' -- pip-audit ...
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading

__all__ = ["main"]

_CHUNK = 1 << 16


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` into ``sink`` until ``source`` ends, then end ``sink``'s writing half."""
    try:
        while chunk := source.recv(_CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, path: str) -> None:
    """Accept on ``listener`` forever; each connection is relayed to the socket at ``path``."""
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError as e:
            print(f"forwarder: {path} refused a connection: {e}", file=sys.stderr)
            client.close()
            upstream.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def main(argv: list[str]) -> int:
    """Listen on each forwarded port, run the command after ``--`` and return its exit code."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _forwarder.py FORWARDS_JSON -- COMMAND...", file=sys.stderr)
        return 2
    for port, path in json.loads(argv[0]):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(16)
        threading.Thread(target=_serve, args=(listener, str(path)), daemon=True).start()
    return subprocess.call(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
