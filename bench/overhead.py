"""What isolating untrusted code costs: push-to-healthy and docs publish, before and after.

Runs ``bench/delivery.py`` and ``bench/docs.py`` twice in one session: from a
checkout of the baseline commit (before the sandbox, the confined containers
and the network-less builds with their wheelhouse) and from this checkout,
each with its own code first on ``PYTHONPATH`` and the same interpreter and
packages. The delivery benches run baseline first, the docs benches this
checkout first, so neither side always runs on a warmer machine. It prints
each bench's figures and, per figure, the ratio this checkout / baseline.

Make the baseline checkout with ``git worktree add --detach DIR <commit>``.
Needs what both benches need (the Docker engine, the base image, the
registry); hold the machine's Docker lock while it runs:

    flock /tmp/slipway-docker.lock python bench/overhead.py --baseline DIR [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DELIVERY_ROWS = (
    "build-test-deploy, first build",
    "build-test-deploy, docs-only commit",
    "build-test-deploy, no-change rebuild",
    "plain script, first build",
)
DOCS_ROWS = ("first publish", "no-change rerun", "one page changed")


def run_bench(repo: Path, script: str, *args: str) -> str:
    """One bench from ``repo``, its code first on the path; its output, echoed as it ran."""
    env = os.environ | {"PYTHONPATH": str(repo)}
    print(f"\n== {script} from {repo}", flush=True)
    done = subprocess.run(
        [sys.executable, str(repo / "bench" / script), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout, end="", flush=True)
    if done.returncode not in (0, 1):  # 1: a bench's own target missed, still figures
        raise SystemExit(f"{script} from {repo} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def delivery_figures(output: str) -> dict[str, tuple[float, float]]:
    """Each row's median seconds to healthy and to return."""
    found = {}
    for row in DELIVERY_ROWS:
        match = re.search(rf"^\s+{re.escape(row)}\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
        if match is None:
            raise SystemExit(f"bench/delivery.py printed no row {row!r}")
        found[row] = (float(match[1]), float(match[2]))
    return found


def docs_figures(output: str) -> dict[str, float]:
    """Each publish's seconds."""
    found = {}
    for row in DOCS_ROWS:
        match = re.search(rf"^{re.escape(row)}\s+([\d.]+) s", output, re.MULTILINE)
        if match is None:
            raise SystemExit(f"bench/docs.py printed no row {row!r}")
        found[row] = float(match[1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the baseline")
    parser.add_argument("--runs", type=int, default=3, help="rounds of bench/delivery.py")
    parser.add_argument("--pages", type=int, default=200, help="pages of bench/docs.py's site")
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    if not (baseline / "bench" / "delivery.py").is_file():
        raise SystemExit(f"{baseline} is not a Slipway checkout")
    runs, pages = ("--runs", str(args.runs)), ("--pages", str(args.pages))
    before_delivery = delivery_figures(run_bench(baseline, "delivery.py", *runs))
    after_delivery = delivery_figures(run_bench(REPO, "delivery.py", *runs))
    after_docs = docs_figures(run_bench(REPO, "docs.py", *pages))
    before_docs = docs_figures(run_bench(baseline, "docs.py", *pages))

    print(f"\nisolation overhead: this checkout / baseline ({baseline.name}), same session")
    print(f"  {'push-to-healthy (median s)':<52} {'before':>8} {'after':>8} {'ratio':>7}")
    for row in DELIVERY_ROWS:
        (before, before_end), (after, after_end) = before_delivery[row], after_delivery[row]
        print(f"  {row + ', to healthy':<52} {before:8.2f} {after:8.2f} {after / before:6.2f}x")
        label = row + ", returned"
        print(f"  {label:<52} {before_end:8.2f} {after_end:8.2f} {after_end / before_end:6.2f}x")
    print(f"  docs publish, {args.pages} pages (s)")
    for row in DOCS_ROWS:
        before, after = before_docs[row], after_docs[row]
        print(f"  {row:<52} {before:8.2f} {after:8.2f} {after / before:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
