"""SAST with bandit: Python source in, typed findings out.

bandit is lenient in ways that would hide problems: a file it cannot parse
and a target that does not exist both show up only in the report's
``errors`` list, and the exit code is still 0. This adapter treats both as
an errored scan, so a broken checkout is never reported clean.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from slipway.errors import CommandError, ScanError
from slipway.process import run
from tasks.scanners.base import Finding, Scanner, Severity
from tasks.scanners.toolenv import SETUP_HINT

__all__ = ["BanditScanner"]

logger = logging.getLogger(__name__)

_QUOTES_SECRET = frozenset({"B105", "B106", "B107"})  # hardcoded_password_* rules
_QUOTED = re.compile(r"'[^']*'\s*$")


class BanditScanner(Scanner):
    """Runs ``bandit -f json -r`` over a directory.

    Args:
        executable: A bandit binary to run instead of the scanners' environment's.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
    """

    name = "bandit"
    distribution = "bandit"

    def reads(self, relative: str) -> bool:
        """Python files, and a ``.bandit`` file, which bandit reads for its settings."""
        return relative.endswith((".py", ".pyw")) or relative.rsplit("/", 1)[-1] == ".bandit"

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        root = path.resolve()
        if not root.exists():
            # bandit would exit 0 here; say plainly what is missing instead.
            raise ScanError(f"bandit cannot scan {root}: it does not exist.")
        argv = [self._tool("bandit"), "-f", "json", "-q", "-r", str(root)]
        try:
            # bandit exits 1 when it finds issues, which is a success for us.
            done = run(argv, timeout=timeout, check=False, hint=SETUP_HINT)
        except CommandError as e:
            raise ScanError(f"bandit failed on {root}: {e}") from e
        if done.returncode not in (0, 1):
            raise ScanError(
                f"bandit exited with {done.returncode} on {root}: {done.stderr.strip()[-500:]}"
            )
        return parse_report(done.stdout, root=root)


def parse_report(text: str, *, root: Path) -> tuple[Finding, ...]:
    """Turn bandit's JSON report into findings with paths relative to ``root``.

    Raises:
        ScanError: The report is not JSON, or bandit listed files it could not scan.
    """
    try:
        report = json.loads(text)
        errors: list[dict[str, Any]] = report.get("errors", [])
        results: list[dict[str, Any]] = report["results"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ScanError(f"bandit printed a report that is not its JSON format: {e}") from e
    if errors:
        detail = "; ".join(
            f"{_relative(str(err.get('filename', '?')), root)}: {err.get('reason', '?')}"
            for err in errors
        )
        raise ScanError(
            f"bandit could not scan every file: {detail}",
            hint="fix the syntax errors or the path; an unparsed file was not checked",
        )
    return tuple(_finding(item, root) for item in results)


def _finding(item: dict[str, Any], root: Path) -> Finding:
    line = item.get("line_number")
    return Finding(
        tool="bandit",
        rule_id=str(item.get("test_id", "?")),
        severity=Severity.parse(item.get("issue_severity")),
        file=_relative(str(item.get("filename", "")), root),
        line=line if isinstance(line, int) else None,
        message=_redacted(str(item.get("test_id", "")), str(item.get("issue_text", "")).strip()),
        help_uri=str(item["more_info"]) if item.get("more_info") else None,
    )


def _redacted(rule_id: str, message: str) -> str:
    """Bandit quotes a hard-coded password in its message; reports must not repeat it."""
    if rule_id in _QUOTES_SECRET:
        return _QUOTED.sub("'***'", message)
    return message


def _relative(filename: str, root: Path) -> str:
    """``filename`` relative to the scanned directory, as bandit may print it absolute."""
    base = root if root.is_dir() else root.parent
    try:
        return Path(filename).resolve().relative_to(base).as_posix()
    except ValueError:
        return Path(filename).as_posix()
