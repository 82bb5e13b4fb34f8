"""What a service's ``mkdocs.yml`` may switch on: an allow-list of extensions and plugins.

The list is what MkDocs, mkdocs-material and Backstage's techdocs-core
support, minus anything that reads files outside the docs folder, fetches
URLs or runs programs: ``pymdownx.b64`` (embeds any image file by path),
material's ``privacy``, ``social``, ``optimize``, ``info``, ``group`` and
``projects`` plugins (downloads, external tools, other projects), techdocs'
``plantuml_markdown`` (a diagram server) and ``markdown_inline_graphviz``
(runs ``dot``), and every plugin not named here. ``pymdownx.snippets`` is
allowed with its reading confined to the docs folder: ``base_path`` inside
it, ``restrict_base_path`` on, ``url_download`` off, and no page may name a
file outside it or a URL.

These checks give a clear message before anything runs. They are not the
isolation: the build itself runs in `slipway.sandbox`, which mounts only
the site's own files and has no network, so a way around a check reaches
nothing either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.errors import DocsBuildError

__all__ = [
    "EXTENSIONS",
    "PLUGINS",
    "Snippets",
    "check_extensions",
    "check_includes",
    "plugin_names",
]

_MARKDOWN = (
    *("abbr", "admonition", "attr_list", "codehilite", "def_list", "extra", "fenced_code"),
    *("footnotes", "legacy_attrs", "legacy_em", "md_in_html", "meta", "nl2br", "sane_lists"),
    *("smarty", "tables", "toc", "wikilinks"),
)
_PYMDOWNX = (
    *("arithmatex", "betterem", "bracketspan", "caret", "critic", "details", "emoji"),
    *("escapeall", "extra", "fancylists", "highlight", "inlinehilite", "keys", "magiclink"),
    *("mark", "pathconverter", "progressbar", "quotes", "saneheaders", "smartsymbols"),
    *("snippets", "striphtml", "superfences", "tabbed", "tasklist", "tilde"),
    *("blocks.admonition", "blocks.caption", "blocks.definition", "blocks.details"),
    *("blocks.html", "blocks.tab"),
)
EXTENSIONS = frozenset(
    {
        *_MARKDOWN,
        *(f"markdown.extensions.{name}" for name in _MARKDOWN),
        *(f"pymdownx.{name}" for name in _PYMDOWNX),
        "mdx_truly_sane_lists",  # techdocs-core's
    }
)
"""Markdown extensions a site may use, as ``markdown_extensions`` names them."""
PLUGINS = frozenset({"search", "tags", "blog", "meta", "offline", "techdocs-core"})
"""MkDocs plugins a site may use (material's with or without their ``material/`` prefix)."""

_SNIPPETS = "pymdownx.snippets"
_PLUGINS_HINT = "remove it from plugins; the platform builds with: " + ", ".join(sorted(PLUGINS))
_EXTENSIONS_HINT = (
    "remove it from markdown_extensions; allowed are Python-Markdown's own, pymdownx's "
    "except b64, and mdx_truly_sane_lists (the list is in the docs: Publish docs)"
)
_PATH_OPTION = re.compile(r"(?:^|_)(?:dir|file|path)$")
_MARKER = r"-{1,}8<-{1,}"
_INLINE = re.compile(
    rf"^[ \t]*(?P<escape>;*){_MARKER}[ \t]+(?P<quoted>\"[^\"\r\n]+\"|'[^'\r\n]+')[ \t]*$"
)
_BLOCK = re.compile(rf"^[ \t]*(?P<escape>;*){_MARKER}[ \t]*$")
_LINES_OR_SECTION = re.compile(r"(?i)(?::-?[0-9]*)+(?:,-?[0-9:]*)*$|:[a-z][-_0-9a-z]*$")


@dataclass(frozen=True)
class Snippets:
    """Where ``pymdownx.snippets`` may read, once its settings passed `check_extensions`."""

    bases: tuple[Path, ...]
    """Its ``base_path`` entries, resolved; each inside the docs folder."""


def check_extensions(
    value: object, *, root: Path, docs_dir: Path
) -> tuple[tuple[str, ...], Snippets | None]:
    """The extension names of ``markdown_extensions``, each on the allow-list.

    Args:
        value: ``markdown_extensions`` as the config holds it (list or mapping).
        root: The repository, which relative paths in options are read against.
        docs_dir: The docs folder: the only place snippets may read.

    Raises:
        DocsBuildError: an extension is not allowed, or snippets could read
            outside the docs folder; names the extension and the fix.
    """
    names: list[str] = []
    snippets: Snippets | None = None
    for name, options in _entries(value, "markdown_extensions"):
        module = name.partition(":")[0]
        if module not in EXTENSIONS:
            raise DocsBuildError(
                f"markdown extension {name!r} is not allowed: it is not on the platform's "
                "allow-list (it may read files outside docs/, fetch URLs or run programs)",
                hint=_EXTENSIONS_HINT,
            )
        if module == _SNIPPETS:
            snippets = _snippets(options, root=root, docs_dir=docs_dir)
        if module == "pymdownx.emoji":
            _emoji(options, root=root, docs_dir=docs_dir)
        names.append(name)
    return tuple(names), snippets


def plugin_names(value: object, *, theme: str) -> tuple[str, ...]:
    """The plugin names of ``plugins:``, each on the allow-list.

    Raises:
        DocsBuildError: a plugin is not allowed, or one of its path options
            points outside the docs folder; names the plugin and the fix.
    """
    names: list[str] = []
    for name, options in _entries(value, "plugins"):
        short = name.removeprefix(f"{theme}/") if "/" in name else name
        if short not in PLUGINS:
            raise DocsBuildError(
                f"plugin {name!r} is not allowed: it is not on the platform's allow-list "
                "(it may read files outside docs/, fetch URLs or run programs)",
                hint=_PLUGINS_HINT,
            )
        for key, option in options.items():
            if _PATH_OPTION.search(str(key)) and isinstance(option, str) and _escapes(option):
                raise DocsBuildError(
                    f"plugin {name!r} option {key}: {option!r} points outside the docs folder",
                    hint=f"give {key} as a path inside docs/, without '..'",
                )
        names.append(name)
    return tuple(names)


def check_includes(docs_dir: Path, snippets: Snippets) -> None:
    """Refuse a page whose snippet include names a URL or a file outside the docs folder.

    ``restrict_base_path`` would skip such an include silently; this says
    which page asked for what instead, so the author knows.

    Raises:
        DocsBuildError: naming the page, its line and the path.
    """
    for page in sorted(docs_dir.rglob("*.md")):
        for number, target in _includes(page):
            problem = _outside(target, snippets, docs_dir)
            if problem:
                where = page.relative_to(docs_dir).as_posix()
                raise DocsBuildError(
                    f"{docs_dir.name}/{where} line {number} includes {target!r} with "
                    f"pymdownx.snippets, {problem}",
                    hint="include only files inside the docs folder, by a path relative to "
                    "snippets' base_path; snippets never downloads",
                )


def _entries(value: object, setting: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, options)`` of a list of names and one-key mappings, or of a mapping."""
    if value is None:
        return
    items: list[Any] = list(value.items()) if isinstance(value, dict) else _as_list(value)
    for item in items:
        if isinstance(item, tuple):
            name, options = item
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
        else:
            name, options = item, None
        if not isinstance(name, str) or not name:
            raise DocsBuildError(f"{setting} holds {item!r}, which is not a name")
        if options is not None and not isinstance(options, dict):
            raise DocsBuildError(f"{setting}: the options of {name!r} must be a mapping")
        yield name, options or {}


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _snippets(options: dict[str, Any], *, root: Path, docs_dir: Path) -> Snippets:
    if options.get("url_download"):
        raise DocsBuildError(
            "pymdownx.snippets has url_download: true, which would fetch URLs during the build",
            hint="remove url_download; copy the content into docs/ instead",
        )
    if options.get("restrict_base_path") is False:
        raise DocsBuildError(
            "pymdownx.snippets has restrict_base_path: false, which lets pages read outside base_path",
            hint="remove restrict_base_path",
        )
    raw = options.get("base_path")
    if raw is None:
        raise DocsBuildError(
            "pymdownx.snippets reads from the repository's root unless base_path says otherwise, "
            "and may read only inside the docs folder",
            hint=f"set base_path: [{docs_dir.relative_to(root).as_posix()}] in its options",
        )
    bases = []
    for entry in _as_list(raw):
        base = (root / str(entry)).resolve()
        if not base.is_relative_to(docs_dir):
            raise DocsBuildError(
                f"pymdownx.snippets base_path {entry!r} is outside the docs folder",
                hint=f"point base_path at {docs_dir.relative_to(root).as_posix()} or a folder in it",
            )
        bases.append(base)
    return Snippets(bases=tuple(bases))


def _emoji(options: dict[str, Any], *, root: Path, docs_dir: Path) -> None:
    """Material's custom icons are read from disk: only from the docs or theme folders."""
    icons = (options.get("options") or {}).get("custom_icons") or []
    for entry in _as_list(icons):
        if _escapes(str(entry)):
            raise DocsBuildError(
                f"pymdownx.emoji custom_icons {entry!r} points outside the repository",
                hint="keep custom icons in the theme's custom_dir, e.g. overrides/.icons",
            )


def _escapes(path: str) -> bool:
    return path.startswith(("/", "~")) or ".." in Path(path).parts


def _includes(page: Path) -> Iterator[tuple[int, str]]:
    """``(line, path)`` of each snippet include in ``page``, inline and in blocks."""
    in_block = False
    for number, line in enumerate(
        page.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        inline, block = _INLINE.match(line), _BLOCK.match(line)
        if inline and not inline["escape"]:
            yield number, inline["quoted"][1:-1].strip()
        elif block and not block["escape"]:
            in_block = not in_block
        elif in_block and line.strip() and not line.strip().startswith(";"):
            yield number, line.strip()


def _outside(target: str, snippets: Snippets, docs_dir: Path) -> str | None:
    """Why ``target`` is refused, or None when every base resolves it inside the docs folder."""
    if target.lower().startswith(("http://", "https://", "ftp://", "file:")):
        return "a URL (snippets never downloads here)"
    path = _LINES_OR_SECTION.sub("", target) or target
    for base in snippets.bases:
        resolved = (base / path).resolve()
        if not resolved.is_relative_to(docs_dir):
            return "a file outside the docs folder"
    return None
