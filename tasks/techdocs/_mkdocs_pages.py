"""What `tasks.techdocs._mkdocs_cached` keeps of a page and a theme, as JSON or bytecode.

It runs beside that file in the docs sandbox, by path, so it needs mkdocs
and Jinja and nothing of Slipway.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from jinja2.bccache import Bucket, BytecodeCache
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.structure.toc import AnchorLink, get_toc

__all__ = [
    "Bytecode",
    "anywhere",
    "conversion",
    "nav_items",
    "page_signature",
    "remember_listings",
    "remember_search",
    "remember_theme_files",
    "theme_bytecode",
    "restore",
]


class Bytecode(BytecodeCache):
    """Jinja's compiled templates, from the previous build's cache into this one's.

    Compiling material's templates for the one page that changed took a
    tenth of a second. Jinja checks each entry against its template's source
    and Python's version. Like the rest of the cache, the entries are made
    and run only in this sandbox, by builds of the same service.
    """

    def __init__(self, previous: Path | None, fresh: Path) -> None:
        self.previous, self.fresh = previous, fresh

    def load_bytecode(self, bucket: Bucket) -> None:
        if self.previous is None:
            return
        try:
            data = (self.previous / f"jinja-{bucket.key}").read_bytes()
        except OSError:
            return
        bucket.bytecode_from_string(data)
        if bucket.code is not None:  # taken: the next build wants it too
            (self.fresh / f"jinja-{bucket.key}").write_bytes(data)

    def dump_bytecode(self, bucket: Bucket) -> None:
        (self.fresh / f"jinja-{bucket.key}").write_bytes(bucket.bytecode_to_string())


def page_signature(page: Any, dated: bool) -> str:
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


def conversion(page: Page) -> dict[str, Any]:
    """What `Page.render` leaves on a page, as JSON."""
    links = page.links_to_anchors
    return {
        "content": page.content,
        "toc": _tokens(page.toc),
        "title": page._title_from_render,
        "anchors": sorted(page.present_anchor_ids or ()),
        "links": None if links is None else {f.src_uri: v for f, v in links.items()},
    }


def restore(page: Page, found: dict[str, Any], files: Files) -> bool:
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


def nav_items(items: Iterable[Any]) -> list[Any]:
    return [
        [type(i).__name__, i.title, getattr(i, "url", None), nav_items(i.children or [])]
        for i in items
    ]


@functools.cache
def anywhere(env: Environment, words: tuple[str, ...]) -> bool:
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


def remember_listings(known: dict[str, Any], fresh: dict[str, Any]) -> None:
    """Serve each theme directory's list of files from the last build with the same salt.

    mkdocs and Jinja walk the theme's directories, material's 14,500 files,
    on every build; the salt covers the installed theme and the site's own
    overrides (which sit in a new checkout each time, so they never match).
    """
    listing = FileSystemLoader.list_templates

    def list_templates(self: FileSystemLoader) -> list[str]:
        key = json.dumps([os.fspath(p) for p in self.searchpath])
        found = known.get(key)
        if not isinstance(found, list):
            found = listing(self)
        fresh[key] = found
        return list(found)

    FileSystemLoader.list_templates = list_templates  # type: ignore[method-assign]


def remember_theme_files(known: dict[str, Any], fresh: dict[str, Any]) -> None:
    """Serve the theme's static files (which of its files the site copies) from the last build.

    mkdocs matches each of material's 14,500 file names against a dozen
    patterns on every build, a tenth of a second. What it finds depends only
    on the theme's directories and files and the patterns (the configuration's
    ``static_templates``), which the key and the salt cover; files of the
    docs folder still take precedence, as in mkdocs.
    """
    add = Files.add_files_from_theme

    def add_files_from_theme(self: Files, env: Environment, config: Any) -> None:
        theme = config.theme
        key = json.dumps([list(theme.dirs), sorted(theme.static_templates)])
        found = known.get(key)
        if not isinstance(found, list):
            mine = Files([])
            add(mine, env, config)
            found = [[f.src_uri, f.src_dir] for f in mine]
        fresh[key] = found
        for path, directory in found:
            if self.get_file_from_path(path) is None:
                self.append(File(path, directory, config.site_dir, config.use_directory_urls))

    Files.add_files_from_theme = add_files_from_theme  # type: ignore[method-assign]


def theme_bytecode(bytecode: BytecodeCache) -> None:
    """Give every Jinja environment of the theme the build's compiled templates.

    Material's search plugin makes three environments of its own to read
    its translations, and compiled the language templates each time.
    """
    from mkdocs.theme import Theme

    get_env = Theme.get_env

    def with_bytecode(self: Theme) -> Environment:
        env = get_env(self)
        env.bytecode_cache = bytecode
        return env

    Theme.get_env = with_bytecode  # type: ignore[method-assign]


def remember_search(known: dict[str, Any], fresh: dict[str, Any], salt: str) -> None:
    """Serve material's search entries of a page from the last build when nothing they read changed.

    An entry is made from the page's place, title, meta, HTML and table of
    contents, and the search plugin's settings (in the salt); splitting the
    HTML into sections took a quarter of a millisecond per page.
    """
    try:
        from material.plugins.search.plugin import SearchIndex  # type: ignore[import-untyped]
    except ImportError:  # another theme's search: it runs as always
        return
    add = SearchIndex.add_entry_from_context

    def add_entry_from_context(self: SearchIndex, page: Page) -> None:
        read = [page.url, page.title, page.meta, page.content, _toc(page.toc)]
        key = hashlib.sha256(f"{salt}\0{json.dumps(read, default=str)}".encode()).hexdigest()
        found = known.get(key)
        if isinstance(found, list):
            self.entries.extend(found)
        else:
            before = len(self.entries)
            add(self, page)
            found = self.entries[before:]
        fresh[key] = found

    SearchIndex.add_entry_from_context = add_entry_from_context
