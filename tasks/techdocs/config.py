"""Read a service's ``mkdocs.yml`` and refuse what the platform will not build.

mkdocs reads its configuration with PyYAML's full loader, so a pushed
``mkdocs.yml`` could construct arbitrary Python objects on the platform's
runner, and ``hooks:`` run Python files from the repository. This module reads
the file first with a safe loader and refuses, before mkdocs starts:

- tags other than ``!ENV``, ``!relative`` and ``!!python/name:`` of Markdown's
  own packages (``markdown``, ``pymdownx``, ``material``, ``mkdocs``);
- ``hooks:``;
- a ``docs_dir``, ``theme.custom_dir`` or ``INHERIT`` outside the repository,
  or a symlink in them that leads out of it (mkdocs would publish its target);
- a Markdown extension or plugin outside the allow-list of
  `tasks.techdocs.extensions` (which also confines ``pymdownx.snippets`` to
  the docs folder), and a plugin or theme that is not installed.

The `SiteConfig` it returns names every file the build may read (its
`SiteConfig.inputs`): the sandbox mounts those and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from slipway.errors import DocsBuildError
from tasks.techdocs.extensions import check_extensions, check_includes, plugin_names

__all__ = ["CONFIG_NAMES", "SiteConfig", "read_site_config"]

CONFIG_NAMES = ("mkdocs.yml", "mkdocs.yaml")
"""Where mkdocs looks for its configuration, in order."""

_TRUSTED_MODULES = ("markdown.", "pymdownx.", "material.", "mkdocs.")
_MAX_INHERIT = 5
_INSTALL_HINT = "install it into Slipway's environment (.venv/bin/pip install ...) or remove it"


@dataclass(frozen=True)
class SiteConfig:
    """What the platform needs to know about a service's MkDocs site."""

    path: Path
    """The configuration file, inside the repository."""
    site_name: str
    """``site_name``: the title TechDocs and the portal show."""
    site_description: str
    """``site_description``, or empty."""
    docs_dir: Path
    """The resolved Markdown directory; always inside the repository."""
    theme: str
    """The theme's name, e.g. ``material`` or ``mkdocs``."""
    plugins: tuple[str, ...]
    """The plugins the site asks for, as ``plugins:`` names them."""
    extensions: tuple[str, ...] = ()
    """The Markdown extensions it asks for, as ``markdown_extensions`` names them."""
    sources: tuple[Path, ...] = ()
    """The configuration files read: `path` and its ``INHERIT`` chain."""
    custom_dir: Path | None = None
    """The resolved ``theme.custom_dir``, inside the repository; None without one."""

    @property
    def inputs(self) -> tuple[Path, ...]:
        """Everything the build may read: the configuration files, the docs and the theme's overrides."""
        extra = (self.custom_dir,) if self.custom_dir is not None else ()
        return (*self.sources, self.docs_dir, *extra)


class _Refused(Exception):
    """A YAML construct that the platform will not hand to mkdocs."""


class _ScreeningLoader(yaml.SafeLoader):
    """YAML's safe loader plus the tags mkdocs sites use, resolved without side effects."""


def _env_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # mkdocs runs with a scrubbed environment (see build.py): !ENV yields its default.
    if isinstance(node, yaml.SequenceNode):
        values = loader.construct_sequence(node)
        return values[-1] if len(values) > 1 else None
    return None


def _relative_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return None  # a path mkdocs fills in at build time; none of our checks read one


def _python_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if not suffix.startswith(_TRUSTED_MODULES):
        raise _Refused(f"the tag !!python/name:{suffix} (only {', '.join(_TRUSTED_MODULES)}*)")
    return f"python/name:{suffix}"


_ScreeningLoader.add_constructor("!ENV", _env_tag)
_ScreeningLoader.add_constructor("!relative", _relative_tag)
_ScreeningLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _python_name)


def read_site_config(root: Path) -> SiteConfig:
    """Check the MkDocs configuration of the repository at ``root`` before any build.

    Raises:
        DocsBuildError: The repository has no configuration, or it asks for
            something refused above; the message names it and the fix.
    """
    root = root.resolve()
    path = next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)
    if path is None:
        raise DocsBuildError(
            f"the repository has no {CONFIG_NAMES[0]}, so it has no docs to publish",
            hint="add mkdocs.yml and docs/index.md (the python-service template has both)",
        )
    sources: list[Path] = []
    config = _load(root, path, depth=0, sources=sources)
    if config.get("hooks"):
        raise DocsBuildError(
            f"{path.name} declares hooks:, which would run the repository's Python on the platform",
            hint="remove hooks:, or package them as a plugin installed in Slipway's environment",
        )
    docs_dir = _inside(root, path.parent, config.get("docs_dir", "docs"), "docs_dir")
    if not docs_dir.is_dir() or docs_dir == root:
        raise DocsBuildError(
            f"docs_dir {docs_dir.relative_to(root).as_posix()!r} is not a sub-directory",
            hint="create docs/ with an index.md, or point docs_dir at the Markdown directory",
        )
    theme, custom = _theme(config.get("theme"))
    custom_dir = _inside(root, path.parent, custom, "theme.custom_dir") if custom else None
    for directory in (docs_dir, custom_dir):
        if directory is not None:
            _no_symlink_out(root, directory)
    plugins = _plugins(config.get("plugins"), theme=theme)
    extensions, snippets = check_extensions(
        config.get("markdown_extensions"), root=root, docs_dir=docs_dir
    )
    if snippets is not None:
        check_includes(docs_dir, snippets)
    return SiteConfig(
        path=path,
        site_name=str(config.get("site_name") or root.name),
        site_description=str(config.get("site_description") or ""),
        docs_dir=docs_dir,
        theme=theme,
        plugins=plugins,
        extensions=extensions,
        sources=tuple(sources),
        custom_dir=custom_dir,
    )


def _load(root: Path, path: Path, *, depth: int, sources: list[Path]) -> dict[str, Any]:
    """The configuration at ``path``, merged over the ``INHERIT`` chain (each file into ``sources``)."""
    name = path.relative_to(root).as_posix()
    sources.append(path)
    if depth > _MAX_INHERIT:
        raise DocsBuildError(f"{name}: INHERIT nests deeper than {_MAX_INHERIT} files")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ScreeningLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as e:
        raise DocsBuildError(
            f"{name} uses {e}, which could run code on the platform",
            hint="use plain YAML values there",
        ) from e
    except yaml.constructor.ConstructorError as e:
        raise DocsBuildError(
            f"{name} uses a YAML tag the platform does not build: {e.problem}",
            hint="only !ENV, !relative and !!python/name: of markdown/pymdownx/material are allowed",
        ) from e
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise DocsBuildError(f"{name} cannot be read: {e}", hint=f"fix {name}") from e
    if not isinstance(data, dict):
        raise DocsBuildError(f"{name} is not a mapping of settings", hint=f"fix {name}")
    parent = data.pop("INHERIT", None)
    if parent is None:
        return data
    base = _inside(root, path.parent, parent, "INHERIT")
    return _merge(_load(root, base, depth=depth + 1, sources=sources), data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge as mkdocs' INHERIT does: mappings key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _inside(root: Path, base: Path, value: object, setting: str) -> Path:
    """``value`` as a path relative to ``base``, refused unless it stays in ``root``."""
    if not isinstance(value, str) or not value:
        raise DocsBuildError(
            f"{setting} must be a plain relative path, not {value!r}",
            hint=f"write {setting} as a path such as 'docs'",
        )
    resolved = (base / value).resolve()
    if not resolved.is_relative_to(root):
        raise DocsBuildError(
            f"{setting} {value!r} points outside the repository",
            hint=f"keep {setting} inside the repository, e.g. 'docs'",
        )
    return resolved


def _theme(value: object) -> tuple[str, str | None]:
    """The theme's name and its ``custom_dir``; refuses a theme that is not installed."""
    if value is None:
        value = "mkdocs"
    name: object
    if isinstance(value, str):
        name, custom_dir = value, None
    elif isinstance(value, dict):
        name, custom_dir = value.get("name"), value.get("custom_dir")
    else:
        raise DocsBuildError(f"theme must be a name or a mapping, not {value!r}")
    installed = {e.name for e in entry_points(group="mkdocs.themes")}
    if name is not None and name not in installed:
        raise DocsBuildError(
            f"theme {name!r} is not installed (installed: {', '.join(sorted(installed))})",
            hint=_INSTALL_HINT,
        )
    return str(name or "custom"), custom_dir


def _plugins(value: object, *, theme: str) -> tuple[str, ...]:
    """The plugin names of ``plugins:`` (list or mapping); refuses any not allowed or installed.

    As mkdocs does, ``blog`` names the theme's ``material/blog`` when there is no ``blog``.
    """
    names = plugin_names(value, theme=theme)
    installed = {e.name for e in entry_points(group="mkdocs.plugins")}
    missing = [n for n in names if n not in installed and f"{theme}/{n}" not in installed]
    if missing:
        raise DocsBuildError(
            f"plugin {', '.join(repr(n) for n in missing)} is not installed in Slipway's environment",
            hint=_INSTALL_HINT,
        )
    return tuple(names)


def _no_symlink_out(root: Path, directory: Path) -> None:
    """Refuse a symlink under ``directory`` whose target is outside ``root``."""
    for link in _symlinks(directory):
        if not link.resolve().is_relative_to(root):
            raise DocsBuildError(
                f"{link.relative_to(root).as_posix()} is a symlink out of the repository; "
                "mkdocs would publish its target",
                hint="replace the symlink with the file itself",
            )


def _symlinks(directory: Path) -> Iterator[Path]:
    for top, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            path = Path(top) / name
            if path.is_symlink():
                yield path
