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
from pathlib import Path
from typing import Any

from slipway.errors import CommandError, ScanError
from slipway.process import run
from tasks.scanners.base import Finding, Scanner, Severity
from tasks.scanners.toolenv import SETUP_HINT

__all__ = ["PLUGINS", "SecretsScanner", "parse_report"]

logger = logging.getLogger(__name__)

_EXCLUDED_FILES = r"(^|/)\.git/"
"""A checkout's own git database holds packed history, not the commit's files."""

_GENERIC = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector"})
"""Heuristic plugins: a hit is likely but not certainly a secret, so it is MEDIUM."""

PLUGINS: dict[str, str] = {
    "AWS Access Key": "AWSKeyDetector",
    "Artifactory Credentials": "ArtifactoryDetector",
    "Azure Storage Account access key": "AzureStorageKeyDetector",
    "Base64 High Entropy String": "Base64HighEntropyString",
    "Basic Auth Credentials": "BasicAuthDetector",
    "Cloudant Credentials": "CloudantDetector",
    "Discord Bot Token": "DiscordBotTokenDetector",
    "GitHub Token": "GitHubTokenDetector",
    "Hex High Entropy String": "HexHighEntropyString",
    "IBM COS HMAC Credentials": "IbmCosHmacDetector",
    "IBM Cloud IAM Key": "IbmCloudIamDetector",
    "JSON Web Token": "JwtTokenDetector",
    "Mailchimp Access Key": "MailchimpDetector",
    "NPM tokens": "NpmDetector",
    "Private Key": "PrivateKeyDetector",
    "Secret Keyword": "KeywordDetector",
    "SendGrid API Key": "SendGridDetector",
    "Slack Token": "SlackDetector",
    "SoftLayer Credentials": "SoftlayerDetector",
    "Square OAuth Secret": "SquareOAuthDetector",
    "Stripe Access Key": "StripeDetector",
    "Twilio API Key": "TwilioKeyDetector",
}
"""Secret type, as the report names it, to the plugin class that found it: the rule id.

detect-secrets lives in the scanners' environment and is never imported here,
so its mapping is written down for the pinned version (scanners.lock); a test
compares it with the installed tool's, so an upgrade that adds a plugin fails
it. A type missing here is its own rule id.
"""


class SecretsScanner(Scanner):
    """Runs ``detect-secrets scan --all-files --no-verify`` over a checkout.

    Args:
        executable: A detect-secrets binary to run instead of the scanners' environment's.
        tools: The scanners' environment; `ToolEnvironment.default` when None.
    """

    name = "detect-secrets"
    distribution = "bc-detect-secrets"

    def _run(self, path: Path, *, timeout: float) -> tuple[Finding, ...]:
        root = path.resolve()
        if not root.is_dir():
            raise ScanError(f"detect-secrets cannot scan {root}: it is not a directory.")
        # Run inside the checkout on ".": given an absolute path, detect-secrets
        # filters every file out and reports nothing, which would look clean.
        argv = [
            self._tool("detect-secrets"),
            *("scan", "--all-files", "--no-verify", "--exclude-files", _EXCLUDED_FILES, "."),
        ]
        try:
            done = run(argv, cwd=root, timeout=timeout, hint=SETUP_HINT)
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
    rule = PLUGINS.get(secret_type, secret_type)
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
