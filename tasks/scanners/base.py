"""The one small interface every security scanner sits behind.

A scanner turns its tool's output into typed `Finding`s inside a `ScanResult`.
The contract that matters most: a tool that crashes, times out or prints
something unreadable gives a result with status ``errored``, never ``clean``;
a silent failure must not look like a safe commit.

Adapters raise `ScanError` from their parsing code and let `Scanner.scan`
turn it into the errored result, so each adapter only writes the happy path.

A scanner reads an untrusted checkout, so `Scanner.scan` confines every
command its adapter runs, in this one place: `scan_sandbox` mounts the
checkout and the tools' own runtime read-only, and gives no network and no
platform variable; an adapter needs no code of its own for it. What one
tool must reach beyond that (pip-audit: the OSV socket, its cache) is its
`Scanner.reach`.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import slipway
import tasks
from slipway.errors import MissingDependency, ScanError
from slipway.sandbox import Forward, Sandbox
from tasks.scanners.inputs import input_key, tree_digest
from tasks.scanners.toolenv import ToolEnvironment

__all__ = [
    "SCAN_NICENESS",
    "Finding",
    "Reach",
    "ScanResult",
    "ScanStatus",
    "Scanner",
    "Severity",
    "UnavailableScanner",
    "scan_sandbox",
]

logger = logging.getLogger(__name__)


class Severity(enum.Enum):
    """How bad a finding is, on one scale shared by every tool."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: object) -> Severity:
        """Map a tool's severity word (``"HIGH"``, ``"moderate"``...) onto the scale.

        Anything unrecognised is ``UNKNOWN`` rather than an error, because a
        tool adding a new word must not make the whole scan fail.
        """
        text = str(raw or "").strip().lower()
        if text == "moderate":
            return cls.MEDIUM
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN

    @property
    def rank(self) -> int:
        """Sort key, worst first when sorted in reverse: critical 4 ... low 1, unknown 0."""
        return _RANKS[self]


_RANKS = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.UNKNOWN: 0,
}


class ScanStatus(enum.Enum):
    """What a scanner run amounted to."""

    CLEAN = "clean"
    FINDINGS = "findings"
    ERRORED = "errored"


_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Finding:
    """One problem one tool reported."""

    tool: str
    """The scanner's name, e.g. ``bandit`` or ``pip-audit``."""
    rule_id: str
    """The tool's rule or advisory id, e.g. ``B602`` or ``PYSEC-2018-28``."""
    severity: Severity
    """How bad it is; ``UNKNOWN`` when the tool does not say."""
    file: str
    """The file, relative to the scanned directory, with ``/`` separators."""
    line: int | None
    """The 1-based line, or ``None`` for findings about a whole file."""
    message: str
    """The tool's one-line explanation."""
    fix_version: str | None = None
    """For a dependency, the first version without the vulnerability."""
    aliases: tuple[str, ...] = ()
    """Other ids of the same problem, e.g. the CVE and GHSA ids of an advisory."""
    help_uri: str | None = None
    """Where the tool documents the rule, when it says."""

    @property
    def fingerprint(self) -> str:
        """A stable id for comparing scans of two commits.

        Line numbers and numbers inside the message are left out, so adding
        a line above a finding does not make it look fixed and new again.
        """
        message = _SPACE.sub(" ", _DIGITS.sub("#", self.message)).strip().lower()
        key = "\x1f".join((self.tool, self.rule_id, self.file, message))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    @property
    def ids(self) -> frozenset[str]:
        """The rule id and every alias: what an accepted risk or a catalog may name."""
        return frozenset((self.rule_id, *self.aliases))


@dataclass(frozen=True)
class ScanResult:
    """Everything one scanner run produced."""

    tool: str
    """The scanner's name."""
    status: ScanStatus
    """``clean``, ``findings`` or ``errored``."""
    findings: tuple[Finding, ...] = ()
    """What was found; empty when clean or errored."""
    error: str | None = None
    """Why the scan errored, in one message; ``None`` otherwise."""
    duration_seconds: float = 0.0
    """Wall time of the run, for the benchmark and the summary."""
    version: str | None = None
    """The tool's version, as installed in the scanners' environment; None when unknown."""
    carried_from: str | None = None
    """The commit whose scan this result was taken from, its inputs being the same; None when run."""


@dataclass(frozen=True)
class Reach:
    """What a scanner's tool may reach besides the checkout and its own runtime."""

    writable: tuple[Path, ...] = ()
    """Directories it may write, e.g. pip-audit's cache; each must exist."""
    forwards: tuple[Forward, ...] = ()
    """Host sockets it may reach through its private loopback, e.g. the OSV mirror."""


_TOOL_SETTINGS = r"CKV_[A-Z_]+|CHECKOV_[A-Z_]+|NO_PROXY|no_proxy"
"""The tools' own settings an adapter may hand in (checkov's); never a credential."""


SCAN_NICENESS = 10
"""How far below the platform's CPU priority scanners run.

Every push starts a scan beside its build-test-deploy run. On a small host
both want the same cores, and the build is what the pusher waits for; the
scan still gets every cycle the build leaves idle.
"""


def scan_sandbox(path: Path, reach: Reach | None = None) -> Sandbox:
    """The sandbox every command of a scan of ``path`` runs in.

    It mounts the checkout and Slipway's own code (checkov's runner is a
    module of it) read-only, besides each tool's runtime, which the sandbox
    finds from the command itself (the scanners' virtualenv and its Python).
    """
    reach = reach or Reach()
    code = tuple(Path(package.__file__ or "").parent for package in (slipway, tasks))
    return Sandbox(
        read_only=(path.resolve(), *code),
        writable=reach.writable,
        forwards=reach.forwards,
        passed_env=_TOOL_SETTINGS,
        niceness=SCAN_NICENESS,
    )


class Scanner(ABC):
    """A security tool behind one method.

    Subclasses implement `_run`, which raises `ScanError` on any failure;
    `scan` runs it confined (`scan_sandbox`), turns a `ScanError` or a
    missing tool or sandbox into an ``errored`` result and measures the time.
    The tool runs from the scanners' environment (`tasks.scanners.toolenv`)
    unless `executable` names another.

    Args:
        executable: A binary to run instead of the scanners' environment's own.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
    """

    name: str
    """The tool's name as it appears in findings and reports."""
    expected_seconds: float = 1.0
    """Rough time of one scan on one core; the runner starts the slowest tools first."""
    reach: Reach = Reach()
    """What the tool reaches besides the checkout; the runner sets it where one needs more."""
    distribution: str | None = None
    """The tool's package in the scanners' environment, whose version reports record."""
    executable: str | None = None
    """A binary to run instead of the scanners' environment's own; its version is unknown."""
    tools: ToolEnvironment | None = None
    """The scanners' environment the tool runs from; `ToolEnvironment.default` when None."""

    def __init__(
        self, *, executable: str | None = None, tools: ToolEnvironment | None = None
    ) -> None:
        self.executable = executable
        self.tools = tools

    def _tool(self, script: str) -> str:
        """The binary to run: `executable` when given, else ``script`` from `tools`.

        Raises:
            MissingDependency: the scanners' environment or the tool is missing.
        """
        if self.executable:
            return self.executable
        return (self.tools or ToolEnvironment.default()).executable(script)

    @property
    def version(self) -> str | None:
        """The version of the tool that runs, from the scanners' environment."""
        if self.executable or self.distribution is None:
            return None
        return (self.tools or ToolEnvironment.default()).version(self.distribution)

    def input_key(self, files: Mapping[str, bytes]) -> str | None:
        """What this tool's result depends on (`tasks.scanners.inputs`); None when it cannot say.

        Args:
            files: The checkout's `tasks.scanners.inputs.inventory`. The tool
                reads every file by default; one that reads fewer says which in
                `reads`, and one with settings of its own adds them in `rules`.
        """
        return input_key(self.name, self.version, tree_digest(files, self.reads), *self.rules())

    def reads(self, relative: str) -> bool:
        """Whether the tool reads the checkout's file at ``relative``: every file by default."""
        return True

    def rules(self) -> tuple[str, ...]:
        """The adapter's settings that change what the tool reports; none by default."""
        return ()

    def scan(self, path: Path, *, timeout: float) -> ScanResult:
        """Scan ``path`` and return a result; this never raises `ScanError`.

        Args:
            path: The directory (or file, for some tools) to scan.
            timeout: Seconds before the tool is killed and the scan errored.
        """
        started = time.monotonic()
        version = self.version
        try:
            with scan_sandbox(path, self.reach).applied():
                findings = self._run(path, timeout=timeout)
        except (ScanError, MissingDependency) as e:
            logger.warning("%s scan of %s errored: %s", self.name, path, e)
            return ScanResult(
                self.name, ScanStatus.ERRORED, (), str(e), time.monotonic() - started, version
            )
        status = ScanStatus.FINDINGS if findings else ScanStatus.CLEAN
        return ScanResult(self.name, status, findings, None, time.monotonic() - started, version)

    @abstractmethod
    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        """Run the tool and parse its output; raise `ScanError` on any failure."""


class UnavailableScanner(Scanner):
    """Stands in for a scanner that could not be set up, so its tool shows as errored.

    A missing vulnerability mirror, say, must not drop the dependency scan
    from the report: it appears as ``errored`` with the reason and the fix.

    Args:
        name: The tool that could not run.
        error: Why, with what to do about it.
    """

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self.error = error

    def input_key(self, files: Mapping[str, bytes]) -> str | None:  # noqa: D102  # it never ran: run it again
        return None

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        raise ScanError(self.error)
