"""The catalog's kinds over a real bare repository: Groups, Systems, APIs, Resources, Location."""

from __future__ import annotations

import re
from pathlib import Path

import git
import pytest
import yaml

from blocks import GitServer
from slipway.errors import InvalidRequest
from tasks.catalog import Catalog
from tasks.catalog.entities import ApiEntity, GroupEntity, SystemEntity, resource_name
from tasks.catalog.model import CatalogModel, validate
from tasks.catalog.refs import EntityRef
from tests.tasks.test_catalog import entry

BACKSTAGE_NAME = re.compile(r"^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$")


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(GitServer(provider="local", root=tmp_path / "git"))


def tree_documents(catalog: Catalog) -> dict[str, list[dict[str, object]]]:
    """Every YAML file at the catalog's tip, parsed, by path."""
    repo = git.Repo(catalog.url)
    found = {}
    for blob in repo.commit(catalog.tip()).tree.traverse():
        if blob.type == "blob":
            found[blob.path] = list(yaml.safe_load_all(blob.data_stream.read()))
    return found


def test_each_environment_is_a_resource_with_its_outputs_and_the_location_lists_every_file(
    catalog: Catalog,
) -> None:
    outputs = {
        "dev": {"url": "http://127.0.0.1:8101", "container": "payments-api-dev"},
        "preview-fix-login": {"url": "http://127.0.0.1:8150", "expires_at": "2030-01-01T00:00:00"},
    }
    catalog.save(entry(environments=("dev", "prod"), outputs=outputs), message="onboard")

    files = tree_documents(catalog)
    resources = {d["metadata"]["name"]: d for d in files["payments-api/environments.yaml"]}  # type: ignore[index]
    assert set(resources) == {
        "payments-api.dev",
        "payments-api.prod",
        "payments-api.preview-fix-login",
    }
    dev = resources["payments-api.dev"]
    assert dev["kind"] == "Resource"
    assert dev["spec"] == {
        "type": "environment",
        "owner": "group:payments",
        "dependencyOf": ["component:payments-api"],
    }
    notes = dev["metadata"]["annotations"]  # type: ignore[index]
    assert yaml.safe_load(notes["slipway.dev/outputs"]) == outputs["dev"]
    assert notes["slipway.dev/provisioned"] == "true"
    assert (
        resources["payments-api.prod"]["metadata"]["annotations"]["slipway.dev/provisioned"]
        == "false"
    )  # type: ignore[index]
    (location,) = files["catalog-info.yaml"]
    assert location["kind"] == "Location"
    targets = location["spec"]["targets"]  # type: ignore[index]
    assert targets == ["./payments-api/catalog-info.yaml", "./payments-api/environments.yaml"]
    for path, documents in files.items():
        for document in documents:
            assert BACKSTAGE_NAME.fullmatch(document["metadata"]["name"]), path  # type: ignore[index]


def test_a_destroyed_environment_leaves_the_resources_and_a_removed_service_the_location(
    catalog: Catalog,
) -> None:
    catalog.save(entry(outputs={"dev": {"url": "u"}, "preview-a": {"url": "v"}}), message="onboard")
    catalog.save(entry(name="billing"), message="onboard billing")
    catalog.update(
        "payments-api",
        lambda e: e.model_copy(update={"outputs": {"dev": e.outputs["dev"]}}),
        message="destroy preview-a",
    )
    files = tree_documents(catalog)
    names = [d["metadata"]["name"] for d in files["payments-api/environments.yaml"]]  # type: ignore[index]
    assert names == ["payments-api.dev"]

    catalog.remove("billing", message="remove billing")
    files = tree_documents(catalog)
    assert not any(path.startswith("billing/") for path in files)
    targets = files["catalog-info.yaml"][0]["spec"]["targets"]  # type: ignore[index]
    assert all("billing" not in t for t in targets)
    # Every target is a file of the repository: Backstage finds each one.
    assert {t.removeprefix("./") for t in targets} == set(files) - {"catalog-info.yaml"}


def test_groups_systems_and_apis_read_back_and_relations_resolve(catalog: Catalog) -> None:
    model = CatalogModel(catalog)
    group = GroupEntity(
        name="payments", title="Payments", members=("bob", "alice"), approvers=("alice",)
    )
    system = SystemEntity(name="shop", owner="payments", description="The web shop.")
    api = ApiEntity(name="payments-http", owner="group:payments", definition="openapi: 3.0.0\n")
    for entity in (group, system, api):
        model.save(entity, message=f"add {entity.name}")
    catalog.save(
        entry(system="shop", provides_apis=("payments-http",), depends_on=("component:billing",)),
        message="onboard",
    )
    catalog.save(entry(name="billing", environments=("dev",)), message="billing")

    snapshot = model.read()
    assert snapshot.group("payments") == group
    assert group.members == ("alice", "bob")  # sorted, deduplicated
    assert snapshot.systems == (system,) and system.owner == "group:payments"
    assert snapshot.apis == (api,)
    assert [c.name for c in snapshot.owned_by("payments")] == ["billing", "payments-api"]
    document = tree_documents(catalog)["payments-api/catalog-info.yaml"][0]
    assert document["spec"]["system"] == "system:shop"  # type: ignore[index]
    assert document["spec"]["providesApis"] == ["api:payments-http"]  # type: ignore[index]
    assert document["spec"]["dependsOn"] == ["component:billing"]  # type: ignore[index]
    assert validate(snapshot, stale=model.stale_derived_files()) == []
    group_file = tree_documents(catalog)["_groups/payments.yaml"][0]
    assert group_file["spec"]["members"] == ["alice", "bob"]  # type: ignore[index]
    assert group_file["metadata"]["annotations"] == {"slipway.dev/approvers": "alice"}  # type: ignore[index]


def test_validate_names_every_dangling_relation_with_the_command_that_fixes_it(
    catalog: Catalog,
) -> None:
    model = CatalogModel(catalog)
    model.save(GroupEntity(name="empty"), message="empty team")
    model.save(SystemEntity(name="shop", owner="group:nobody"), message="shop")
    catalog.save(
        entry(
            owner="group:ghosts",
            environments=("dev", "prod"),
            system="missing",
            consumes_apis=("nothing",),
            depends_on=("resource:payments-api.prod", "resource:other.dev"),
        ),
        message="onboard",
    )
    problems = {str(p) for p in validate(model.read())}
    assert problems == {
        "error: component:payments-api: owner group:ghosts is not in the catalog. "
        "Fix: slipway catalog group ghosts --member NAME",
        "error: component:payments-api: system system:missing is not in the catalog. "
        "Fix: slipway catalog system missing --owner group:TEAM",
        "error: component:payments-api: consumesApis api:nothing is not in the catalog. "
        "Fix: slipway catalog api nothing --owner group:TEAM --definition FILE",
        "error: component:payments-api: dependsOn resource:other.dev is not in the catalog. "
        "Fix: add resource:other.dev to the catalog, or drop the relation",
        "error: system:shop: owner group:nobody is not in the catalog. "
        "Fix: slipway catalog group nobody --member NAME",
        "warning: group:empty: has no members, so nobody can approve its changes. "
        "Fix: slipway catalog group empty --member NAME --approver NAME",
    }


def test_a_catalog_from_before_resources_is_stale_until_synced(catalog: Catalog) -> None:
    catalog.ensure()
    old = entry(environments=("dev",))
    # Written as the catalog was before: the entry alone, with plain git.
    work = git.Repo.clone_from(catalog.url, catalog.url + "-work")
    Path(work.working_dir, "payments-api").mkdir()
    Path(work.working_dir, "payments-api", "catalog-info.yaml").write_text(old.to_yaml())
    work.git.add("--all")
    work.index.commit("old layout")
    work.remote("origin").push("HEAD:refs/heads/main").raise_if_error()
    model = CatalogModel(catalog)

    stale = model.stale_derived_files()
    assert stale == ["catalog-info.yaml", "payments-api/environments.yaml"]
    assert any("out of date" in str(p) for p in validate(model.read(), stale=stale))
    assert model.sync() is not None
    assert model.stale_derived_files() == []
    assert model.sync() is None  # nothing left to do: no empty commit


def test_unreadable_entity_files_are_reported_and_the_rest_still_read(catalog: Catalog) -> None:
    model = CatalogModel(catalog)
    model.save(GroupEntity(name="payments", members=("alice",)), message="g")
    catalog.write({"_groups/broken.yaml": b"kind: Group\nmetadata: [\n"}, message="typo")
    snapshot = model.read()
    assert [g.name for g in snapshot.groups] == ["payments"]
    assert len(snapshot.unreadable) == 1 and "_groups/broken.yaml" in snapshot.unreadable[0]


def test_approvers_must_be_members_and_names_must_be_backstage_names() -> None:
    with pytest.raises(ValueError, match="approvers carol are not members"):
        GroupEntity(name="payments", members=("alice",), approvers=("carol",))
    with pytest.raises(ValueError, match="not a Backstage entity name"):
        GroupEntity(name="../etc")
    with pytest.raises(ValueError, match="not a Backstage entity name"):
        GroupEntity(name="a", members=("<script>",))


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("payments", "group", "group:payments"),
        ("group:payments", None, "group:payments"),
        ("Group:default/payments", None, "group:payments"),
        ("user:ops/alice", "group", "user:ops/alice"),
        ("resource:svc.prod", None, "resource:svc.prod"),
    ],
)
def test_references_are_kept_in_one_canonical_form(
    text: str, kind: str | None, expected: str
) -> None:
    assert str(EntityRef.parse(text, default_kind=kind)) == expected


@pytest.mark.parametrize("text", ["", "group:", "component:a b", "x:y/z/w", "billing"])
def test_a_reference_without_a_kind_or_a_valid_name_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        EntityRef.parse(text)


def test_long_service_and_environment_names_give_distinct_short_resource_names() -> None:
    service, environment = "s" * 60, "preview-" + "b" * 50
    first = resource_name(service, environment)
    second = resource_name(service, environment[:-1] + "c")
    assert len(first) <= 63 and BACKSTAGE_NAME.fullmatch(first)
    assert first != second
