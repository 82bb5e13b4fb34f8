"""checkov's Terraform runner on one directory, without the rest of checkov's CLI.

Most of a checkov scan is start-up. Its CLI (``checkov.main``) imports every
framework it knows, Ansible, GitHub Actions, SAST and SBOM among them, before
it looks at a file: some 2,700 modules and 1.0 s here, where only Terraform is
scanned. This entry imports the Terraform runner alone and prints the same
JSON report the CLI prints for ``--framework terraform -o json`` (same checks,
same results, compared on the fixtures; a run without any result prints the
bare summary, as the CLI does). Then it leaves with `os._exit`: tearing the
imported modules down again took another 1.5 s.

Unlike the CLI, it reads no ``.checkov.yaml`` from the checkout and no
``CKV_*`` check selection from the environment: a service cannot silence
its own checks. Accepting a finding is the accepted-risk list's job, with a
reason and an expiry.

It never reaches the network: no module download, no policy metadata from
Prisma Cloud, and the version check is off (``CKV_SKIP_PACKAGE_UPDATE_CHECK``
from `IacScanner`).

checkov lives in the scanners' own environment (`tasks.scanners.toolenv`),
so `IacScanner` runs this file by path with that environment's interpreter,
isolated: ``.venv/scanners/bin/python -I .../checkov_terraform.py DIRECTORY``.
It therefore imports nothing of Slipway's, only the standard library and
checkov, and ``-I`` keeps this directory (whose ``secrets.py`` would shadow
the standard library's) and the checkout off ``sys.path``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Scan the one directory in ``argv``, print checkov's JSON report and return the exit code."""
    if len(argv) != 1:
        print("usage: python -I checkov_terraform.py DIRECTORY", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        # As checkov's own console script does: its regexes warn on Python 3.12.
        warnings.simplefilter("ignore", category=SyntaxWarning)
        try:
            from checkov.common.output.report import Report
            from checkov.common.util.json_utils import CustomJSONEncoder
            from checkov.runner_filter import RunnerFilter
            from checkov.terraform.runner import Runner
        except ImportError as e:
            print(f"checkov is not installed in {sys.executable}: {e}", file=sys.stderr)
            return 2
        report = Runner().run(
            root_folder=argv[0],
            runner_filter=RunnerFilter(framework=["terraform"], download_external_modules=False),
        )
    # As the CLI prints them: empty reports left out, then one report as itself,
    # several as a list, none as a bare summary (which `parse_report` refuses).
    reports = report if isinstance(report, list) else [report]
    dicts = [r.get_dict(is_quiet=False) for r in reports if not r.is_empty()]
    output = dicts[0] if len(dicts) == 1 else dicts or Report("").get_summary()
    # checkov's encoder: a resource in a nested module carries objects plain JSON refuses.
    print(json.dumps(output, cls=CustomJSONEncoder))
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
