"""The onboard-service flow, run for real against a Prefect test server and git repositories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import git
import pytest
import yaml
from prefect.client.orchestration import get_client
from pydantic import ValidationError

from blocks import DeployTarget, GitServer
from flows.onboard_service import OnboardingResult, ServiceRequest, onboard_service
from slipway.errors import InvalidRequest
from tasks.catalog import CATALOG_REPOSITORY, Catalog
from tests.conftest import Platform

TRICKY = "Says \"hi\" and 'bye'\nsecond line: {{ 7*7 }} {% raw %} ${x} # not a comment\nFROM evil"


def onboard(request: ServiceRequest, *, dry_run: bool = False) -> OnboardingResult:
    return onboard_service(request=request, dry_run=dry_run)


def repositories(platform: Platform) -> set[str]:
    return {p.name for p in platform.home.git_root.glob("*.git")}


def catalog_log(platform: Platform) -> list[str]:
    path = platform.home.git_root / f"{CATALOG_REPOSITORY}.git"
    if not (path / "HEAD").is_file():
        return []
    repo = git.Repo(path)
    try:
        return [str(c.message).strip() for c in repo.iter_commits("main")]
    except git.GitCommandError:
        return []


def clone(platform: Platform, name: str, into: Path) -> Path:
    git.Repo.clone_from(platform.home.git_root / f"{name}.git", into)
    return into


def test_onboarding_creates_repository_entry_and_a_service_whose_tests_pass(
    platform: Platform, tmp_path: Path
) -> None:
    request = ServiceRequest(name="payments-api", owner="group:payments", description=TRICKY)
    result = onboard(request)

    assert result.created and result.commit and not result.dry_run
    assert {"payments-api.git", "platform-catalog.git", "template-python-service.git"} <= (
        repositories(platform)
    )
    target = DeployTarget.load_default()
    assert result.port == target.port_range_start

    service = clone(platform, "payments-api", tmp_path / "svc")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr

    # The description stays data: YAML reads it back unchanged, Dockerfile untouched.
    info = yaml.safe_load((service / "catalog-info.yaml").read_text())
    assert info["metadata"]["description"] == TRICKY
    assert "FROM evil" not in (service / "Dockerfile").read_text()
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v" + result.template_version
    assert answers["_src_path"].endswith("template-python-service.git")

    entry = Catalog(GitServer.load_default()).get("payments-api")
    assert entry.owner == "group:payments" and entry.port == result.port
    assert entry.description == TRICKY
    assert entry.repository == str(platform.home.git_root / "payments-api.git")
    assert catalog_log(platform) == [
        "Onboard payments-api (owner group:payments)",
        "Create group payments, the owner of payments-api, which had no entry",
    ]

    # The push hook is installed and the first push reached it (spooled: no bridge here).
    assert (platform.home.git_root / "payments-api.git/hooks/post-receive").is_file()
    assert list(platform.home.spool.glob("*.json")), "the first push did not reach the hook"


def test_onboarding_twice_is_one_repository_one_entry_and_no_error(platform: Platform) -> None:
    request = ServiceRequest(name="orders", owner="group:shop", port=8150)
    first = onboard(request)
    second = onboard(request)
    assert second.commit == first.commit and not second.created
    # The first run's push publishes the docs (through the bridge): it hands off no second publish.
    docs = "publish-docs/publish-docs"
    assert docs not in [h.deployment for h in first.handoffs]
    assert docs in [h.deployment for h in second.handoffs]  # no push this time
    assert second.catalog_commit is None  # nothing changed
    assert [e.name for e in Catalog(GitServer.load_default()).entries()] == ["orders"]
    assert catalog_log(platform)[0] == "Onboard orders (owner group:shop)"
    assert len(catalog_log(platform)) == 2  # the entry, and the new group:shop

    # A re-run with a new description updates the entry, keeps the code.
    updated = onboard(request.model_copy(update={"description": "Takes orders."}))
    assert updated.commit == first.commit
    assert Catalog(GitServer.load_default()).get("orders").description == "Takes orders."
    assert catalog_log(platform)[0] == "Update orders (owner group:shop)"


def test_a_different_request_for_a_taken_name_is_refused(platform: Platform) -> None:
    onboard(ServiceRequest(name="billing", owner="group:finance"))
    before = catalog_log(platform)
    with pytest.raises(InvalidRequest, match="taken by group:finance"):
        onboard(ServiceRequest(name="billing", owner="group:other"))
    assert catalog_log(platform) == before
    assert Catalog(GitServer.load_default()).get("billing").owner == "group:finance"


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"name": "Bad_Name"}, "DNS-1123"),
        ({"name": "../x"}, "DNS-1123"),
        ({"name": "a" * 70}, "at most 63"),
        ({"owner": "group: payments\nx"}, "entity reference"),
        ({"environments": ["Prod"]}, "DNS-1123"),
        ({"description": "bell\x07"}, "control characters"),
    ],
)
def test_malformed_requests_are_refused_by_the_form(fields: dict[str, object], rule: str) -> None:
    values: dict[str, object] = {"name": "good-name", "owner": "group:x", **fields}
    with pytest.raises(ValidationError, match=rule):
        ServiceRequest.model_validate(values)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"template": "no-such-template"}, "unknown template 'no-such-template'"),
        ({"port": 80}, "outside the deploy target's range 8100-8199"),
        ({"port": 9999}, "outside the deploy target's range"),
    ],
)
def test_requests_the_platform_cannot_serve_are_refused_before_anything_exists(
    platform: Platform, fields: dict[str, object], rule: str
) -> None:
    request = ServiceRequest.model_validate({"name": "refused", "owner": "group:x", **fields})
    with pytest.raises(InvalidRequest, match=rule):
        onboard(request)
    assert repositories(platform) <= {f"{CATALOG_REPOSITORY}.git"}
    assert catalog_log(platform) == []


def test_a_port_of_another_service_is_refused(platform: Platform) -> None:
    taken = onboard(ServiceRequest(name="first", owner="group:x")).port
    with pytest.raises(InvalidRequest, match=f"port {taken} is already first's"):
        onboard(ServiceRequest(name="second", owner="group:x", port=taken))
    assert "second.git" not in repositories(platform)
    assert onboard(ServiceRequest(name="second", owner="group:x")).port == taken + 1


def test_dry_run_renders_and_creates_nothing(platform: Platform) -> None:
    result = onboard(ServiceRequest(name="preview-only", owner="group:x"), dry_run=True)
    assert result.dry_run and result.commit is None
    assert "Dockerfile" in result.files and "catalog-info.yaml" in result.files
    assert repositories(platform) <= {f"{CATALOG_REPOSITORY}.git"}
    assert catalog_log(platform) == []


def freeze_pushes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real refusal from git: new repositories get a pre-receive hook that turns every
    push down (git init copies hooks from init.templateDir)."""
    hooks = tmp_path / "git-template" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-receive").write_text("#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n")
    (hooks / "pre-receive").chmod(0o755)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "init.templateDir")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(hooks.parent))


def test_a_failed_push_rolls_back_repository_and_catalog_entry(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    onboard(ServiceRequest(name="already-here", owner="group:x"))
    before = catalog_log(platform)
    freeze_pushes(monkeypatch, tmp_path)
    state = onboard_service(
        request=ServiceRequest(name="doomed", owner="group:x"), return_state=True
    )
    assert state.is_failed()
    assert "doomed.git" not in repositories(platform)
    assert Catalog(GitServer.load_default()).find("doomed") is None
    assert [e.name for e in Catalog(GitServer.load_default()).entries()] == ["already-here"]
    log = catalog_log(platform)
    assert log[: len(log) - len(before)] == [
        "Roll back the onboarding of doomed",
        "Onboard doomed (owner group:x)",
    ]


def test_the_run_leaves_a_markdown_artifact_with_links(platform: Platform) -> None:
    result = onboard_service(request=ServiceRequest(name="linked", owner="group:x"))
    # Not read_latest_artifacts: Prefect 3.8's client sends null filters, which its server refuses.
    body = {"artifacts": {"key": {"any_": ["onboarding-linked", "service-catalog"]}}, "limit": 10}
    with get_client(sync_client=True) as client:
        artifacts = [
            SimpleNamespace(**a)
            for a in client.request("POST", "/artifacts/latest/filter", json=body).json()
        ]
    by_key = {a.key: a for a in artifacts}
    report = by_key["onboarding-linked"]
    assert result.repository in str(report.data)
    assert "platform-catalog/linked/catalog-info.yaml" in str(report.data)
    assert "linked" in str(by_key["service-catalog"].data)
