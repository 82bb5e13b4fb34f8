"""The catalog over a real bare git repository: entries, history, and concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import git
import pytest
import yaml

from blocks import GitServer
from slipway.errors import CatalogError, ServiceNotFound
from tasks.catalog import CATALOG_REPOSITORY, Catalog, CatalogEntry, catalog_rows


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(GitServer(provider="local", root=tmp_path / "git"))


def entry(name: str = "payments-api", **fields: object) -> CatalogEntry:
    values: dict[str, object] = {
        "name": name,
        "owner": "group:payments",
        "port": 8101,
        "repository": f"/srv/git/{name}.git",
        **fields,
    }
    return CatalogEntry.model_validate(values)


def test_an_entry_is_a_backstage_component_that_reads_back_unchanged(catalog: Catalog) -> None:
    original = entry(
        description="quotes \" and '\nnewline {{ x }} ${y}",
        environments=("dev", "prod"),
        template_version="1.0.0",
        outputs={"dev": {"url": "http://127.0.0.1:8101"}},
    )
    sha = catalog.save(original, message="Onboard payments-api")
    assert sha is not None
    blob = git.Repo(catalog.url).commit(sha).tree / "payments-api" / "catalog-info.yaml"
    document = yaml.safe_load(blob.data_stream.read())
    assert document["apiVersion"] == "backstage.io/v1alpha1" and document["kind"] == "Component"
    assert document["spec"] == {
        "type": "service",
        "lifecycle": "experimental",
        "owner": "group:payments",
    }
    notes = document["metadata"]["annotations"]
    assert notes["slipway.dev/port"] == "8101"
    assert notes["slipway.dev/environments"] == "dev,prod"
    assert all(key.startswith("slipway.dev/") for key in notes)
    assert catalog.get("payments-api") == original


def test_saving_the_same_entry_again_makes_no_commit(catalog: Catalog) -> None:
    assert catalog.save(entry(), message="first") is not None
    assert catalog.save(entry(), message="again") is None
    assert [c.message for c in catalog.history()] == ["first"]


def test_history_is_the_git_log_of_one_service_or_all(catalog: Catalog) -> None:
    catalog.save(entry("a"), message="Onboard a")
    catalog.save(entry("b"), message="Onboard b")
    catalog.save(entry("a", description="new"), message="Update a")
    assert [c.message for c in catalog.history("a")] == ["Update a", "Onboard a"]
    assert [c.message for c in catalog.history()] == ["Update a", "Onboard b", "Onboard a"]
    assert catalog.names() == frozenset({"a", "b"})


def test_a_missing_service_names_the_known_ones(catalog: Catalog) -> None:
    catalog.save(entry("known"), message="Onboard known")
    with pytest.raises(ServiceNotFound, match=r"no service 'ghost'.*known: known"):
        catalog.get("ghost")
    assert catalog.find("ghost") is None


def test_remove_takes_the_entry_out_and_is_a_no_op_when_absent(catalog: Catalog) -> None:
    catalog.save(entry("gone"), message="Onboard gone")
    assert catalog.remove("gone", message="Remove gone") is not None
    assert catalog.entries() == [] and catalog.remove("gone", message="again") is None


def test_concurrent_writers_lose_nothing(catalog: Catalog) -> None:
    catalog.save(entry("counter", port=1024), message="start")
    errors: list[BaseException] = []

    def bump(i: int) -> None:
        try:
            catalog.save(entry(f"svc-{i}"), message=f"Onboard svc-{i}")
            catalog.update(
                "counter",
                lambda e: e.model_copy(update={"port": e.port + 1}),
                message=f"bump {i}",
            )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(catalog.entries()) == 9
    assert catalog.get("counter").port == 1024 + 8  # every read-modify-write landed


def test_a_hand_edited_broken_entry_is_reported_with_its_path(
    catalog: Catalog, tmp_path: Path
) -> None:
    catalog.ensure()
    work = tmp_path / "work"
    repo = git.Repo.clone_from(catalog.url, work)
    (work / "broken").mkdir()
    (work / "broken" / "catalog-info.yaml").write_text("apiVersion: v1\nkind: Pod\n")
    repo.git.add("--all")
    repo.git.commit("-m", "by hand", author="Dev <dev@example.invalid>")
    repo.git.push("origin", "HEAD:main")
    with pytest.raises(CatalogError, match=r"broken/catalog-info\.yaml is not a valid"):
        catalog.entries()


def test_rows_for_the_table_artifact(catalog: Catalog) -> None:
    rows = catalog_rows([entry(description="First line\nsecond")])
    assert rows == [
        {
            "service": "payments-api",
            "owner": "group:payments",
            "lifecycle": "experimental",
            "port": "8101",
            "environments": "dev",
            "template": "python-service",
            "description": "First line",
        }
    ]


def test_the_catalog_lives_in_its_own_repository(catalog: Catalog, tmp_path: Path) -> None:
    catalog.save(entry(), message="Onboard")
    assert Path(catalog.url) == tmp_path / "git" / f"{CATALOG_REPOSITORY}.git"


def test_environment_records_written_as_strings_are_still_read() -> None:
    import json
    from datetime import UTC, datetime

    from slipway.errors import ConfigurationError

    document = entry().to_document()
    notes = document["metadata"]["annotations"]
    notes["slipway.dev/outputs.dev"] = json.dumps(
        {
            "port": "8123",
            "replicas": "2",
            "env_vars": '{"MODE": "blue"}',
            "container_name": "payments-api-dev",
            "token": "(sensitive)",
            "variables": '{"replicas": 2}',
            "state": "/s/payments-api/dev.tfstate",
            "expires_at": "2026-01-02T03:04:05+00:00",
        }
    )
    notes["slipway.dev/outputs.qa"] = json.dumps({"port": "x", "variables": "{not json"})
    read = CatalogEntry.from_document(document)

    dev = read.outputs["dev"]
    assert (dev.port, dev.replicas, dev.env_vars) == (8123, 2, {"MODE": "blue"})
    assert dev.other == {"container_name": "payments-api-dev"} and dev.sensitive == ("token",)
    assert dev.applied_variables() == {"replicas": 2}
    assert dev.state == "/s/payments-api/dev.tfstate"
    assert dev.expires_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    qa = read.outputs["qa"]
    assert qa.port is None and qa.other == {"port": "x"}
    with pytest.raises(ConfigurationError, match="no readable `variables`"):
        qa.applied_variables()
    assert CatalogEntry.from_document(yaml.safe_load(read.to_yaml())) == read  # typed from now on
