"""A service's site rebuilt in place: only what changed is rendered, written and hashed.

Real mkdocs (material theme) in the real sandbox; every cached build is
compared byte for byte with a build from nothing of the same commit.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slipway.errors import DocsBuildError
from tasks.storage import LocalStore
from tasks.techdocs import RenderCache, VersionEntry, build_site, read_site_config
from tasks.techdocs.layout import objects_prefix, version_prefix
from tasks.techdocs.publish import _local_files
from tasks.techdocs.versions import prune_versions, put_version, write_version_entry
from tests.flows.docs_helpers import write_site

PAGES = 12
CONFIG = "site_name: Cached\ntheme:\n  name: material\n  font: false\n"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pages() -> dict[str, str]:
    found = {"index.md": "# Cached\n\nSee [the first page](section-0/page-0.md).\n"}
    for n in range(PAGES):
        following = (n + 1) % PAGES
        found[f"section-{n % 3}/page-{n}.md"] = (
            f"# Page {n}\n\nText of page {n}.\n\n"
            f"Next: [page {following}](../section-{following % 3}/page-{following}.md).\n"
        )
    return found


def files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def times(site: Path) -> dict[str, int]:
    return {
        p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()
    }


def cached_build(root: Path, cache: RenderCache) -> dict[str, bytes]:
    with cache.held():
        build_site(root, read_site_config(root), cache.site, committed_at=WHEN, cache=cache)
    return files(cache.site)


def fresh_build(root: Path, output: Path) -> dict[str, bytes]:
    return files(build_site(root, read_site_config(root), output, committed_at=WHEN).path)


def test_a_one_page_change_rewrites_that_page_only_and_the_site_is_what_a_full_build_makes(
    tmp_path: Path,
) -> None:
    root = write_site(tmp_path / "repo", CONFIG, pages())
    cache = RenderCache(tmp_path / "cache" / "cached")
    first = cached_build(root, cache)
    assert first == fresh_build(root, tmp_path / "full-1")
    before = times(cache.site)

    changed = root / "docs" / "section-1" / "page-4.md"
    changed.write_text(changed.read_text() + "\nOne more sentence.\n")
    second = cached_build(root, cache)
    assert second == fresh_build(root, tmp_path / "full-2")
    after = times(cache.site)
    rewritten = {page for page in after if after[page] != before[page]}
    assert "section-1/page-4/index.html" in rewritten
    always = {"404.html", "sitemap.xml", "sitemap.xml.gz", "search/search_index.json"}
    assert rewritten <= {"section-1/page-4/index.html", *always}  # theme files stay too
    assert b"One more sentence." in second["search/search_index.json"]


def test_a_failed_build_leaves_nothing_to_trust_and_a_removed_page_disappears(
    tmp_path: Path,
) -> None:
    root = write_site(tmp_path / "repo", CONFIG, pages())
    cache = RenderCache(tmp_path / "cache" / "cached")
    cached_build(root, cache)

    page_4, page_7 = (
        root / "docs" / "section-1" / "page-4.md",
        root / "docs" / "section-1" / "page-7.md",
    )
    originals = page_4.read_text(), page_7.read_text()
    page_4.write_text(originals[0].replace("page-5.md", "page-50.md"))  # now broken
    page_7.write_text(originals[1] + "\nWritten by a build that failed.\n")
    with pytest.raises(DocsBuildError, match=r"page-50\.md"):
        cached_build(root, cache)

    page_4.write_text(originals[0])  # both as the last good build had them: the
    page_7.write_text(originals[1])  # failed build's files must not be kept
    assert cached_build(root, cache) == fresh_build(root, tmp_path / "full-1")

    (root / "docs" / "section-2" / "page-5.md").unlink()
    page_4.write_text(originals[0].replace("section-2/page-5.md", "section-2/page-8.md"))
    last = cached_build(root, cache)
    assert "section-2/page-5/index.html" not in last
    assert last == fresh_build(root, tmp_path / "full-2")


def test_a_cached_build_writes_only_its_own_site_directory(tmp_path: Path) -> None:
    root = write_site(tmp_path / "repo", CONFIG, pages())
    cache = RenderCache(tmp_path / "cache" / "cached")
    with pytest.raises(ValueError, match="writes"):
        build_site(root, read_site_config(root), tmp_path / "elsewhere", cache=cache)


def test_unchanged_files_are_not_read_again_and_a_changed_one_is_whatever_its_times_say(
    tmp_path: Path,
) -> None:
    site, memo = tmp_path / "site", tmp_path / "digests.json"
    (site / "a").mkdir(parents=True)
    (site / "a" / "page.html").write_text("first")
    (site / "style.css").write_text("body {}")
    (site / "a" / "passwd").symlink_to("/etc/passwd")  # never published
    first = _local_files(site, memo)
    assert _local_files(site, memo) == first == _local_files(site)
    assert set(first) == {"a/page.html", "style.css"}

    page = site / "a" / "page.html"
    stamp = page.stat()
    page.write_text("other")  # same size, and its modification time put back
    os.utime(page, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    second = _local_files(site, memo)
    assert second["a/page.html"] != first["a/page.html"]
    assert second["a/page.html"] == _local_files(site)["a/page.html"]
    assert second["style.css"] == first["style.css"]


def entry(name: str, at: int) -> VersionEntry:
    return VersionEntry(name=name, commit=name, ref=name, build_timestamp=at, commit_timestamp=at)


def publish_version(store: LocalStore, site: Path, name: str, at: int) -> tuple[bool, set[str]]:
    """One version of ``site`` as publish-docs records it; whether it replaced one, and the objects."""
    digests = {rel: d.sha256 for rel, d in _local_files(site).items()}
    put_version(store, "svc", version_prefix("svc", name), site, digests)
    versions, replaced = write_version_entry(store, "svc", entry(name, at))
    prune_versions(store, "svc", 5, versions=versions, collect=replaced)
    return replaced, {k.rsplit("/", 1)[1] for k in store.keys(objects_prefix("svc"))}


def test_a_republished_version_drops_the_files_only_its_old_manifest_named(
    tmp_path: Path,
) -> None:
    store, site = LocalStore(tmp_path / "store"), tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("one")
    replaced, first = publish_version(store, site, "v1", 1)
    (site / "index.html").write_text("two")
    replaced_2, second = publish_version(store, site, "v2", 2)
    assert not replaced and not replaced_2 and first < second  # both versions keep theirs

    (site / "index.html").write_text("three")
    replaced_3, third = publish_version(store, site, "v2", 3)  # the same label again
    assert replaced_3 and third == first | {_local_files(site)["index.html"].sha256}
