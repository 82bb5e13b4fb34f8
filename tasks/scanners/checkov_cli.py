"""checkov's own command line, minus the second and a half it spends exiting.

checkov imports some 2,700 modules, and a normal interpreter exit tears every
one of them down again: measured here, 1.5 s of a 5 s IaC scan. The scan only
needs checkov's report on stdout, so this entry runs checkov's CLI unchanged
(same arguments, same output) and then leaves with `os._exit` once the
streams are flushed. `IacScanner` runs it as ``python -m tasks.scanners.checkov_cli``.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["main"]


def main() -> None:
    """Run ``checkov`` with this process's arguments and exit with its code, skipping teardown."""
    try:
        from checkov.main import Checkov
    except ImportError as e:
        print(f"checkov is not installed in {sys.executable}: {e}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)
    with warnings.catch_warnings():
        # As checkov's own console script does: its regexes warn on Python 3.12.
        warnings.simplefilter("ignore", category=SyntaxWarning)
        code = Checkov(sys.argv[1:]).run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
