"""The one way Slipway runs an external command.

Arguments go as a list and never through a shell, so a branch name or a
service name can never become shell syntax. Failures become `CommandError`s
that carry the command's stderr.

`routed` sends every command that code runs inside its context through
another function instead, e.g. `slipway.sandbox.Sandbox.run`: the security
scan confines all its tools that way, in one place, whatever each runs.
"""

from __future__ import annotations

import os
import subprocess  # nosec B404 - this module is the audited wrapper
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slipway.errors import CommandError, CommandNotFound, CommandTimeout

__all__ = [
    "CommandRunner",
    "CompletedCommand",
    "cpu_cores",
    "installed_tool",
    "require_binary",
    "routed",
    "run",
]


@dataclass(frozen=True)
class CompletedCommand:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    """The command as it was run."""
    returncode: int
    """Its exit code; non-zero only when the caller allowed it with ``check=False``."""
    stdout: str
    """Everything it printed on standard output."""
    stderr: str
    """Everything it printed on standard error."""


class CommandRunner(Protocol):
    """Something that runs a command as `run` does, e.g. inside a sandbox."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        input_text: str | None,
        check: bool,
        hint: str | None,
    ) -> CompletedCommand:
        """Run ``argv`` to completion; raise `CommandError` as `run` does."""
        ...


_route: ContextVar[CommandRunner | None] = ContextVar("slipway_command_route", default=None)


@contextmanager
def routed(runner: CommandRunner) -> Iterator[None]:
    """Send every `run` of this context (this thread or task) through ``runner``.

    The runner itself runs outside the route, so it may call `run` to start
    the real process (a sandbox does: ``bwrap ... -- argv``).
    """
    token = _route.set(runner)
    try:
        yield
    finally:
        _route.reset(token)


def cpu_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, not the whole host's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def installed_tool(name: str) -> str:
    """A console script of Slipway's own environment, else the one on PATH.

    The virtualenv's copy comes first because flows often run with a PATH
    that does not include the virtualenv's ``bin``. Falls back to the bare
    name, so a missing tool surfaces as `CommandNotFound` when it is run.
    """
    import shutil  # here: the push hook imports this module, and shutil costs it 10 ms

    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    return shutil.which(name) or name


def require_binary(name: str, *, hint: str) -> str:
    """Return the full path of ``name``, or raise with an install hint.

    Args:
        name: The executable to look up on PATH.
        hint: How to install it, e.g. ``apt-get install docker-registry``.
    """
    import shutil

    found = shutil.which(name)
    if found is None:
        raise CommandNotFound(
            (name,), returncode=None, message=f"`{name}` is not installed", hint=hint
        )
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    input_text: str | None = None,
    check: bool = True,
    hint: str | None = None,
) -> CompletedCommand:
    """Run a command to completion and capture its output.

    Args:
        argv: The program and its arguments; never joined into a shell line.
        cwd: The working directory.
        env: The complete environment; ``None`` inherits Slipway's own.
        timeout: Seconds before the command is killed and `CommandTimeout` raised.
        input_text: Text fed to standard input.
        check: Raise `CommandError` on a non-zero exit.
        hint: What to do when the command fails, carried by the error.
    """
    args = tuple(os.fspath(a) for a in argv)
    if not args:
        raise ValueError("run() needs a command")
    runner = _route.get()
    if runner is not None:
        token = _route.set(None)
        try:
            return runner(
                args,
                cwd=cwd,
                env=env,
                timeout=timeout,
                input_text=input_text,
                check=check,
                hint=hint,
            )
        finally:
            _route.reset(token)
    proc = _spawn(args, cwd=cwd, env=env, timeout=timeout, input_text=input_text, hint=hint)
    done = CompletedCommand(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(
            args, returncode=proc.returncode, stderr=proc.stderr, stdout=proc.stdout, hint=hint
        )
    return done


def _spawn(
    args: tuple[str, ...],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    input_text: str | None,
    hint: str | None,
) -> subprocess.CompletedProcess[str]:
    """One child process, run to its end; a missing program or a timeout is a typed error."""
    try:
        proc = subprocess.run(  # nosec B603 - list argv, no shell
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise CommandNotFound(
            args, returncode=None, message=f"`{args[0]}` is not installed", hint=hint
        ) from e
    except subprocess.TimeoutExpired as e:
        raise CommandTimeout(
            args,
            returncode=None,
            stderr=_text(e.stderr),
            stdout=_text(e.output),
            message=f"`{' '.join(args[:3])}` did not finish within {timeout} s",
            hint=hint,
        ) from e
    return proc


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw
