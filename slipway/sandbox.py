"""Run untrusted work confined by the kernel: no network, only the paths it is given.

A service's repository is untrusted input. Its MkDocs build and every
scanner that reads it run through `Sandbox`, which starts the command under
bubblewrap (``bwrap``), so the limits are namespaces the kernel enforces,
not a filter on what the repository says:

- **No network.** A network namespace of its own with only a loopback
  interface: the host's loopback services (Prefect's API, the registry, the
  bridge) and the internet do not exist for it. A `Forward` is the one
  exception a caller can make: a port of the private loopback relayed to
  one unix socket of the host (the OSV mirror).
- **Only the given paths.** A mount namespace holding ``/usr`` and the
  Python runtime the command needs (read-only), the paths the caller names
  (read-only or writable), a new ``/proc``, a minimal ``/dev`` and a
  private ``/tmp``. The rest of the host's filesystem is absent: no
  ``/etc``, no platform data directory, no Docker socket.
- **No privilege.** User, pid, ipc and uts namespaces of its own, uid and
  gid 65534, every capability dropped, a new session, a read-only root,
  and it dies with its parent.
- **A clean environment.** ``PATH``, ``HOME``, ``TMPDIR``, a locale and the
  few harmless settings a caller passes by name; never a platform variable.

Example:
    ```python
    box = Sandbox(read_only=(checkout,), writable=(site,))
    box.run(["mkdocs", "build", "--site-dir", str(site)], cwd=checkout)
    with box.applied():  # every slipway.process.run in here is confined
        scanner.scan(checkout, timeout=60)
    ```
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from slipway.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    InvalidRequest,
    SandboxUnavailable,
)
from slipway.process import CompletedCommand, routed, run

__all__ = ["BWRAP_HINT", "SANDBOX_UID", "Forward", "Sandbox", "check_sandbox", "runtime_paths"]

SANDBOX_UID = 65534
"""The uid and gid every sandboxed process runs as (``nobody``)."""
BWRAP_HINT = (
    "install bubblewrap (`apt-get install bubblewrap`; `make system` does) and run "
    "Slipway as root or where unprivileged user namespaces are enabled "
    "(`sysctl kernel.unprivileged_userns_clone=1`)"
)
_HOME = "/tmp"  # noqa: S108 - the sandbox's own private tmpfs, not the host's /tmp
_FORWARDER = Path(__file__).with_name("_forwarder.py")
_FORWARDER_INSIDE = "/run/slipway/forwarder.py"
_NICE_HINT = "install dash and coreutils (`apt-get install dash coreutils`)"
_YIELD_CORES = (
    'n=$1; shift; i=0; while [ -w /proc/self/autogroup ] && [ "$i" -lt 5 ]; do '
    'echo "$n" 2>/dev/null >/proc/self/autogroup && break; i=$((i + 1)); sleep 0.1; done; '
    'exec nice -n "$n" "$@"'
)
"""Lower the command's CPU priority by ``$1``, also where the kernel groups by session.

Bubblewrap's ``--new-session`` starts a new session, and with the kernel's
autogroup scheduling (the default without systemd's cgroups) each session
gets an equal share of the CPU whatever its processes' nice values: four
scanners would outweigh one build four to one. So the session's own group
is lowered too, by writing ``/proc/self/autogroup``; the kernel accepts that
from any user, at most every 0.1 s across the machine, hence the few tries.
"""
_PASSED = re.compile(
    r"LANG|LC_[A-Z]+|TZ|NO_COLOR|PYTHON(?:DONTWRITEBYTECODE|UNBUFFERED|IOENCODING|SAFEPATH|WARNINGS)"
)
"""Variables any caller's environment may hand in: how to print, never where or who."""
_SECRET = re.compile(r"KEY|SECRET|TOKEN|PASS|AUTH|CRED|SESSION|COOKIE|CERT", re.IGNORECASE)
"""Names never handed in, whatever a caller allows."""
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Forward:
    """A port of the sandbox's private loopback that reaches one unix socket of the host."""

    port: int
    """The port on ``127.0.0.1`` inside the sandbox."""
    socket: Path
    """The host's unix socket that connections to it are relayed to."""


@dataclass(frozen=True)
class Sandbox:
    """What one confined command may see besides ``/usr`` and its own runtime.

    Args:
        read_only: Paths the command may read, mounted at the same place.
        writable: Paths the command may also write (they must exist).
        forwards: Private loopback ports relayed to host unix sockets.
        env: Variables the command gets, besides the clean base.
        passed_env: A pattern of further names the caller's ``env`` may hand
            in (on top of locale and Python output settings); names that look
            like a credential are never handed in.
        niceness: How far below the caller's CPU priority the command runs
            (``nice -n``, 0 to 19). Background work, such as the scan every
            push starts beside its build, yields the cores to what a user
            waits for.
    """

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    forwards: tuple[Forward, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    passed_env: str | None = None
    niceness: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.niceness <= 19:
            raise InvalidRequest(f"niceness must be 0 to 19, not {self.niceness}")

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 600,
        input_text: str | None = None,
        check: bool = True,
        hint: str | None = None,
    ) -> CompletedCommand:
        """Run ``argv`` confined, as `slipway.process.run` runs a command unconfined.

        The result and any error name ``argv``, not bubblewrap's command line.

        Raises:
            SandboxUnavailable: bubblewrap is missing or cannot confine here.
            CommandError: the command failed (``check``), or the sandbox could
                not start it; `CommandNotFound` and `CommandTimeout` as `run`.
        """
        args = tuple(str(a) for a in argv)
        check_sandbox()  # first: without it nothing runs, whatever the command
        command = self.command((_program(args[0], hint), *args[1:]), cwd=cwd, env=env)
        try:
            done = run(command, env={}, timeout=timeout, input_text=input_text, check=False)
        except CommandTimeout as e:
            raise CommandTimeout(
                args,
                returncode=None,
                stderr=e.stderr,
                stdout=e.stdout,
                message=f"`{' '.join(args[:3])}` did not finish within {timeout} s in its sandbox",
                hint=hint,
            ) from e
        _raise_if_not_started(args, done, hint)
        result = CompletedCommand(args, done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise CommandError(
                args, returncode=done.returncode, stderr=done.stderr, stdout=done.stdout, hint=hint
            )
        return result

    def applied(self) -> AbstractContextManager[None]:
        """A context in which every `slipway.process.run` of this thread runs in this sandbox."""
        return routed(self.run)

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The ``bwrap`` command line that runs ``argv`` in this sandbox.

        Raises:
            SandboxUnavailable: bubblewrap is missing or cannot confine here.
            InvalidRequest: ``argv`` is empty.
            CommandError: a path to mount does not exist.
        """
        if not argv:
            raise InvalidRequest("a sandboxed command needs a program")
        bwrap = check_sandbox()
        program = _program(argv[0])
        inner = [program, *argv[1:]]
        mounts: list[tuple[Path, str]] = [(p, "--ro-bind") for p in runtime_paths(program)]
        if self.forwards:
            relay = Path(os.path.realpath(sys.executable))
            mounts += [(p, "--ro-bind") for p in runtime_paths(str(relay))]
            mounts += [(f.socket, "--bind") for f in self.forwards]
            spec = json.dumps([[f.port, str(f.socket)] for f in self.forwards])
            inner = [str(relay), "-I", "-S", _FORWARDER_INSIDE, spec, "--", *inner]
        if self.niceness:
            shell = _program("sh", _NICE_HINT)
            inner = [shell, "-c", _YIELD_CORES, "yield-cores", str(self.niceness), *inner]
        mounts += [(Path(p), "--ro-bind") for p in self.read_only]
        mounts += [(Path(p), "--bind") for p in self.writable]
        missing = [str(path) for path, _ in mounts if not path.exists()]
        if missing:
            raise CommandError(
                tuple(argv),
                returncode=None,
                message=f"`{argv[0]}` cannot run: {', '.join(missing)} does not exist to mount "
                "into its sandbox",
                hint="create it before the sandboxed command runs",
            )
        line = [
            bwrap,
            *("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"),
            *("--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"),
            *("--hostname", "sandbox", "--clearenv"),
        ]
        for name, value in self._environment(program, env).items():
            line += ["--setenv", name, value]
        line += _system_mounts()
        line += _mounts(mounts)
        if self.forwards:
            line += ["--ro-bind", str(_FORWARDER), _FORWARDER_INSIDE]
        line += ["--remount-ro", "/", "--chdir", str(cwd or _HOME), "--", *inner]
        return line

    def _environment(self, program: str, env: Mapping[str, str] | None) -> dict[str, str]:
        """The clean base, the names the caller may hand in, then `env`."""
        base = {
            "PATH": f"{Path(program).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": _HOME,
            "TMPDIR": _HOME,
            "LANG": "C.UTF-8",
        }
        passed = re.compile(_PASSED.pattern + (f"|{self.passed_env}" if self.passed_env else ""))
        for name, value in (env or {}).items():
            if passed.fullmatch(name) and not _SECRET.search(name):
                base[name] = value
        return {**base, **self.env}


def _program(name: str, hint: str | None = None) -> str:
    """``name`` as an absolute path: the sandbox has no PATH of the host to search."""
    found = name if Path(name).is_absolute() else shutil.which(name)
    if found is None or not Path(found).exists():
        raise CommandNotFound(
            (name,), returncode=None, message=f"`{name}` is not installed", hint=hint
        )
    return found


def runtime_paths(program: str) -> tuple[Path, ...]:
    """What ``program`` needs mounted to start, besides ``/usr``.

    For a script, its interpreter's too (the ``#!`` line). A program inside
    a virtualenv needs the virtualenv and the Python installation it was
    made from (``home`` in ``pyvenv.cfg``); a Python elsewhere needs its
    installation prefix. Anything else needs only its own file.
    """
    found: list[Path] = []
    path = Path(program)
    for candidate in (path, *_interpreter(path)):
        venv = candidate.parent.parent
        if (venv / "pyvenv.cfg").is_file():
            found.append(venv)
            home = _venv_home(venv)
            if home is not None:
                found.append(home)
        real = Path(os.path.realpath(candidate))
        prefix = real.parent.parent
        if any(prefix.glob("lib/python3*")):
            found.append(prefix)
        elif real.exists():
            found.append(real)
    kept = [p for p in dict.fromkeys(found) if not _under_usr(p)]
    return tuple(kept)


def _interpreter(path: Path) -> list[Path]:
    """The interpreter a ``#!`` line names, if ``path`` is a script."""
    try:
        with path.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode(errors="replace").split()
    return [Path(words[0])] if words and Path(words[0]).is_absolute() else []


def _venv_home(venv: Path) -> Path | None:
    """The Python installation a virtualenv was made from: the parent of its ``home``."""
    for line in (venv / "pyvenv.cfg").read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return Path(value.strip()).parent
    return None


def _under_usr(path: Path) -> bool:
    return path == Path("/usr") or Path("/usr") in path.parents


def _system_mounts() -> list[str]:
    """``/usr`` read-only, the merged-usr links or directories, and the pseudo-filesystems."""
    line = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            line += ["--symlink", str(host.readlink()), f"/{name}"]
        elif host.is_dir():
            line += ["--ro-bind", str(host), f"/{name}"]
    return [*line, "--proc", "/proc", "--dev", "/dev", "--tmpfs", _HOME]


def _mounts(mounts: list[tuple[Path, str]]) -> list[str]:
    """Bind options, outer paths first so an inner mount is not hidden by its parent's."""
    line: list[str] = []
    seen: set[tuple[Path, str]] = set()
    for path, option in sorted(mounts, key=lambda m: (len(m[0].parts), str(m[0]))):
        if (path, option) in seen:
            continue
        seen.add((path, option))
        line += [option, str(path), str(path)]
    return line


def _raise_if_not_started(args: tuple[str, ...], done: CompletedCommand, hint: str | None) -> None:
    """Bubblewrap's own failures (exit 1, ``bwrap:`` on stderr) are not the command's."""
    if done.returncode != 1 or not done.stderr.startswith("bwrap: "):
        return
    reason = done.stderr.strip().splitlines()[0].removeprefix("bwrap: ")
    if reason.startswith("execvp"):
        raise CommandNotFound(
            args, returncode=None, message=f"`{args[0]}` cannot start in its sandbox", hint=hint
        )
    raise CommandError(
        args,
        returncode=None,
        message=f"the sandbox for `{' '.join(args[:3])}` could not start: {reason}",
        hint=BWRAP_HINT,
    )


@functools.cache
def _working_bwrap() -> str:
    """The path of bubblewrap, after it confined ``true`` once; cached only on success."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so untrusted builds and scans cannot be "
            "confined and will not run",
            hint=BWRAP_HINT,
        )
    trial = [
        bwrap,
        *("--unshare-all", "--unshare-user", "--die-with-parent", "--cap-drop", "ALL"),
        *_system_mounts(),
        *("--", "/usr/bin/true"),
    ]
    done = run(trial, env={}, timeout=30, check=False)
    if done.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox here: {done.stderr.strip()[:300]}",
            hint=BWRAP_HINT,
        )
    return bwrap


def check_sandbox() -> str:
    """The path of bubblewrap, once it has shown that it can confine a process here.

    Raises:
        SandboxUnavailable: it is missing or cannot create namespaces; says how to fix it.
    """
    return _working_bwrap()
