"""A service's docs build is untrusted: the allow-list refuses, the sandbox confines.

The configuration checks run without mkdocs; the builds run the real mkdocs
inside the real sandbox (bubblewrap), against a real listener on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.errors import DocsBuildError
from tasks.techdocs import build_site, read_site_config
from tests.conftest import LOOPBACK_SECRET, Listener
from tests.flows.docs_helpers import write_site as write_docs

SNIPPETS = "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: [docs]\n"
OUTSIDE = "outside-the-repository: do not publish"


def write_site(root: Path, config: str, pages: dict[str, str] | None = None) -> Path:
    return write_docs(root, f"site_name: Payments\n{config}", pages)


def site_text(site: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in site.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "markdown_extensions:\n  - pymdownx.b64\n",
            "markdown extension 'pymdownx.b64' is not allowed",
        ),
        ("markdown_extensions:\n  plantuml_markdown: {}\n", "'plantuml_markdown' is not allowed"),
        (
            "theme: material\nplugins:\n  - material/privacy\n",
            "plugin 'material/privacy' is not allowed",
        ),
        ("theme: material\nplugins:\n  - social\n", "plugin 'social' is not allowed"),
        ("plugins:\n  - render_swagger\n", "plugin 'render_swagger' is not allowed"),
        (
            "theme: material\nplugins:\n  - blog:\n      authors_file: /etc/passwd\n",
            "authors_file: '/etc/passwd' points outside the docs folder",
        ),
        ("markdown_extensions:\n  - pymdownx.snippets\n", "set base_path: [docs]"),
        (
            "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: ['/']\n",
            "base_path '/' is outside the docs folder",
        ),
        (
            "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: ['..']\n",
            "base_path '..' is outside the docs folder",
        ),
        (
            "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: [.]\n",
            "base_path '.' is outside the docs folder",
        ),
        (SNIPPETS + "      url_download: true\n", "url_download: true, which would fetch URLs"),
        (SNIPPETS + "      restrict_base_path: false\n", "restrict_base_path: false"),
    ],
    ids=[
        "b64",
        "plantuml",
        "privacy",
        "social",
        "not-a-docs-plugin",
        "blog-path-out",
        "snippets-from-root",
        "snippets-base-root",
        "snippets-base-parent",
        "snippets-base-repository",
        "snippets-url-download",
        "snippets-unrestricted",
    ],
)
def test_an_extension_or_plugin_off_the_allow_list_is_refused_with_its_name_and_the_fix(
    tmp_path: Path, config: str, expected: str
) -> None:
    root = write_site(tmp_path / "repo", config)
    with pytest.raises(DocsBuildError, match="Fix: ") as caught:
        read_site_config(root)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ('# Home\n\n--8<-- "/etc/passwd"\n', "line 3 includes '/etc/passwd'"),
        (
            "# Home\n\n--8<-- '../../secret.txt'\n",
            "'../../secret.txt' with pymdownx.snippets, a file outside",
        ),
        (
            "# Home\n\n-8<-\nparts/a.md\n/etc/shadow:1:3\n-8<-\n",
            "line 5 includes '/etc/shadow:1:3'",
        ),
        ('--8<-- "http://127.0.0.1:4200/api/block_documents"\n', "a URL (snippets never downloads"),
    ],
    ids=["etc-passwd", "outside-repository", "block-form", "loopback-url"],
)
def test_a_page_that_includes_a_file_outside_docs_or_a_url_is_refused_naming_the_page(
    tmp_path: Path, page: str, expected: str
) -> None:
    root = write_site(tmp_path / "repo", SNIPPETS, {"index.md": "# Home\n", "guide/deep.md": page})
    with pytest.raises(DocsBuildError, match=r"docs/guide/deep\.md line \d+ includes") as caught:
        read_site_config(root)
    message = str(caught.value)
    assert expected in message and "Fix: include only files inside the docs folder" in message


def test_allowed_extensions_build_and_snippets_read_inside_the_docs_folder(tmp_path: Path) -> None:
    config = (
        "theme:\n  name: material\n  font: false\nplugins:\n  - search\n"
        + SNIPPETS
        + "  - admonition\n  - pymdownx.superfences\n  - toc:\n      permalink: true\n"
    )
    pages = {
        "index.md": '# Home\n\n--8<-- "parts/shared.md"\n\n;--8<-- "/etc/passwd"\n',
        "parts/shared.md": "Shared paragraph from a snippet.\n",
    }
    root = write_site(tmp_path / "repo", config, pages)
    site = read_site_config(root)
    assert site.extensions[0] == "pymdownx.snippets" and site.plugins == ("search",)
    built = build_site(root, site, tmp_path / "site")
    assert "Shared paragraph from a snippet." in (built.path / "index.html").read_text()


def test_a_build_that_gets_past_the_checks_still_reads_no_file_and_reaches_no_url(
    tmp_path: Path, loopback_listener: Listener
) -> None:
    """The checks are not the isolation: a config changed after them meets the sandbox."""
    (tmp_path / "secret.txt").write_text(OUTSIDE)
    root = write_site(tmp_path / "repo", SNIPPETS)
    checked = read_site_config(root)
    (root / "mkdocs.yml").write_text(
        "site_name: Payments\nmarkdown_extensions:\n  - pymdownx.snippets:\n"
        "      base_path: ['/', '..', '../..']\n      restrict_base_path: false\n"
        "      url_download: true\n"
    )
    (root / "docs" / "index.md").write_text(
        '# Home\n\n--8<-- "/etc/passwd"\n\n--8<-- "secret.txt"\n\n'
        f'--8<-- "{loopback_listener.url}/api/secret"\n'
    )
    try:
        built = build_site(root, checked, tmp_path / "site")
        text = site_text(built.path)
    except DocsBuildError as e:  # snippets may report what it could not reach
        text = str(e) + site_text(tmp_path / "site")
    assert "root:x:0:0" not in text
    assert OUTSIDE not in text
    assert LOOPBACK_SECRET not in text
    assert loopback_listener.hits == []


def test_a_page_with_a_script_is_built_as_text_and_the_script_never_runs(
    tmp_path: Path, loopback_listener: Listener
) -> None:
    script = f"<script>fetch('{loopback_listener.url}/ran');</script>"
    root = write_site(tmp_path / "repo", "", {"index.md": f"# Home\n\n{script}\n"})
    built = build_site(root, read_site_config(root), tmp_path / "site")
    assert script in (built.path / "index.html").read_text()  # served under the portal's CSP
    assert loopback_listener.hits == []


def test_env_tags_see_no_platform_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_do_not_publish")
    config = "site_description: !ENV [PREFECT_API_KEY, 'no key here']\n"
    root = write_site(tmp_path / "repo", config)
    built = build_site(root, read_site_config(root), tmp_path / "site")
    page = (built.path / "index.html").read_text()
    assert "no key here" in page and "pnu_do_not_publish" not in page
