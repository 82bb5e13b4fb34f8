"""update-service-template: a template's new version rolled out to an onboarded service."""

from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest

from blocks import GitServer
from flows.onboard_service import ServiceRequest, onboard_service
from flows.update_service_template import update_service_template
from slipway.errors import InvalidRequest, TemplateError
from tasks.catalog import Catalog
from tasks.templates import TEMPLATES_DIR
from tests.conftest import Platform


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The platform's templates in a directory of the test's own, so it may change them."""
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, root)
    monkeypatch.setenv("SLIPWAY_TEMPLATES_DIR", str(root))
    return root / "python-service"


def bump(template: Path, version: str) -> None:
    config = template / "copier.yml"
    text = config.read_text()
    old = text.split("template_version:")[1].split("default:")[1].split("\n")[0]
    config.write_text(text.replace(f"default:{old}", f'default: "{version}"'))


def push_change(platform: Platform, service: str, tmp_path: Path) -> None:
    work = tmp_path / f"{service}-work"
    repo = git.Repo.clone_from(platform.home.git_root / f"{service}.git", work)
    (work / "app" / "extra.py").write_text("VALUE = 1\n")
    repo.git.add("--all")
    repo.git.commit("-m", "service work", author="Dev <dev@example.invalid>")
    repo.git.push("origin", "main")


def tree_of(platform: Platform, service: str) -> set[str]:
    repo = git.Repo(platform.home.git_root / f"{service}.git")
    return {item.path for item in repo.commit("main").tree.traverse()}


def test_a_new_template_version_reaches_the_service_and_keeps_its_changes(
    platform: Platform, templates: Path, tmp_path: Path
) -> None:
    onboard_service(request=ServiceRequest(name="svc-a", owner="group:x"))
    push_change(platform, "svc-a", tmp_path)
    bump(templates, "1.1.0")
    (templates / "template" / "CHANGELOG.md").write_text("# Changes\n")

    [result] = update_service_template(template="python-service")
    assert result.outcome == "updated" and result.to_version == "1.1.0"
    assert {"CHANGELOG.md", "app/extra.py"} <= tree_of(platform, "svc-a")
    assert Catalog(GitServer.load_default()).get("svc-a").template_version == "1.1.0"

    [again] = update_service_template(template="python-service")
    assert again.outcome == "up-to-date" and again.commit is None


def test_changing_a_template_without_a_new_version_is_refused(
    platform: Platform, templates: Path
) -> None:
    onboard_service(request=ServiceRequest(name="svc-b", owner="group:x"))
    (templates / "template" / "NOTES.md").write_text("silently changed\n")
    with pytest.raises(TemplateError, match="raise template_version"):
        update_service_template(template="python-service")
    assert "NOTES.md" not in tree_of(platform, "svc-b")


def test_unknown_services_and_templates_are_refused(platform: Platform, templates: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown template 'nope'"):
        update_service_template(template="nope")
    with pytest.raises(InvalidRequest, match="not services of template"):
        update_service_template(template="python-service", services=["ghost"])
