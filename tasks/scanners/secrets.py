"""Committed credentials with detect-secrets (Bridgecrew's maintained fork, bc-detect-secrets).

Yelp's detect-secrets has had no release since 2024; ``bc-detect-secrets`` is
the fork that checkov itself uses, with the same CLI and plugins. It runs with
``--no-verify``: by default some plugins confirm a secret by calling the
provider's API, and a scan must never send a found credential anywhere.

The report carries a hash of each secret, never its value, so findings,
logs and artifacts stay free of the secrets they are about.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from slipway.errors import CommandError, ScanError
from slipway.process import installed_tool, run
from tasks.scanners.base import Finding, Scanner, Severity

__all__ = ["SecretsScanner", "parse_report"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install Slipway with its dependencies: pip install bc-detect-secrets"
_EXCLUDED_FILES = r"(^|/)\.git/"
"""A checkout's own git database holds packed history, not the commit's files."""

_GENERIC = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector"})
"""Heuristic plugins: a hit is likely but not certainly a secret, so it is MEDIUM."""


class SecretsScanner(Scanner):
    """Runs ``detect-secrets scan --all-files --no-verify`` over a checkout.

    Args:
        executable: The detect-secrets binary; found with `installed_tool` by default.
    """

    name = "detect-secrets"

    def __init__(self, *, executable: str | None = None) -> None:
        self.executable = executable or installed_tool("detect-secrets")

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        root = path.resolve()
        if not root.is_dir():
            raise ScanError(f"detect-secrets cannot scan {root}: it is not a directory.")
        # Run inside the checkout on ".": given an absolute path, detect-secrets
        # filters every file out and reports nothing, which would look clean.
        argv = [
            self.executable,
            *("scan", "--all-files", "--no-verify", "--exclude-files", _EXCLUDED_FILES, "."),
        ]
        try:
            done = run(argv, cwd=root, timeout=timeout, hint=_INSTALL_HINT)
        except CommandError as e:
            raise ScanError(f"detect-secrets failed on {root}: {e}") from e
        return parse_report(done.stdout)


def parse_report(text: str) -> tuple[Finding, ...]:
    """Turn detect-secrets' JSON baseline into one finding per secret and plugin.

    Raises:
        ScanError: The output is not detect-secrets' JSON.
    """
    try:
        results: dict[str, list[dict[str, Any]]] = json.loads(text)["results"]
        items = [item for found in results.values() for item in found]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ScanError(f"detect-secrets printed a report that is not its JSON format: {e}") from e
    return tuple(_finding(item) for item in items)


def _finding(item: dict[str, Any]) -> Finding:
    secret_type = str(item.get("type", "secret"))
    rule = _plugin_names().get(secret_type, secret_type)
    line = item.get("line_number")
    return Finding(
        tool="detect-secrets",
        rule_id=rule,
        severity=Severity.MEDIUM if rule in _GENERIC else Severity.HIGH,
        file=Path(str(item.get("filename", ""))).as_posix().removeprefix("./"),
        line=line if isinstance(line, int) else None,
        # The hash tells two secrets apart without showing either.
        message=f"{secret_type} committed (secret sha1 {str(item.get('hashed_secret', '?'))[:12]})",
    )


@cache
def _plugin_names() -> dict[str, str]:
    """Secret type ("AWS Access Key") to plugin class name ("AWSKeyDetector"), the rule id."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError as e:  # the CLI may live elsewhere; the type then serves as the id
        logger.warning("detect-secrets is not importable (%s); using secret types as rule ids", e)
        return {}
    return {kind: cls.__name__ for kind, cls in get_mapping_from_secret_type_to_class().items()}
