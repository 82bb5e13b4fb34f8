"""IaC checks with checkov on a service's Terraform (``infra/``), fully offline.

checkov is told to stay off the network three ways: ``--skip-download`` (no
policy metadata from Prisma Cloud), ``CKV_SKIP_PACKAGE_UPDATE_CHECK`` (no
version check against PyPI at start-up) and no API key in its environment (no
upload). External modules are not downloaded either, so a module call is
checked as written.

Like bandit, checkov is lenient where it matters: a directory that does not
exist is only a log line, and a file it cannot parse is only a count in the
summary; both exit 0. This adapter makes each an errored scan.

Offline, checkov gives no severities (they come from Prisma Cloud). The checks
that make data or hosts public get one here; the rest stay ``UNKNOWN``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from slipway.errors import CommandError, ScanError
from slipway.process import run
from tasks.scanners.base import Finding, Scanner, Severity
from tasks.scanners.toolenv import SETUP_HINT, ToolEnvironment

__all__ = ["SEVERITIES", "IacScanner", "parse_report"]

logger = logging.getLogger(__name__)

_SETTINGS = r"CKV_[A-Z_]+|CHECKOV_[A-Z_]+"
"""checkov's own settings in its environment, which change what it checks."""

SEVERITIES: dict[str, Severity] = {
    "CKV_AWS_20": Severity.HIGH,  # S3 ACL allows public READ
    "CKV_AWS_57": Severity.CRITICAL,  # S3 ACL allows public WRITE
    "CKV_AWS_70": Severity.HIGH,  # S3 bucket policy allows any principal
    "CKV_AWS_24": Severity.HIGH,  # security group: SSH open to 0.0.0.0/0
    "CKV_AWS_25": Severity.HIGH,  # security group: RDP open to 0.0.0.0/0
    "CKV_AWS_41": Severity.HIGH,  # AWS keys hard-coded in the provider
    "CKV_AWS_17": Severity.HIGH,  # RDS instance publicly accessible
    "CKV2_AWS_6": Severity.MEDIUM,  # S3 bucket without a public access block
}
"""checkov check id to severity, for the checks whose failure exposes something publicly."""

_ENV_DROPPED = ("BC_API_KEY", "PRISMA_API_URL", "BC_API_URL")

_RUNNER = Path(__file__).with_name("checkov_terraform.py")
"""checkov's Terraform runner alone; a script the scanners' interpreter runs by path."""


class IacScanner(Scanner):
    """Runs ``checkov --framework terraform --skip-download`` on one directory of a checkout.

    By default checkov runs through `tasks.scanners.checkov_terraform`, a
    script the scanners' interpreter runs by path, isolated (``-I``) from this
    environment and from the checkout: checkov's Terraform runner alone, which
    starts in half the time of its CLI.

    Args:
        directory: The Terraform directory, relative to the scanned checkout.
        executable: A checkov binary to run instead, with its CLI's arguments.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
    """

    name = "checkov"
    distribution = "checkov"
    expected_seconds = 2.0  # mostly importing checkov's Terraform checks

    def __init__(
        self,
        *,
        directory: str = "infra",
        executable: str | None = None,
        tools: ToolEnvironment | None = None,
    ) -> None:
        super().__init__(executable=executable, tools=tools)
        self.directory = directory

    def reads(self, relative: str) -> bool:
        """The files of the Terraform directory, which is all checkov is given."""
        return relative.startswith(f"{self.directory.strip('/')}/")

    def rules(self) -> tuple[str, ...]:
        """The directory, and the checkov settings passed in from the environment."""
        settings = sorted(f"{k}={v}" for k, v in _env().items() if re.fullmatch(_SETTINGS, k))
        severities = ",".join(f"{k}={v.value}" for k, v in sorted(SEVERITIES.items()))
        return (self.directory, severities, *settings)

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        target = (path / self.directory).resolve()
        if not target.is_dir():
            raise ScanError(
                f"checkov has nothing to scan: {self.directory}/ does not exist in the checkout.",
                hint=f"keep the service's Terraform in {self.directory}/, as the template does",
            )
        if not any(target.rglob("*.tf")):
            raise ScanError(
                f"checkov has nothing to scan: {self.directory}/ holds no .tf file.",
                hint=f"add the service's Terraform to {self.directory}/",
            )
        argv = (
            [
                self.executable,
                *("-d", str(target), "--framework", "terraform", "--skip-download"),
                # --soft-fail: exit 0 with failed checks, so any other exit code is a crash.
                *("-o", "json", "--compact", "--soft-fail"),
            ]
            if self.executable
            else [str(self._interpreter()), "-I", str(_RUNNER), str(target)]
        )
        try:
            done = run(argv, env=_env(), timeout=timeout, check=False, hint=SETUP_HINT)
        except CommandError as e:
            raise ScanError(f"checkov failed on {target}: {e}") from e
        if done.returncode != 0:
            missing = "checkov is not installed" in done.stderr
            raise ScanError(
                f"checkov exited with {done.returncode}: {done.stderr.strip()[-500:]}",
                hint=SETUP_HINT if missing else None,
            )
        return parse_report(done.stdout, directory=self.directory)

    def _interpreter(self) -> Path:
        """The scanners' interpreter, once checkov's console script shows it is installed there."""
        tools = self.tools or ToolEnvironment.default()
        tools.executable("checkov")
        return tools.python


def parse_report(text: str, *, directory: str) -> tuple[Finding, ...]:
    """Turn checkov's JSON report into findings with paths relative to the checkout.

    Args:
        text: checkov's ``-o json`` output: one report, or a list of them.
        directory: The scanned directory, relative to the checkout (``infra``).

    Raises:
        ScanError: The output is not checkov's JSON, or a file could not be parsed.
    """
    try:
        decoded = json.loads(text)
        reports: list[dict[str, Any]] = decoded if isinstance(decoded, list) else [decoded]
        sections = [report["results"] for report in reports]
    except (ValueError, KeyError, TypeError) as e:
        # A bare summary without results: checkov checked nothing at all.
        raise ScanError(
            f"checkov checked nothing in {directory}/: no resource in a file it could read "
            f"({type(e).__name__}: {e}; output: {text.strip()[:300]})",
            hint=f"keep the service's Terraform resources in {directory}/",
        ) from e
    unparsed = [str(p) for section in sections for p in section.get("parsing_errors", [])]
    if unparsed:
        raise ScanError(
            f"checkov could not parse {', '.join(unparsed)}",
            hint="fix the Terraform syntax (`terraform validate`); an unparsed file was not checked",
        )
    return tuple(
        _finding(check, directory)
        for section in sections
        for check in section.get("failed_checks", [])
    )


def _finding(check: dict[str, Any], directory: str) -> Finding:
    check_id = str(check.get("check_id", "?"))
    lines = check.get("file_line_range") or []
    resource = check.get("resource")
    message = str(check.get("check_name", "")).strip()
    severity = Severity.parse(check.get("severity"))
    return Finding(
        tool="checkov",
        rule_id=check_id,
        severity=severity
        if severity is not Severity.UNKNOWN
        else SEVERITIES.get(check_id, Severity.UNKNOWN),
        file=f"{directory}/{str(check.get('file_path', '')).lstrip('/')}",
        line=lines[0] if lines and isinstance(lines[0], int) else None,
        message=f"{message} ({resource})" if resource else message,
        help_uri=str(check["guideline"]) if check.get("guideline") else None,
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
    env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"
    # One process: the scan already runs beside the other tools and services, and
    # checkov's own forking only makes them fight over the same cores.
    env["CHECKOV_PARALLELIZATION_TYPE"] = "none"
    return env
