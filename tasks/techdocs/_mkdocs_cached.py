"""``mkdocs build --strict``, reusing what the previous build of the site made when nothing it shows changed.

Most of a large site's build is template rendering: every page of a material
site carries the whole navigation, so 200 pages took 1.3 of 1.8 s here, and
Markdown took most of the rest. After a one-page change, the other 199 pages
convert and render to the same HTML again. This build keeps both results:

- a page's **conversion** (its HTML, table of contents, title and anchors)
  under a key of its Markdown (after every plugin's ``on_page_markdown``),
  the list of every file of the site (links resolve against it), and, for a
  site with ``pymdownx.snippets``, every file of the docs folder;
- a page's **output**, the file the previous build wrote into the same site
  directory, under a key of everything its template gets
  (`RenderCache.key`): the page's HTML, table of contents, meta and place,
  the whole navigation and every other context value. A page whose key is
  the one its file was written with is neither rendered nor written again,
  so its file keeps its time, and publishing need not read it either.

Both also hold a salt from the platform (installed packages, the site's
configuration files and theme overrides). Conversions live in one file of
the cache; outputs are trusted only when the site directory is the one the
previous build finished: ``--marker`` names a file that a build removes
before it writes anything and writes when it succeeded, so a build that
failed or was killed half-way leaves a directory the next one cleans and
builds in full. Every plugin event still runs, so links, anchors and the
search index are checked and built as in a full build; files of the last
build that this one did not make or keep are removed.

A context value whose text is not stable (an object's ``repr`` with an
address), a plugin that rewrites pages after rendering (``on_post_page``)
or a site with the ``blog`` plugin (its index pages render posts from the
template) makes pages render as usual: a miss is slower, never wrong.

The docs sandbox runs this file by path (`tasks.techdocs.build`), so it
needs mkdocs and nothing of Slipway:

    python _mkdocs_cached.py --config-file F --site-dir D --marker M --cache-to NEW [--cache-from OLD] --salt S
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, Template
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page

if TYPE_CHECKING or __package__:  # imported as part of Slipway
    from tasks.techdocs import _mkdocs_pages as pages
else:  # run by path in the sandbox, beside it; Slipway's packages are not there
    import _mkdocs_pages as pages

__all__ = ["RenderCache", "main"]

log = logging.getLogger("mkdocs.plugins.slipway.render_cache")

_SETTLED = ("config", "nav", "pages", "mkdocs_version", "build_date_utc", "page")
"""Context values the key covers in its own way; the rest go in as text."""
_DATES = ("build_date_utc", "update_date")
"""Values that change with every build or commit: in the key only where a template shows them."""
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


class RenderCache(BasePlugin):  # type: ignore[type-arg,no-untyped-call]  # no options
    """Serves conversions from the previous build, and keeps the pages it wrote when their key matches.

    Args:
        stored: The previous build's cache (`load`); empty for the first build.
        site: The site directory; its pages are the previous build's when
            ``stored`` may say so (`load`), else it is cleaned.
        salt: What the platform knows changes every page: packages, configuration.
        bytecode: Where the theme's compiled templates are kept.
    """

    def __init__(
        self, stored: dict[str, Any], site: Path, salt: str, bytecode: pages.Bytecode | None = None
    ) -> None:
        super().__init__()
        self.site, self.salt, self._bytecode = site, salt, bytecode
        self.conversions: dict[str, Any] = stored.get("conversions", {})
        self.outputs: dict[str, str] = stored.get("outputs", {})
        self.fresh: dict[str, Any] = {"salt": salt, "conversions": {}, "outputs": {}, "search": {}}
        self._dated: bool | None = stored.get("dates")
        self.kept: set[str] = set()
        self.reused = self.rendered = self.converted = 0
        self._links: str | None = None
        self._nav: Navigation | None = None
        self._files: Files | None = None
        self._site: str | None = None

    def on_nav(self, nav: Navigation, /, *, config: MkDocsConfig, files: Files) -> Navigation:
        """Keep the navigation: its titles are final once every page is read."""
        self._nav, self._files = nav, files
        return nav

    def on_env(self, env: Environment, /, *, config: MkDocsConfig, files: Files) -> Environment:
        """Serve the templates mkdocs renders (not those they extend) through the cache."""
        load = env.get_template

        def get_template(name: Any, parent: Any = None, globals: Any = None) -> Any:
            template = load(name, parent, globals)
            if parent is not None or globals is not None or not isinstance(name, str):
                return template
            return _Cached(template, name, self)

        env.get_template = get_template  # type: ignore[method-assign]
        env.bytecode_cache = self._bytecode
        self._env = env
        if config.plugins.events["post_page"]:  # a page's file is not what its template made
            self.outputs = {}
        return env

    def on_page_markdown(
        self, markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        """Convert ``page`` through the cache: its Markdown is final once every plugin had it."""
        digest = hashlib.sha256(f"{self.salt}\0{page.file.src_uri}\0".encode())
        digest.update(f"{self._site_files(files, config)}\0{markdown}".encode())
        key, convert = digest.hexdigest(), type(page).render

        def render(config: MkDocsConfig, files: Files) -> None:
            found = self.conversions.get(key)
            if found is None or not pages.restore(page, found, files):
                convert(page, config, files)
                self.converted += 1
                found = pages.conversion(page)
            self.fresh["conversions"][key] = found

        page.render = render  # type: ignore[method-assign]  # this page only, this build
        return markdown

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        """Say how much was reused, in the build's own log."""
        pages = len(self._pages())
        log.info(
            "build cache: %d of %d pages converted, %d of %d pages rendered",
            self.converted,
            pages,
            self.rendered,
            self.rendered + self.reused,
        )

    def key(self, name: str, context: dict[str, Any]) -> str | None:
        """Everything ``name`` renders from ``context``, hashed; None when it cannot be said."""
        digest = hashlib.sha256(f"{self.salt}\0{name}\0{self._site_signature()}".encode())
        dated = self._shows_dates(name)
        page = context.get("page")
        if page is not None:
            digest.update(pages.page_signature(page, dated).encode())
        if dated:
            digest.update(f"{context.get('build_date_utc')}\0{self._dates()}".encode())
        for item in sorted(k for k in context if k not in _SETTLED):
            text = repr(context[item])
            if _ADDRESS.search(text):
                return None
            digest.update(f"\0{item}={text}".encode())
        return digest.hexdigest()

    def keeps(self, destination: str, key: str) -> bool:
        """Whether the previous build wrote ``destination`` from ``key``, so it stays as it is."""
        self.fresh["outputs"][destination] = key
        if self.outputs.get(destination) != key or not (self.site / destination).is_file():
            return False
        self.kept.add(destination)
        return True

    def sweep(self, before: dict[str, int]) -> None:
        """Remove the previous build's files that this build neither wrote nor kept."""
        ours = {f.dest_uri for f in self._files or () if not f.is_documentation_page()}
        for relative, stamp in before.items():
            path = self.site / relative
            if relative in self.kept or relative in ours:
                continue
            try:
                if path.stat().st_mtime_ns == stamp:  # not written by this build
                    path.unlink()
            except FileNotFoundError:
                continue
        for directory in sorted((p for p in self.site.rglob("*") if p.is_dir()), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()

    def _site_files(self, files: Files, config: MkDocsConfig) -> str:
        """Every file links may point at, and every file a snippet may include, taken once."""
        if self._links is None:
            listed = sorted((f.src_uri, f.dest_uri, f.url) for f in files)
            digest = hashlib.sha256(json.dumps(listed).encode())
            if any("snippets" in str(name) for name in config.markdown_extensions):
                root = Path(config.docs_dir)
                for path in sorted(p for p in root.rglob("*") if p.is_file()):
                    digest.update(f"\0{path.relative_to(root)}\0".encode() + path.read_bytes())
            self._links = digest.hexdigest()
        return self._links

    def _pages(self) -> list[Any]:
        files = self._files.documentation_pages() if self._files else []
        return [f.page for f in files if f.page is not None]

    def _site_signature(self) -> str:
        """The navigation and every page's place and title, taken once after reading."""
        if self._site is None:
            listed = [(p.file.src_uri, p.url, p.title) for p in self._pages()]
            items = pages.nav_items(self._nav.items) if self._nav else []
            self._site = json.dumps([items, listed], default=str)
        return self._site

    def _dates(self) -> str:
        return json.dumps([(p.url, p.update_date) for p in self._pages()])

    def _shows_dates(self, name: str) -> bool:
        """Whether ``name`` may show a build date: the sitemap does, and pages if a template says so."""
        if not name.endswith((".html", ".htm")):
            return True
        if self._dated is None:  # the same for every build with this salt: kept
            self._dated = pages.anywhere(self._env, _DATES)
        self.fresh["dates"] = self._dated
        return self._dated


class _Cached:
    """A template whose ``render(context)`` of a page goes through the cache; the rest is the template's."""

    def __init__(self, template: Template, name: str, cache: RenderCache) -> None:
        self._template, self._name, self._cache = template, name, cache

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._template, attribute)

    def render(self, *args: Any, **kwargs: Any) -> str:
        context = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], dict) else None
        page = None if context is None else context.get("page")
        destination = getattr(getattr(page, "file", None), "dest_uri", None)
        key = None
        if context is not None and isinstance(destination, str):
            key = self._cache.key(self._name, context)
        if key is not None and isinstance(destination, str) and self._cache.keeps(destination, key):
            self._cache.reused += 1
            return ""  # mkdocs writes no empty page: the previous build's file stays
        self._cache.rendered += 1
        return str(self._template.render(*args, **kwargs))


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--cache-to", type=Path, required=True)
    parser.add_argument("--cache-from", type=Path)
    parser.add_argument("--salt", required=True)
    return parser.parse_args(argv)


_CACHE = "cache.json"


def load(previous: Path | None, marker: Path, salt: str) -> dict[str, Any]:
    """The previous build's cache; its outputs only if ``marker`` says it finished this site.

    The marker goes before anything is written, so a build that stops
    half-way leaves no marker, and the next one trusts no file of the site.
    Nothing is kept across another salt (packages, configuration, theme).
    """
    stored: Any = {}
    finished = ""
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads((previous / _CACHE).read_text(encoding="utf-8")) if previous else {}
    with contextlib.suppress(OSError):
        finished = marker.read_text(encoding="utf-8")
    marker.unlink(missing_ok=True)
    if not isinstance(stored, dict) or stored.get("salt") != salt:
        return {}
    if not finished or stored.get("build") != finished:
        stored.pop("outputs", None)
    return stored


def finish(cache: RenderCache, target: Path, marker: Path, before: dict[str, int]) -> None:
    """Drop what the build left over, then record its cache and mark the site finished."""
    cache.sweep(before)
    build = hashlib.sha256(f"{time.time_ns()}{cache.salt}".encode()).hexdigest()
    (target / _CACHE).write_text(json.dumps({"build": build, **cache.fresh}), encoding="utf-8")
    marker.write_text(build, encoding="utf-8")


def _files(site: Path) -> dict[str, int]:
    """Every file of ``site`` with its modification time (ns)."""
    return {
        p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()
    }


def _newer_only(copy: Callable[..., None]) -> Callable[..., None]:
    """Wraps mkdocs's copy of static files to skip each whose copy is newer than its source.

    The theme's files are skipped (the salt covers the theme), and the
    site's own files that did not change since the last build: the kept
    checkout rewrites only the files a commit changed, so a changed file is
    always newer than the last build's copy.
    """

    def copy_static_files(self: Files, dirty: bool = False, **options: Any) -> None:
        copy(self, True, **options)

    return copy_static_files


def _cleaned(directory: str) -> None:
    """In place of mkdocs's cleaning of the site directory, which `main` did where it had to."""


class _QuietKept(logging.Filter):
    """Drops mkdocs's note on each page that was kept, not rendered ("Page skipped")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Page skipped:")


def main(argv: list[str]) -> int:
    """Build as ``mkdocs build --strict --config-file F --site-dir D`` does; returns its exit code."""
    from mkdocs import config, exceptions, utils
    from mkdocs.__main__ import State
    from mkdocs.commands import build as commands

    args = _arguments(argv)
    state = State()  # type: ignore[no-untyped-call]  # the CLI's log lines: "WARNING -  ..."
    stored = load(args.cache_from, args.marker, args.salt)
    try:
        cfg = config.load_config(
            config_file=args.config_file, site_dir=str(args.site_dir), strict=True
        )
        cache = None
        fresh: dict[str, Any] = {}
        pages.remember_listings(stored.get("listings", {}), fresh.setdefault("listings", {}))
        pages.remember_theme_files(
            stored.get("theme_files", {}), fresh.setdefault("theme_files", {})
        )
        if not {"blog", "material/blog"} & set(cfg.plugins):
            bytecode = pages.Bytecode(args.cache_from, args.cache_to)
            pages.theme_bytecode(bytecode)
            cache = RenderCache(stored, args.site_dir, args.salt, bytecode)
            cache.fresh.update(fresh)
            pages.remember_search(stored.get("search", {}), cache.fresh["search"], args.salt)
            cfg.plugins["slipway/render-cache"] = cache
        if cache is None or not cache.outputs:
            utils.clean_directory(str(args.site_dir))
        else:  # the last build's theme files are this build's: copy only newer ones
            Files.copy_static_files = _newer_only(Files.copy_static_files)  # type: ignore[method-assign]
        before = _files(args.site_dir)
        utils.clean_directory = _cleaned  # cleaned above where it had to be; kept pages stay
        logging.getLogger("mkdocs.commands.build").addFilter(_QuietKept())
        cfg.plugins.on_startup(command="build", dirty=False)
        try:
            commands.build(cfg)
        finally:
            cfg.plugins.on_shutdown()
        if cache is not None:
            finish(cache, args.cache_to, args.marker, before)
    except exceptions.MkDocsException as e:
        e.show()  # as the CLI prints it: "Aborted with 2 warnings in strict mode!"
        return 1
    finally:
        state.logger.removeHandler(state.stream)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
