"""update-service-template: a template's new version rolled out to an onboarded service."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import git
import httpx
import pytest

from blocks import GitServer
from flows.onboard_service import ServiceRequest, onboard_service
from flows.update_service_template import update_service_template
from slipway.errors import InvalidRequest, TemplateError
from tasks.catalog import Catalog
from tasks.templates import TEMPLATES_DIR
from tests.conftest import Platform, free_port

# The python-service server as template 1.0.0 had it: /healthz and /, no metrics.
SERVER_WITHOUT_METRICS = """import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(body)


def main():
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
"""


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
    bump(templates, "9.9.9")
    (templates / "template" / "CHANGELOG.md").write_text("# Changes\n")

    [result] = update_service_template(template="python-service")
    assert result.outcome == "updated" and result.to_version == "9.9.9"
    assert {"CHANGELOG.md", "app/extra.py"} <= tree_of(platform, "svc-a")
    assert Catalog(GitServer.load_default()).get("svc-a").template_version == "9.9.9"

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


def test_an_existing_service_gains_metrics_through_the_template_update(
    platform: Platform, templates: Path, tmp_path: Path
) -> None:
    # The service was onboarded from the template before it had metrics.
    (templates / "template" / "app" / "metrics.py").unlink()
    (templates / "template" / "app" / "server.py").write_text(SERVER_WITHOUT_METRICS)
    requirements = templates / "template" / "requirements.txt"
    requirements.write_text("# no runtime dependencies\n")
    bump(templates, "0.9.0")
    onboard_service(request=ServiceRequest(name="svc-m", owner="group:x"))
    assert "app/metrics.py" not in tree_of(platform, "svc-m")

    shutil.rmtree(templates)  # the platform's current template
    shutil.copytree(TEMPLATES_DIR / "python-service", templates)
    [result] = update_service_template(template="python-service")
    assert result.outcome == "updated", result.detail

    work = tmp_path / "svc-m"
    git.Repo.clone_from(platform.home.git_root / "svc-m.git", work)
    assert "prometheus-client==" in (work / "requirements.txt").read_text()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app.server"], cwd=work, env={"PORT": str(port), "PATH": ""}
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{base}/healthz", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the updated service did not start"
                time.sleep(0.1)
        metrics = httpx.get(f"{base}/metrics", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert metrics.status_code == 200
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
