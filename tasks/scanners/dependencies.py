"""Dependency audit with pip-audit against OSV, online or through the local mirror.

pip-audit runs with ``--no-deps --disable-pip``: it reads the pins as written
and never resolves or downloads anything, so it works air-gapped as long as
``--osv-url`` points at a reachable OSV API (see `tasks.osv_mirror`). That
needs every requirement pinned with ``==``; pip-audit refuses the file
otherwise, and the scan is errored with its message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from blocks.vulnerability_source import OSV_API
from slipway.errors import CommandError, ScanError
from slipway.process import run
from tasks.scanners.base import Finding, Scanner, Severity
from tasks.scanners.inputs import file_digest
from tasks.scanners.toolenv import SETUP_HINT, ToolEnvironment

__all__ = ["DependencyScanner", "first_fix", "parse_report"]

logger = logging.getLogger(__name__)


class DependencyScanner(Scanner):
    """Audits a service's pinned requirements for known vulnerabilities.

    Args:
        osv_url: The OSV ``/v1/query`` endpoint, e.g. a mirror's ``query_url``.
        requirements: The requirements file, relative to the scanned directory
            unless absolute.
        ignore_vulns: Advisory ids accepted as risks; pip-audit drops them
            (an alias such as a CVE id works too).
        executable: A pip-audit binary to run instead of the scanners' environment's.
        cache_dir: pip-audit's HTTP cache; its default lives in the user's home.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
        advisories: The revision of the vulnerability data the OSV endpoint
            answers from (`tasks.scanners.vulnerability_data.data_revision`);
            without one the result cannot be reused, as the data may change.
    """

    name = "pip-audit"
    distribution = "pip-audit"

    def __init__(
        self,
        osv_url: str = OSV_API,
        *,
        requirements: str | Path = "requirements.txt",
        ignore_vulns: Sequence[str] = (),
        executable: str | None = None,
        cache_dir: Path | None = None,
        tools: ToolEnvironment | None = None,
        advisories: str | None = None,
    ) -> None:
        self.osv_url = osv_url
        self.advisories = advisories
        self.requirements = Path(requirements)
        self.ignore_vulns = tuple(ignore_vulns)
        super().__init__(executable=executable, tools=tools)
        self.cache_dir = cache_dir

    def input_key(self, files: Mapping[str, bytes]) -> str | None:
        """The requirements file and the advisories; None when the data's revision is unknown."""
        return None if self.advisories is None else super().input_key(files)

    def reads(self, relative: str) -> bool:
        """Only the requirements file: ``--no-deps --disable-pip`` reads nothing else."""
        return relative == self.requirements.as_posix()

    def rules(self) -> tuple[str, ...]:
        """The data's revision and the ignored ids; a file outside the checkout counts by content."""
        outside = ""
        if self.requirements.is_absolute():  # a platform file, not the checkout's
            outside = file_digest(self.requirements)
        return (str(self.advisories), ",".join(sorted(self.ignore_vulns)), outside)

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        root = path.resolve()
        file = root / self.requirements
        if not file.is_file():
            # A service without a requirements file is reported, never passed as clean.
            raise ScanError(
                f"pip-audit has no requirements file to audit: {file} does not exist.",
                hint="add a requirements.txt with pinned versions, or set the file to audit",
            )
        done = self._pip_audit(file, timeout=timeout)
        shown = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        return parse_report(done, requirements=shown)

    def _pip_audit(self, file: Path, *, timeout: float) -> str:
        argv = [
            self._tool("pip-audit"),
            *("-r", str(file), "-s", "osv", "--osv-url", self.osv_url, "-f", "json"),
            *("--no-deps", "--disable-pip", "--progress-spinner", "off"),
            # pip-audit's socket timeout: one slow lookup must not use the whole budget.
            *("--timeout", str(max(1, min(int(timeout), 15)))),
        ]
        for vuln_id in self.ignore_vulns:
            argv += ["--ignore-vuln", vuln_id]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        try:
            # pip-audit exits 1 both when it finds vulnerabilities and when it
            # fails; only its JSON on stdout tells the two apart.
            done = run(argv, env=_env(), timeout=timeout, check=False, hint=SETUP_HINT)
        except CommandError as e:
            raise ScanError(f"pip-audit failed on {file}: {e}") from e
        if not done.stdout.strip():
            raise ScanError(
                f"pip-audit gave no report for {file} (exit {done.returncode}): "
                f"{_cause(done.stderr)}",
                hint="check that every requirement is pinned with == and the OSV URL is reachable",
            )
        return done.stdout


def parse_report(text: str, *, requirements: str) -> tuple[Finding, ...]:
    """Turn pip-audit's JSON report into one finding per vulnerable pin.

    Args:
        text: pip-audit's ``-f json`` output.
        requirements: The audited file as findings should name it.

    Raises:
        ScanError: The report is not pip-audit's JSON, or a dependency was skipped.
    """
    try:
        dependencies: list[dict[str, Any]] = json.loads(text)["dependencies"]
    except (ValueError, KeyError, TypeError) as e:
        raise ScanError(f"pip-audit printed a report that is not its JSON format: {e}") from e
    findings: list[Finding] = []
    for dep in dependencies:
        if "skip_reason" in dep:
            # An unaudited pin is not a safe pin.
            raise ScanError(f"pip-audit skipped {dep.get('name')}: {dep['skip_reason']}")
        for vuln in dep.get("vulns", []):
            findings.append(_finding(dep, vuln, requirements))
    return tuple(findings)


def _finding(dep: dict[str, Any], vuln: dict[str, Any], requirements: str) -> Finding:
    name, version = str(dep.get("name")), str(dep.get("version"))
    # pip-audit keeps aliases in a set: sort them, or the message (and with it the
    # fingerprint) would change from run to run and fake a new and a fixed finding.
    known = tuple(sorted(str(a) for a in vuln.get("aliases", [])))
    aliases = ", ".join(known)
    return Finding(
        tool="pip-audit",
        rule_id=str(vuln["id"]),
        severity=Severity.UNKNOWN,  # pip-audit's JSON carries no severity
        file=requirements,
        line=None,
        message=f"{name} {version} is affected by {vuln['id']}"
        + (f" ({aliases})" if aliases else ""),
        fix_version=first_fix(version, vuln.get("fix_versions", [])),
        aliases=known,
        help_uri=f"https://osv.dev/vulnerability/{vuln['id']}",
    )


def first_fix(installed: str, fixes: list[str]) -> str | None:
    """The lowest fixed version above the installed one, e.g. 1.26.17 rather than 2.0.6.

    An advisory with several intervals lists one fix per line of releases;
    the nearest is the cheapest upgrade.
    """
    try:
        current = Version(installed)
        newer = sorted(Version(f) for f in fixes)
    except InvalidVersion:
        return fixes[0] if fixes else None
    above = [v for v in newer if v > current]
    return str(above[0]) if above else (str(newer[0]) if newer else None)


def _env() -> dict[str, str]:
    """Slipway's environment, with loopback exempt from proxies so a local mirror is reached."""
    env = dict(os.environ)
    for key in ("NO_PROXY", "no_proxy"):
        kept = [h for h in env.get(key, "").split(",") if h]
        env[key] = ",".join([*kept, "127.0.0.1", "localhost"])
    return env


def _cause(stderr: str) -> str:
    """pip-audit's ERROR lines, or the last line of a traceback, whichever says why."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.split(":", 2)[-1] for line in lines if line.startswith("ERROR:")]
    return "; ".join(errors) or (lines[-1] if lines else "no output")[-500:]
