"""Build a service's MkDocs site with ``mkdocs build --strict``, and say what it was built from.

mkdocs runs with Slipway's own installation (so the material theme and its
extensions are those of the platform), inside a `slipway.sandbox.Sandbox`:
no network at all, and a filesystem holding only the interpreter, the site's
configuration files, its docs folder and theme overrides (read-only) and the
output directory. Its environment is clean: no Prefect API key, no cloud
credentials and no proxy settings reach it, so ``!ENV`` in a ``mkdocs.yml``
cannot copy a secret into a published page, and nothing a page or an
extension asks for can read a platform file or reach a platform service.

Builds are reproducible (``SOURCE_DATE_EPOCH`` is the commit's time), and
with a `RenderCache` a build reuses what the last build of the same service
made when nothing a page shows changed (`tasks.techdocs._mkdocs_cached`):
the site directory is the service's own on this host, and after a one-page
change of a 200-page site one page is rendered and written instead of 200.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import git
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from slipway.errors import CommandError, DocsBuildError
from slipway.home import SlipwayHome
from slipway.process import CompletedCommand, installed_tool
from slipway.sandbox import Sandbox
from tasks.git import Checkout
from tasks.techdocs.config import SiteConfig, read_site_config

__all__ = [
    "RESERVED",
    "BuiltSite",
    "DocsSource",
    "RenderCache",
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
_RUNNER = Path(__file__).with_name("_mkdocs_cached.py")
_RUNNER_FILES = (_RUNNER, _RUNNER.with_name("_mkdocs_pages.py"))
_RUNNER_VERSION = "2"  # bump when the runner's key changes meaning


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


@dataclass(frozen=True)
class RenderCache:
    """Where one service's site and what made it are kept between builds on this host.

    Losing it costs one full build, nothing else: every key names all a page
    shows, so a stale entry is never used. One build of a service at a time
    (`held`): its site directory is reused.
    """

    directory: Path
    """The cache of the last successful build; replaced whole by the next one."""

    @classmethod
    def of(cls, service: str) -> RenderCache:
        """The cache of ``service`` in Slipway's home."""
        return cls(SlipwayHome.from_env().cache / "docs" / service)

    @property
    def workspace(self) -> Path:
        """What the sandbox may write besides the new cache: the site and its marker."""
        return self.directory.with_name(f"{self.directory.name}.site")

    @property
    def site(self) -> Path:
        """The service's site directory, rebuilt in place."""
        return self.workspace / "site"

    @property
    def checkout(self) -> Path:
        """The service's clone, brought to each commit by a fetch (`tasks.git.checkout`'s ``kept``).

        Outside the sandbox's reach like the digests: a build reads only the
        files of it that `SiteConfig.inputs` names, read-only.
        """
        return self.directory.with_name(f"{self.directory.name}.checkout")

    @property
    def digests(self) -> Path:
        """The site's files' digests, kept by publishing (outside the sandbox's reach)."""
        return self.directory.with_name(f"{self.directory.name}.digests.json")

    @contextmanager
    def held(self) -> Iterator[RenderCache]:
        """This service's cache, clone and site to itself, until the site is published."""
        self.site.mkdir(parents=True, exist_ok=True)
        lock = self.directory.with_name(f".{self.directory.name}.lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def refreshed(self) -> Iterator[tuple[Path | None, Path]]:
        """The previous cache (None at first) and a new one, which replaces it on success."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.directory.with_name(f".{self.directory.name}-{uuid.uuid4().hex}")
        fresh.mkdir()
        try:
            yield (self.directory if self.directory.is_dir() else None), fresh
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        stale = self.directory.with_name(f".{self.directory.name}-stale-{uuid.uuid4().hex}")
        if self.directory.is_dir():
            self.directory.rename(stale)  # two builds at once: the later one's cache stays
        fresh.rename(self.directory)
        shutil.rmtree(stale, ignore_errors=True)


def build_site(
    root: Path,
    config: SiteConfig,
    output: Path,
    *,
    committed_at: datetime | None = None,
    cache: RenderCache | None = None,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> BuiltSite:
    """Run ``mkdocs build --strict`` for ``config`` into ``output``.

    Every warning and error mkdocs prints is logged to ``log``; any of them
    fails the build. mkdocs runs in a sandbox that sees only `SiteConfig.inputs`
    (read-only), ``output`` and the render cache, with no network.

    Args:
        root: The checkout.
        config: The checked configuration.
        output: The site directory to write; with a cache, its `RenderCache.site`.
        committed_at: The commit's time, which dates the pages (sitemap, the
            mkdocs theme's build date) so that a rebuild is byte-identical.
        cache: What the last build made, to reuse; without one every page renders.
        log: Where mkdocs's warnings go.

    Raises:
        DocsBuildError: mkdocs refused the site (the message lists why), or
            the site uses the reserved top-level name ``versions``.
        SandboxUnavailable: bubblewrap is missing; nothing was built.
        ValueError: a cached build was asked for another directory than the cache's site.
    """
    if cache is not None and output != cache.site:
        raise ValueError(f"a cached build writes {cache.site}, not {output}")
    output.mkdir(parents=True, exist_ok=True)
    env = dict(_BUILD_ENV)
    if committed_at is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(committed_at.timestamp()))
    if cache is None:
        _check(_mkdocs(root, config, output, env, None, None), output, log)
    else:  # the new cache replaces the old only when the build passed
        with cache.refreshed() as (previous, fresh):
            _check(_mkdocs(root, config, output, env, previous, fresh), output, log)
    return BuiltSite(path=output, config=config)


def _mkdocs(
    root: Path,
    config: SiteConfig,
    output: Path,
    env: dict[str, str],
    previous: Path | None,
    fresh: Path | None,
) -> CompletedCommand:
    """``mkdocs build --strict``, through the caching runner when there is a cache to write."""
    site = ("--config-file", str(config.path), "--site-dir", str(output))
    if fresh is None:
        argv = [installed_tool("mkdocs"), "build", "--strict", *site]
        sandbox = Sandbox(read_only=config.inputs, writable=(output,), env=env)
    else:  # the site's marker sits beside it: a build cannot reach another service's
        marker = output.with_name(f".{output.name}-finished")
        argv = [sys.executable, str(_RUNNER), *site, "--marker", str(marker)]
        argv += ["--cache-to", str(fresh), "--salt", _salt(root, config)]
        argv += ["--cache-from", str(previous)] if previous is not None else []
        mounts = (*config.inputs, *_RUNNER_FILES, *((previous,) if previous is not None else ()))
        sandbox = Sandbox(read_only=mounts, writable=(output.parent, fresh), env=env)
    try:
        return sandbox.run(argv, cwd=root, timeout=_TIMEOUT, check=False)
    except CommandError as e:  # not installed, or out of time
        raise DocsBuildError(f"mkdocs could not run: {e}", hint=e.hint) from e


def _check(
    done: CompletedCommand, output: Path, log: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
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


def _salt(root: Path, config: SiteConfig) -> str:
    """What changes every page: the runner, the packages, the configuration and theme overrides.

    Paths count relative to the checkout, which is a new directory each time.
    """
    digest = hashlib.sha256(f"{_RUNNER_VERSION}\n{_environment_fingerprint()}".encode())
    roots = [*config.sources, *((config.custom_dir,) if config.custom_dir else ())]
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(f"\0{path.relative_to(root)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


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
def build_docs(root: Path, cache: RenderCache, source: DocsSource) -> BuiltSite:
    """Refuse an unsafe configuration, then ``mkdocs build --strict``; warnings go to the run log.

    The site is built in the service's own directory (`RenderCache.site`;
    hold it with `RenderCache.held` until it is published): pages that did
    not change since this host's last build of the service are neither
    rendered nor written again, so cost follows the change.
    """
    log = get_run_logger()
    config = read_site_config(root)
    log.info("building %r (theme %s) from %s", config.site_name, config.theme, config.path.name)
    site, committed_at = cache.site, source.committed_at
    return build_site(root, config, site, committed_at=committed_at, cache=cache, log=log)
