"""Build a service's MkDocs site with ``mkdocs build --strict``, and say what it was built from.

mkdocs runs with Slipway's own installation (so the material theme and its
extensions are those of the platform), inside a `slipway.sandbox.Sandbox`:
no network at all, and a filesystem holding only the interpreter, the site's
configuration files, its docs folder and theme overrides (read-only) and the
output directory. Its environment is clean: no Prefect API key, no cloud
credentials and no proxy settings reach it, so ``!ENV`` in a ``mkdocs.yml``
cannot copy a secret into a published page, and nothing a page or an
extension asks for can read a platform file or reach a platform service.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import git
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from slipway.errors import CommandError, DocsBuildError
from slipway.process import installed_tool
from slipway.sandbox import Sandbox
from tasks.git import Checkout
from tasks.techdocs.config import SiteConfig, read_site_config

__all__ = [
    "RESERVED",
    "BuiltSite",
    "DocsSource",
    "build_docs",
    "build_site",
    "describe_source",
    "is_ancestor",
]

logger = logging.getLogger(__name__)

RESERVED = "versions"
"""The top-level name in a published site that holds its version copies."""

_TIMEOUT = 600
_BUILD_ENV = {
    "NO_COLOR": "1",
    "NO_MKDOCS_2_WARNING": "1",  # material's end-of-life banner, not a problem of the site
}
"""What mkdocs gets besides the sandbox's clean PATH, HOME and locale."""
_PROBLEM = re.compile(r"^(WARNING|ERROR)\s+-\s+(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class DocsSource:
    """The commit a site is built from."""

    sha: str
    """The full commit id."""
    ref: str
    """What was asked for: a branch, tag or sha."""
    label: str
    """The version's name under ``versions/``: the tag when a tag was asked for, else the sha."""
    committed_at: datetime
    """When the commit was made (committer date, UTC)."""
    build_key: str
    """Changes whenever the output could: the commit's tree and the installed packages."""


@dataclass(frozen=True)
class BuiltSite:
    """A site that ``mkdocs build --strict`` wrote without a warning."""

    path: Path
    """The output directory."""
    config: SiteConfig
    """The configuration it was built from."""


def describe_source(checkout: Checkout) -> DocsSource:
    """Read the commit of ``checkout``: its time, its tree, and its version label."""
    repo = git.Repo(checkout.path)
    try:
        commit = repo.commit(checkout.sha)
        tags = {t.name for t in repo.tags}
    finally:
        repo.close()
    label = (
        checkout.ref if checkout.ref in tags and _LABEL.fullmatch(checkout.ref) else checkout.sha
    )
    key = hashlib.sha256(f"{commit.tree.hexsha}\n{_environment_fingerprint()}".encode())
    return DocsSource(
        sha=checkout.sha,
        ref=checkout.ref,
        label=label,
        committed_at=commit.committed_datetime.astimezone(UTC),
        build_key=key.hexdigest(),
    )


def is_ancestor(checkout: Checkout, older: str, newer: str) -> bool:
    """Whether ``older`` is an ancestor of ``newer`` in the checkout; False if either is unknown."""
    repo = git.Repo(checkout.path)
    try:
        return bool(repo.is_ancestor(repo.commit(older), repo.commit(newer)))
    except (git.GitCommandError, git.BadName, ValueError):
        return False  # e.g. a force-push removed ``newer``
    finally:
        repo.close()


def build_site(
    root: Path,
    config: SiteConfig,
    output: Path,
    *,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> BuiltSite:
    """Run ``mkdocs build --strict`` for ``config`` into ``output``.

    Every warning and error mkdocs prints is logged to ``log``; any of them
    fails the build. mkdocs runs in a sandbox that sees only `SiteConfig.inputs`
    (read-only) and ``output``, with no network.

    Raises:
        DocsBuildError: mkdocs refused the site (the message lists why), or
            the site uses the reserved top-level name ``versions``.
        SandboxUnavailable: bubblewrap is missing; nothing was built.
    """
    output.mkdir(parents=True, exist_ok=True)
    argv = [
        installed_tool("mkdocs"),
        "build",
        "--strict",
        "--config-file",
        str(config.path),
        "--site-dir",
        str(output),
    ]
    sandbox = Sandbox(read_only=config.inputs, writable=(output,), env=_BUILD_ENV)
    try:
        done = sandbox.run(argv, cwd=root, timeout=_TIMEOUT, check=False)
    except CommandError as e:  # not installed, or out of time
        raise DocsBuildError(f"mkdocs could not run: {e}", hint=e.hint) from e
    problems = _problems(done.stderr + "\n" + done.stdout)
    for problem in problems:
        log.warning("mkdocs: %s", problem)
    if done.returncode != 0 or problems:
        detail = "\n".join(f"  - {p}" for p in problems) or _tail(done.stdout + done.stderr)
        raise DocsBuildError(
            f"mkdocs build --strict refused the site ({len(problems)} warnings or errors):\n{detail}",
            hint="fix each one in docs/ or mkdocs.yml; `mkdocs build --strict` shows the same locally",
        )
    if (output / RESERVED).exists():
        raise DocsBuildError(
            f"the site has a top-level '{RESERVED}' page or directory, which Slipway keeps for old versions",
            hint=f"rename docs/{RESERVED}/ (or {RESERVED}.md)",
        )
    return BuiltSite(path=output, config=config)


def _problems(output: str) -> list[str]:
    found = []
    for line in _ANSI.sub("", output).splitlines():
        match = _PROBLEM.match(line.strip())
        if match:
            found.append(f"{match.group(1)}: {match.group(2).strip()}")
    return found


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


@functools.cache
def _environment_fingerprint() -> str:
    """The installed packages and their versions: a new theme release rebuilds every site."""
    names = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


@task(name="build-docs", cache_policy=NO_CACHE)
def build_docs(root: Path, output: Path) -> BuiltSite:
    """Refuse an unsafe configuration, then ``mkdocs build --strict``; warnings go to the run log."""
    log = get_run_logger()
    config = read_site_config(root)
    log.info("building %r (theme %s) from %s", config.site_name, config.theme, config.path.name)
    return build_site(root, config, output, log=log)
