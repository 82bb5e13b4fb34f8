"""``mkdocs build --strict``, reusing each page the previous build made when nothing it shows changed.

Most of a large site's build is template rendering: every page of a material
site carries the whole navigation, so 200 pages took 1.3 of 1.8 s here, and
Markdown took most of the rest. After a one-page change, the other 199 pages
convert and render to the same HTML again. This build keeps both results:

- a page's **conversion** (its HTML, table of contents, title and anchors)
  under a key of its Markdown (after every plugin's ``on_page_markdown``),
  the list of every file of the site (links resolve against it), and, for a
  site with ``pymdownx.snippets``, every file of the docs folder;
- a template's **rendering** under a key of everything the template gets
  (`RenderCache.key`): the page's HTML, table of contents, meta and place,
  the whole navigation and every other context value.

Both also hold a salt from the platform (installed packages, the site's
configuration files and theme overrides). What a key finds in the previous
build's cache is taken from there; the rest is built as always, and every
plugin event still runs, so links, anchors and the search index are checked
and built as in a full build.

A context value whose text is not stable (an object's ``repr`` with an
address) or a site with the ``blog`` plugin (its index pages render posts
from the template) makes the page render as usual: a miss is slower, never
wrong.

The docs sandbox runs this file by path (`tasks.techdocs.build`), so it
needs mkdocs and nothing of Slipway:

    python _mkdocs_cached.py --config-file F --site-dir D --cache-to NEW [--cache-from OLD] --salt S
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment, Template
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page
from mkdocs.structure.toc import AnchorLink, get_toc

__all__ = ["RenderCache", "main"]

log = logging.getLogger("mkdocs.plugins.slipway.render_cache")

_SETTLED = ("config", "nav", "pages", "mkdocs_version", "build_date_utc", "page")
"""Context values the key covers in its own way; the rest go in as text."""
_DATES = ("build_date_utc", "update_date")
"""Values that change with every build or commit: in the key only where a template shows them."""
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


class RenderCache(BasePlugin):  # type: ignore[type-arg,no-untyped-call]  # no options
    """Serves a template's output from the previous build when its key matches.

    Args:
        previous: The previous build's cache, read only; None for the first build.
        fresh: Where this build's cache goes: every page it rendered or reused.
        salt: What the platform knows changes every page: packages, configuration.
    """

    def __init__(self, previous: Path | None, fresh: Path, salt: str) -> None:
        super().__init__()
        self.previous, self.fresh, self.salt = previous, fresh, salt
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
        self._env = env
        return env

    def on_page_markdown(
        self, markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str:
        """Convert ``page`` through the cache: its Markdown is final once every plugin had it."""
        digest = hashlib.sha256(f"{self.salt}\0{page.file.src_uri}\0".encode())
        digest.update(f"{self._site_files(files, config)}\0{markdown}".encode())
        key, convert = f"md-{digest.hexdigest()}", type(page).render

        def render(config: MkDocsConfig, files: Files) -> None:
            found = self._read(f"{key}.json")
            if found is not None and _restore(page, json.loads(found), files):
                self.keep(f"{key}.json", found)
                return
            convert(page, config, files)
            self.converted += 1
            self.keep(f"{key}.json", json.dumps(_conversion(page)))

        page.render = render  # type: ignore[method-assign]  # this page only, this build
        return markdown

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        """Say how much was reused, in the build's own log."""
        pages = len(self._pages())
        log.info(
            "build cache: %d of %d pages converted, %d of %d templates rendered",
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
            digest.update(_page_signature(page, dated).encode())
        if dated:
            digest.update(f"{context.get('build_date_utc')}\0{self._dates()}".encode())
        for item in sorted(k for k in context if k not in _SETTLED):
            text = repr(context[item])
            if _ADDRESS.search(text):
                return None
            digest.update(f"\0{item}={text}".encode())
        return digest.hexdigest()

    def lookup(self, key: str) -> str | None:
        """The previous build's rendering under ``key``, now also in this build's cache."""
        text = self._read(f"{key}.html")
        if text is not None:
            self.keep(f"{key}.html", text)
        return text

    def keep(self, name: str, text: str) -> None:
        """Put ``text`` in this build's cache as ``name``."""
        (self.fresh / name).write_text(text, encoding="utf-8")

    def _read(self, name: str) -> str | None:
        if self.previous is None:
            return None
        try:
            return (self.previous / name).read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

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
            items = _nav_items(self._nav.items) if self._nav else []
            self._site = json.dumps([items, listed], default=str)
        return self._site

    def _dates(self) -> str:
        return json.dumps([(p.url, p.update_date) for p in self._pages()])

    def _shows_dates(self, name: str) -> bool:
        """Whether ``name`` may show a build date: the sitemap does, and pages if a template says so."""
        return not name.endswith((".html", ".htm")) or _anywhere(self._env, _DATES)


class _Cached:
    """A template whose ``render(context)`` goes through the cache; the rest is the template's."""

    def __init__(self, template: Template, name: str, cache: RenderCache) -> None:
        self._template, self._name, self._cache = template, name, cache

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._template, attribute)

    def render(self, *args: Any, **kwargs: Any) -> str:
        context = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], dict) else None
        key = None if context is None else self._cache.key(self._name, context)
        cached = None if key is None else self._cache.lookup(key)
        if cached is not None:
            self._cache.reused += 1
            return cached
        output = self._template.render(*args, **kwargs)
        self._cache.rendered += 1
        if key is not None:
            self._cache.keep(f"{key}.html", output)
        return output


def _page_signature(page: Any, dated: bool) -> str:
    around = [
        (p.url, p.title) if p is not None else None for p in (page.previous_page, page.next_page)
    ]
    parents, parent = [], page.parent
    while parent is not None:
        parents.append(parent.title)
        parent = parent.parent
    fields = [
        page.url,
        page.title,
        page.content,
        _toc(page.toc),
        page.meta,
        page.edit_url,
        page.canonical_url,
        page.abs_url,
        page.is_homepage,
        around,
        parents,
        page.update_date if dated else None,
    ]
    return json.dumps(fields, sort_keys=True, default=str)


def _toc(links: Iterable[AnchorLink]) -> list[Any]:
    return [[link.id, link.title, link.level, _toc(link.children)] for link in links]


def _tokens(links: Iterable[AnchorLink]) -> list[dict[str, Any]]:
    """A table of contents as the tokens it was made of (`mkdocs.structure.toc.get_toc`)."""
    return [
        {"level": a.level, "id": a.id, "name": a.title, "children": _tokens(a.children)}
        for a in links
    ]


def _conversion(page: Page) -> dict[str, Any]:
    """What `Page.render` leaves on a page, as JSON."""
    links = page.links_to_anchors
    return {
        "content": page.content,
        "toc": _tokens(page.toc),
        "title": page._title_from_render,
        "anchors": sorted(page.present_anchor_ids or ()),
        "links": None if links is None else {f.src_uri: v for f, v in links.items()},
    }


def _restore(page: Page, found: dict[str, Any], files: Files) -> bool:
    """Put a stored conversion back on ``page``; False when a file it links to is gone."""
    links: dict[File, dict[str, str]] | None = None
    if found["links"] is not None:
        links = {}
        for uri, anchors in found["links"].items():
            target = files.get_file_from_path(uri)
            if target is None:
                return False
            links[target] = anchors
    page.content = found["content"]
    page.toc = get_toc(found["toc"])
    page._title_from_render = found["title"]
    page.present_anchor_ids = set(found["anchors"])
    page.links_to_anchors = links
    return True


def _nav_items(items: Iterable[Any]) -> list[Any]:
    return [
        [type(i).__name__, i.title, getattr(i, "url", None), _nav_items(i.children or [])]
        for i in items
    ]


@functools.cache
def _anywhere(env: Environment, words: tuple[str, ...]) -> bool:
    """Whether any page template of the theme (and the site's overrides) names one of ``words``.

    Templates include each other, some by names computed at render time
    (material picks its language partial so), so one that names a date may
    end up in any page. Icons, fonts and the sitemap are no page template.
    """
    pages = env.list_templates(extensions=["html", "htm"])
    return any(any(word in _source(env, name) for word in words) for name in pages)


def _source(env: Environment, name: str) -> str:
    """A template's text; empty for a file that is none (the theme's fonts and images)."""
    assert env.loader is not None
    try:
        return env.loader.get_source(env, name)[0]
    except UnicodeDecodeError:
        return ""


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--site-dir", required=True)
    parser.add_argument("--cache-to", type=Path, required=True)
    parser.add_argument("--cache-from", type=Path)
    parser.add_argument("--salt", required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Build as ``mkdocs build --strict --config-file F --site-dir D`` does; returns its exit code."""
    from mkdocs import config, exceptions
    from mkdocs.__main__ import State
    from mkdocs.commands import build as commands

    args = _arguments(argv)
    state = State()  # type: ignore[no-untyped-call]  # the CLI's log lines: "WARNING -  ..."
    try:
        cfg = config.load_config(config_file=args.config_file, site_dir=args.site_dir, strict=True)
        if not {"blog", "material/blog"} & set(cfg.plugins):
            cfg.plugins["slipway/render-cache"] = RenderCache(
                args.cache_from, args.cache_to, args.salt
            )
        cfg.plugins.on_startup(command="build", dirty=False)
        try:
            commands.build(cfg)
        finally:
            cfg.plugins.on_shutdown()
    except exceptions.MkDocsException as e:
        e.show()  # as the CLI prints it: "Aborted with 2 warnings in strict mode!"
        return 1
    finally:
        state.logger.removeHandler(state.stream)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
