"""The catalog's self-service flows and onboarding's new group, against real git and Prefect."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
import yaml

from blocks import GitServer
from flows.catalog import (
    EnvironmentRequest,
    Relations,
    add_environment,
    set_api,
    set_group,
    set_relations,
    set_system,
)
from flows.onboard_service import ServiceRequest, onboard_service
from slipway.errors import InvalidRequest, ServiceNotFound
from tasks.catalog import Catalog, CatalogEntry
from tasks.catalog.entities import ApiEntity, GroupEntity, SystemEntity
from tasks.catalog.model import CatalogModel, validate
from tasks.terraform.environments import BUNDLED_MODULE, resolve_variables
from tests.conftest import Platform
from tests.flows.test_onboard_service import freeze_pushes


def service(name: str = "payments-api") -> CatalogEntry:
    server = GitServer.load_default()
    entry = CatalogEntry(
        name=name,
        owner="group:payments",
        repository=str(server.root / f"{name}.git"),
        port=8101,
        environments=("dev", "prod"),
    )
    Catalog(server).save(entry, message=f"onboard {name}")
    return entry


def test_adding_staging_makes_it_an_environment_provisioning_accepts(platform: Platform) -> None:
    entry = service()
    with pytest.raises(InvalidRequest, match="catalog add-environment payments-api staging"):
        resolve_variables(entry, "staging", {}, BUNDLED_MODULE)

    started = add_environment(
        EnvironmentRequest(service="payments-api", environment="staging", provision=False)
    )

    assert started is None
    updated = Catalog.load_default().get("payments-api")
    assert updated.environments == ("dev", "prod", "staging")
    assert resolve_variables(updated, "staging", {}, BUNDLED_MODULE)["environment"] == "staging"
    resources = Catalog.load_default().files("payments-api")["payments-api/environments.yaml"]
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(resources)]
    assert names == ["payments-api.dev", "payments-api.prod", "payments-api.staging"]
    before = Catalog.load_default().tip()
    add_environment(
        EnvironmentRequest(service="payments-api", environment="staging", provision=False)
    )
    assert Catalog.load_default().tip() == before  # already there: nothing to commit


def test_provisioning_is_handed_to_its_deployment_or_skipped_with_the_reason(
    platform: Platform,
) -> None:
    service()
    handed = add_environment(EnvironmentRequest(service="payments-api", environment="qa"))
    assert handed is not None and handed.skipped == "no such deployment"


@pytest.mark.parametrize(
    ("request_", "error", "match"),
    [
        ({"service": "payments-api", "environment": "preview-x"}, InvalidRequest, "preview"),
        ({"service": "nothing", "environment": "staging"}, ServiceNotFound, "no service"),
    ],
)
def test_an_environment_that_cannot_be_added_is_refused_before_any_change(
    platform: Platform, request_: dict[str, str], error: type[Exception], match: str
) -> None:
    service()
    before = Catalog.load_default().tip()
    with pytest.raises(error, match=match):
        add_environment(EnvironmentRequest.model_validate({**request_, "provision": False}))
    assert Catalog.load_default().tip() == before


def test_the_form_refuses_names_that_are_not_labels() -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        EnvironmentRequest.model_validate({"service": "a", "environment": "Staging!"})


def test_teams_systems_apis_and_relations_make_a_catalog_that_validates(
    platform: Platform,
) -> None:
    service()
    set_group(GroupEntity(name="payments", members=("alice",), approvers=("alice",)))
    set_system(SystemEntity(name="shop", owner="group:payments"))
    set_api(ApiEntity(name="payments-http", owner="group:payments", definition="openapi: 3.0.0"))
    set_relations(
        Relations(
            service="payments-api",
            system="shop",
            provides_apis=("payments-http",),
            depends_on=("resource:payments-api.prod",),
        )
    )
    model = CatalogModel.load_default()
    entry = Catalog.load_default().get("payments-api")
    assert (entry.system, entry.provides_apis) == ("system:shop", ("api:payments-http",))
    assert validate(model.read(), stale=model.stale_derived_files()) == []
    log = [
        str(c.message).strip() for c in git.Repo(Catalog.load_default().url).iter_commits("main")
    ]
    assert log[:4] == [
        "Relate payments-api",
        "Add api:payments-http",
        "Add system:shop",
        "Add group:payments",
    ]


def test_onboarding_creates_a_missing_owner_group_with_a_note(platform: Platform) -> None:
    onboard_service(request=ServiceRequest(name="orders", owner="group:shop"))
    group = CatalogModel.load_default().find(GroupEntity, "shop")
    assert group is not None and group.members == ()
    assert "slipway catalog group shop --member NAME" in group.description
    # A second service of the same team finds the group and leaves it alone.
    onboard_service(request=ServiceRequest(name="carts", owner="group:shop"))
    messages = [str(c.message) for c in git.Repo(Catalog.load_default().url).iter_commits("main")]
    assert sum(m.startswith("Create group shop") for m in messages) == 1


def test_a_failed_onboarding_also_removes_the_group_it_created(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    freeze_pushes(monkeypatch, tmp_path)
    state = onboard_service(
        request=ServiceRequest(name="doomed", owner="group:newteam"), return_state=True
    )
    assert state.is_failed()
    assert CatalogModel.load_default().find(GroupEntity, "newteam") is None
