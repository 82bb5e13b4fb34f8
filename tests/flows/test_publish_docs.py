"""publish-docs: a template service's site, published in TechDocs' layout, incrementally.

Each test runs the real flow on the session's Prefect server against a fresh
platform (its own git server and artifact store), with real mkdocs builds.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from uuid import UUID

import boto3
import pytest

from blocks import ArtifactStore
from blocks.s3 import S3Connection
from flows.publish_docs import publish_docs
from slipway.errors import DocsBuildError
from tasks.storage import LocalStore, S3Store
from tasks.techdocs import DocsReader
from tests.conftest import Platform
from tests.flows.docs_helpers import (
    GUIDE,
    make_service,
    render_template_service,
    store_files,
    write_site,
)

SITE = "techdocs/default/component/"
METADATA_KEYS = {"site_name", "site_description", "build_timestamp", "files", "etag"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_template_service(tmp_path_factory.mktemp("template") / "svc")


def run_logs(flow_run_id: UUID, needle: str, timeout: float = 20) -> str:
    """The run's logs as text, once ``needle`` is among them (they are shipped in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline, text = time.monotonic() + timeout, ""
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200,
                offset=0,
                sort=LogSort.TIMESTAMP_ASC,
            )
            text = "\n".join(log.message for log in logs)
            if needle in text:
                return text
            time.sleep(0.3)
    return text


def test_publish_to_local_store_writes_techdocs_layout_metadata_and_a_version(
    platform: Platform, template_service: Path, tmp_path: Path
) -> None:
    service = make_service("payments", template_service, tmp_path, description="Payments.")

    result = publish_docs(service="payments")

    root = platform.home.artifacts
    keys = store_files(root)
    live = f"{SITE}payments/"
    version = f"{live}versions/{result.version}/"
    assert result.version == result.commit == git_head(service.work)
    assert f"{live}index.html" in keys and f"{live}guide/index.html" in keys
    assert f"{live}search/search_index.json" in keys
    # A version is a manifest over files stored once, served as if it were a copy.
    assert {k for k in keys if k.startswith(version)} == {
        f"{version}manifest.json",
        f"{version}techdocs_metadata.json",
    }
    reader = DocsReader(LocalStore(root))
    for page in ("index.html", "guide/index.html", "search/search_index.json"):
        assert reader.get(version + page) == (root / live / page).read_bytes()
    metadata = json.loads((root / live / "techdocs_metadata.json").read_text())
    assert set(metadata) >= METADATA_KEYS
    assert metadata["site_name"] == "template-svc"
    assert metadata["site_description"] == "A template service."
    assert metadata["etag"] == result.commit
    assert isinstance(metadata["build_timestamp"], int)
    site_files = {k[len(live) :] for k in keys if k.startswith(live) and "/versions/" not in k}
    assert set(metadata["files"]) == site_files - {"versions/index.json"}
    objects = [k for k in keys if k.startswith("techdocs/.objects/payments/")]
    assert len(objects) == len(
        {
            (root / live / f).read_bytes()
            for f in site_files - {"techdocs_metadata.json", "versions/index.json"}
        }
    )
    index = json.loads((root / live / "versions" / "index.json").read_text())
    assert [v["name"] for v in index["versions"]] == [result.version]
    assert result.path == "/default/component/payments/"


def test_second_publish_with_one_page_changed_uploads_only_that_page(
    platform: Platform, template_service: Path, tmp_path: Path
) -> None:
    service = make_service("ledger", template_service, tmp_path)
    first = publish_docs(service="ledger")
    root, live = platform.home.artifacts, f"{SITE}ledger/"
    before = store_files(root)

    def edit(tree: Path) -> None:
        (tree / "docs" / "guide.md").write_text(GUIDE + "\nA new paragraph.\n")

    second_sha = service.commit(edit, "docs: extend the guide")
    second = publish_docs(service="ledger")
    after = store_files(root)

    rewritten = {
        k[len(live) :]
        for k, inode in after.items()
        if k.startswith(live) and "/versions/" not in k and before.get(k) != inode
    }
    # The page, and the two site-wide files that hold its text and the build.
    assert rewritten == {"guide/index.html", "search/search_index.json", "techdocs_metadata.json"}
    assert second.live is not None and set(second.live.uploaded) == rewritten
    assert second.live.deleted == ()
    # The new version sends the same two files; every other one is shared with the first.
    assert second.version_copy is not None
    assert set(second.version_copy.uploaded) == {
        "guide/index.html",
        "search/search_index.json",
        "manifest.json",
        "techdocs_metadata.json",
    }
    new_objects = {k for k in after if k.startswith("techdocs/.objects/") and k not in before}
    assert len(new_objects) == 2
    reader = DocsReader(LocalStore(root))
    old_guide = reader.get(f"{live}versions/{first.version}/guide/index.html")
    new_guide = reader.get(f"{live}versions/{second.version}/guide/index.html")
    assert b"A new paragraph." in new_guide and b"A new paragraph." not in old_guide
    assert second.commit == second_sha and {first.version, second.version} <= {
        k[len(live) :].split("/")[1] for k in after if k.startswith(f"{live}versions/")
    }

    # The same commit again: nothing built, nothing sent.
    again = publish_docs(service="ledger")
    assert again.live is None and again.version_copy is None
    assert store_files(root) == after

    # An older commit only adds its version; the portal keeps showing the newer one.
    older = publish_docs(service="ledger", commit=first.commit)
    assert older.live is None and older.note
    metadata = json.loads((root / live / "techdocs_metadata.json").read_text())
    assert metadata["etag"] == second_sha


def test_publish_to_s3_on_moto_writes_the_same_layout_and_removes_deleted_pages(
    platform: Platform, template_service: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    secret = "docs-test-secret-Zq81"
    connection = S3Connection(
        endpoint_url=moto_endpoint,
        access_key_id="AKIADOCSTEST",
        secret_access_key=secret,
        path_style=True,
    )
    bucket = f"docs-{uuid.uuid4().hex[:12]}"
    S3Store(bucket=bucket, prefix="", connection=connection).ensure_bucket()
    ArtifactStore(kind="s3", bucket=bucket, prefix="slipway", s3=connection).save(
        "default", overwrite=True
    )
    service = make_service("search", template_service, tmp_path)

    first = publish_docs(service="search")

    client = boto3.client("s3", **connection.client_kwargs())
    live = f"slipway/{SITE}search/"

    def keys() -> dict[str, str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=live)
        return {o["Key"][len(live) :]: o["ETag"] for p in pages for o in p.get("Contents", [])}

    stored = keys()
    assert {"index.html", "guide/index.html", "techdocs_metadata.json"} <= set(stored)
    assert f"versions/{first.version}/manifest.json" in stored
    reader = DocsReader(S3Store(bucket=bucket, prefix="slipway", connection=connection))
    body = client.get_object(Bucket=bucket, Key=f"{live}techdocs_metadata.json")
    metadata = json.loads(body["Body"].read())
    assert set(metadata) >= METADATA_KEYS and metadata["etag"] == first.commit
    page = client.head_object(Bucket=bucket, Key=f"{live}index.html")
    assert page["ContentType"] == "text/html"

    def drop_guide(tree: Path) -> None:
        (tree / "docs" / "guide.md").unlink()
        config = tree / "mkdocs.yml"
        config.write_text(config.read_text().replace("  - Guide: guide.md\n", ""))

    service.commit(drop_guide, "docs: remove the guide")
    second = publish_docs(service="search")

    stored = keys()
    assert second.live is not None and "guide/index.html" in second.live.deleted
    assert "guide/index.html" not in stored
    old_guide = f"{SITE}search/versions/{first.version}/guide/index.html"
    assert b"Guide" in reader.get(old_guide)  # old versions keep it
    assert "index.html" in stored


def test_broken_link_fails_the_strict_build_with_the_warning_in_the_run(
    platform: Platform, template_service: Path, tmp_path: Path
) -> None:
    service = make_service("broken", template_service, tmp_path)
    service.commit(
        lambda tree: (tree / "docs" / "guide.md").write_text("See [the API](api.md).\n"),
        "docs: link a page that does not exist",
    )

    state = publish_docs(service="broken", return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DocsBuildError)
    assert "api.md" in str(error) and "strict" in str(error)
    logs = run_logs(state.state_details.flow_run_id, "api.md")
    assert "contains a link 'api.md'" in logs
    assert not (platform.home.artifacts / "techdocs").exists()  # nothing published


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("docs_dir: ../../etc\n", "points outside the repository"),
        ("plugins:\n  - techdocs-core\n", "'techdocs-core' is not installed"),
        ("plugins:\n  - not-a-real-plugin\n", "plugin 'not-a-real-plugin' is not allowed"),
    ],
    ids=["docs-dir-outside", "plugin-not-installed", "plugin-not-allowed"],
)
def test_unsafe_or_unbuildable_config_is_refused_and_nothing_is_published(
    platform: Platform, template_service: Path, tmp_path: Path, change: str, expected: str
) -> None:
    service = make_service("refused", template_service, tmp_path)
    service.commit(
        lambda tree: (tree / "mkdocs.yml").write_text(
            (tree / "mkdocs.yml").read_text().replace("docs_dir: docs\n", "") + change
        ),
        "docs: a bad configuration",
    )

    state = publish_docs(service="refused", return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DocsBuildError) and expected in str(error)
    assert "Fix:" in str(error)
    assert not (platform.home.artifacts / "techdocs").exists()


def test_a_page_that_includes_etc_passwd_fails_closed_and_the_fixed_commit_publishes(
    platform: Platform, template_service: Path, tmp_path: Path
) -> None:
    service = make_service("attacked", template_service, tmp_path)

    def attack(tree: Path) -> None:
        config = tree / "mkdocs.yml"
        config.write_text(
            config.read_text()
            + "markdown_extensions:\n  - pymdownx.snippets:\n      base_path: [docs]\n"
        )
        (tree / "docs" / "index.md").write_text('# Home\n\n--8<-- "/etc/passwd"\n')

    service.commit(attack, "docs: show the platform's users")
    state = publish_docs(service="attacked", return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DocsBuildError)
    assert "docs/index.md line 3 includes '/etc/passwd'" in str(error) and "Fix:" in str(error)
    assert not (platform.home.artifacts / "techdocs").exists()

    service.commit(
        lambda tree: (tree / "docs" / "index.md").write_text("# Home\n\nNo secrets.\n"),
        "docs: a plain page",
    )
    result = publish_docs(service="attacked")
    page = platform.home.artifacts / SITE / "attacked" / "index.html"
    assert result.commit == git_head(service.work) and "No secrets." in page.read_text()


def test_prefect_yaml_runs_publish_docs_on_default_branch_pushes_that_change_docs() -> None:
    from deployments.serve import declared_deployments
    from deployments.webhooks import Provider, PushEvent, push_event

    declared = {d.name: d for d in declared_deployments(REPO)}
    assert declared["publish-docs"].entrypoint == "flows/publish_docs.py:publish_docs"
    (trigger,) = declared["publish-docs"].config.deployment_triggers()
    assert trigger.name == "publish-docs__automation_1"
    assert trigger.expect == {"slipway.git.push"}
    assert trigger.parameters == {
        "service": "{{ event.payload.service }}",
        "commit": "{{ event.payload.after }}",
    }

    def labels(paths: tuple[str, ...], ref: str = "refs/heads/main") -> dict[str, str]:
        push = PushEvent("api", ref, "0" * 40, "1" * 40, "dev", paths, deleted=False)
        event = push_event(Provider.GITHUB, "k-1", "d-1", push, default_branch="main")
        resource: dict[str, str] = event["resource"]
        return resource

    def fires(resource: dict[str, str]) -> bool:
        wanted = {k: v if isinstance(v, list) else [v] for k, v in trigger.match.root.items()}
        wildcard = wanted.pop("prefect.resource.id")
        id_ok = any(resource["prefect.resource.id"].startswith(w.rstrip("*")) for w in wildcard)
        return id_ok and all(resource.get(k) in v for k, v in wanted.items())

    assert fires(labels(("docs/index.md",))) and fires(labels(("mkdocs.yml",)))
    assert not fires(labels(("app/server.py",)))
    assert not fires(labels(("docs/index.md",), ref="refs/heads/feature"))


def git_head(work: Path) -> str:
    import git

    return str(git.Repo(work).head.commit.hexsha)


# -- without Prefect: the configuration checks and the version store ----------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("site_name: x\nhooks:\n  - hooks.py\n", "declares hooks:"),
        ("site_name: !!python/object/apply:os.system ['true']\n", "YAML tag"),
        ("site_name: x\nfoo: !!python/name:os.system\n", "!!python/name:os.system"),
        ("site_name: x\ntheme:\n  name: nope\n", "theme 'nope' is not installed"),
        ("site_name: x\nINHERIT: ../outside.yml\n", "INHERIT '../outside.yml' points outside"),
        ("site_name: x\ndocs_dir: /etc\n", "docs_dir '/etc' points outside"),
        ("site_name: x\ndocs_dir: !ENV DOCS\n", "docs_dir must be a plain relative path"),
        (
            "site_name: x\nplugins:\n  search: {}\n  techdocs-core: {}\n",
            "'techdocs-core' is not installed",
        ),
    ],
    ids=[
        "hooks",
        "python-object",
        "python-name-outside-markdown",
        "theme-missing",
        "inherit-outside",
        "docs-dir-absolute",
        "docs-dir-env",
        "plugin-mapping-missing",
    ],
)
def test_config_that_could_escape_or_run_code_is_refused_before_mkdocs_runs(
    tmp_path: Path, config: str, expected: str
) -> None:
    from tasks.techdocs import read_site_config

    root = write_site(tmp_path / "repo", config)
    with pytest.raises(DocsBuildError, match="Fix:") as caught:
        read_site_config(root)
    assert expected in str(caught.value)


def test_a_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    from tasks.techdocs import read_site_config

    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    root = write_site(tmp_path / "repo", "site_name: x\n")
    (root / "docs" / "leak.md").symlink_to(secret)
    with pytest.raises(DocsBuildError, match=r"docs/leak\.md is a symlink out of the repository"):
        read_site_config(root)


def test_accepted_config_names_theme_plugins_and_the_markdown_tags_it_allows(
    tmp_path: Path,
) -> None:
    from tasks.techdocs import read_site_config

    config = (
        "site_name: Payments\nsite_description: Money.\ntheme:\n  name: material\n"
        "plugins:\n  - search\nmarkdown_extensions:\n  - pymdownx.superfences:\n"
        "      custom_fences:\n        - name: mermaid\n          class: mermaid\n"
        "          format: !!python/name:pymdownx.superfences.fence_code_format\n"
    )
    site = read_site_config(write_site(tmp_path / "repo", config))
    assert (site.site_name, site.site_description, site.theme) == ("Payments", "Money.", "material")
    assert site.plugins == ("search",) and site.docs_dir == (tmp_path / "repo" / "docs").resolve()


def test_a_missing_mkdocs_yml_says_how_to_add_docs(tmp_path: Path) -> None:
    from tasks.techdocs import read_site_config

    with pytest.raises(DocsBuildError, match=r"no mkdocs\.yml"):
        read_site_config(tmp_path)


def test_only_the_newest_versions_are_kept_and_their_files_removed(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from tasks.storage import LocalStore
    from tasks.techdocs import (
        BuiltSite,
        DocsSource,
        SiteConfig,
        publish_site,
        read_versions,
    )

    store = LocalStore(tmp_path / "store")
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "index.html").write_text("<h1>v</h1>")
    config = SiteConfig(tmp_path / "mkdocs.yml", "s", "", tmp_path, "mkdocs", ())
    site = BuiltSite(path=site_dir, config=config)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(4):
        source = DocsSource(f"{n:040x}", "main", f"v{n}", start + timedelta(days=n), f"key{n}")
        publish_site(store, "svc", site, source, keep_versions=2)
        time.sleep(0.002)  # distinct build timestamps

    assert [v.name for v in read_versions(store, "svc")] == ["v3", "v2"]
    kept = {o.key.split("/")[5] for o in store.list(f"{SITE}svc/versions/")}
    assert kept == {"v3", "v2", "index.json"}
    (site_dir / "index.html").write_text("<h1>w</h1>")  # v4 and v5 share a new file
    for n in (4, 5):
        source = DocsSource(f"{n:040x}", "main", f"v{n}", start + timedelta(days=n), f"key{n}")
        publish_site(store, "svc", site, source, keep_versions=2)
        time.sleep(0.002)
    shared = store.list("techdocs/.objects/svc/")
    assert len(shared) == 1  # the first file went with the last version that named it
    assert DocsReader(store).get(f"{SITE}svc/versions/v4/index.html") == b"<h1>w</h1>"


def test_a_tag_names_its_version_and_anything_else_the_sha(tmp_path: Path) -> None:
    import git

    from blocks import GitServer
    from tasks.git import checkout, create_repository, repository_url
    from tasks.techdocs import describe_source, is_ancestor

    (tmp_path / "git").mkdir()
    server = GitServer(provider="local", root=tmp_path / "git")
    create_repository(server, "tagged")
    work = git.Repo.clone_from(repository_url(server, "tagged"), tmp_path / "work")
    (tmp_path / "work" / "README.md").write_text("one\n")
    work.git.add("--all")
    first = work.index.commit("one").hexsha
    work.create_tag("v1.0")
    (tmp_path / "work" / "README.md").write_text("two\n")
    work.git.add("--all")
    second = work.index.commit("two").hexsha
    work.remote("origin").push(["HEAD:refs/heads/main", "refs/tags/v1.0"]).raise_if_error()

    with checkout(server, "tagged", "v1.0") as co:
        tagged = describe_source(co)
        assert is_ancestor(co, first, second) and not is_ancestor(co, second, first)
    with checkout(server, "tagged") as co:
        tip = describe_source(co)

    assert (tagged.sha, tagged.label) == (first, "v1.0")
    assert (tip.sha, tip.label) == (second, second)
    assert tagged.build_key != tip.build_key  # different trees


def test_the_portal_serves_each_version_from_its_manifest_and_an_old_full_copy_as_it_is(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from deployments.portal.app import _docs_file
    from tasks.techdocs import BuiltSite, DocsSource, SiteConfig, publish_site

    store = LocalStore(tmp_path / "store")
    site_dir = tmp_path / "site"
    (site_dir / "guide").mkdir(parents=True)
    config = SiteConfig(tmp_path / "mkdocs.yml", "s", "", tmp_path, "mkdocs", ())
    for n, text in enumerate(("first", "second")):
        (site_dir / "guide" / "index.html").write_text(f"<p>{text}</p>")
        (site_dir / "index.html").write_text("<h1>home</h1>")
        source = DocsSource(f"{n:040x}", "main", f"v{n}", datetime.now(UTC), f"key{n}")
        publish_site(store, "svc", BuiltSite(site_dir, config), source, keep_versions=5)
    store.put(f"{SITE}svc/versions/v0-old/guide/index.html", b"<p>a full copy</p>")
    reader = DocsReader(store)

    def body(path: str) -> bytes:
        response = _docs_file(reader, path)
        assert response.status_code == 200, path
        return bytes(response.body)

    assert body("/default/component/svc/versions/v0/guide/") == b"<p>first</p>"
    assert body("/default/component/svc/versions/v1/guide/index.html") == b"<p>second</p>"
    assert body("/default/component/svc/guide/") == b"<p>second</p>"
    assert body("/default/component/svc/versions/v0-old/guide/") == b"<p>a full copy</p>"
    moved = _docs_file(reader, "/default/component/svc/versions/v0/guide")
    assert moved.status_code == 301 and moved.headers["location"].endswith("/v0/guide/")
    assert _docs_file(reader, "/default/component/svc/versions/v9/guide/").status_code == 404
    assert _docs_file(reader, "/default/component/svc/versions/v0/manifest.json").status_code == 200
