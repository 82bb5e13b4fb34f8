"""Images on the real Docker engine and a real registry: build, test inside, push."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from blocks import ContainerRegistry
from slipway.errors import BuildError, InvalidRequest
from slipway.names import check_sha
from tasks.images import (
    LABEL_BUILT,
    LABEL_REVISION,
    BuiltImage,
    build_image,
    build_inputs_digest,
    content_digest,
    image_repository,
    push_image,
    remove_image,
    run_image_tests,
)
from tasks.images import test_inputs_digest as inputs_digest  # not collected as a test
from tests.conftest import Listener, free_port
from tests.flows.delivery_fixtures import (
    BASE_IMAGE,
    docker_or_skip,
    manifest_digest,
    registry_block,
    remove_service_images,
    render_source,
    shared_registry,
    variant,
)

pytestmark = pytest.mark.docker


@dataclass
class Workshop:
    client: object
    registry: ContainerRegistry
    service: str
    source: Path
    root: Path

    @property
    def repository(self) -> str:
        return image_repository(self.registry, self.service)

    def build(
        self, tree: Path | None = None, sha: str | None = None, base_image: str = BASE_IMAGE
    ) -> BuiltImage:
        return build_image.fn(
            self.client,
            tree or self.source,
            service=self.service,
            sha=sha or uuid.uuid4().hex + "00000000",
            repository=self.repository,
            base_image=base_image,
        )

    def variant(self, **kwargs: object) -> Path:
        return variant(self.source, self.root / uuid.uuid4().hex, marker="x", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def workshop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workshop]:
    client = docker_or_skip()
    root = tmp_path_factory.mktemp("images")
    service = f"img-{uuid.uuid4().hex[:8]}"
    registry = registry_block(shared_registry(request, tmp_path_factory))
    shop = Workshop(client, registry, service, render_source(root / "src", service, 8080), root)
    try:
        yield shop
    finally:
        remove_service_images(client, shop.repository)


def test_build_tags_and_labels_the_image_from_the_configured_base(workshop: Workshop) -> None:
    sha = "a" * 40
    before = datetime.now(UTC).replace(microsecond=0)
    built = workshop.build(sha=sha)
    image = workshop.client.images.get(built.tag)  # type: ignore[attr-defined]
    assert built.tag == f"{workshop.registry.url}/{workshop.service}:{sha}"
    labels = image.labels
    assert labels[LABEL_REVISION] == sha
    assert before <= datetime.fromisoformat(labels[LABEL_BUILT]) <= datetime.now(UTC)
    base = workshop.client.images.get(BASE_IMAGE)  # type: ignore[attr-defined]
    base_layers = base.attrs["RootFS"]["Layers"]
    assert image.attrs["RootFS"]["Layers"][: len(base_layers)] == base_layers


def test_a_rebuild_without_change_reuses_every_layer(workshop: Workshop) -> None:
    first = workshop.build()
    again = workshop.build()
    layers = [
        workshop.client.images.get(b.tag).attrs["RootFS"]["Layers"]  # type: ignore[attr-defined]
        for b in (first, again)
    ]
    assert layers[0] == layers[1]
    assert again.seconds < 10


def test_the_same_commit_built_again_is_the_earlier_image_not_a_new_build(
    workshop: Workshop,
) -> None:
    sha = uuid.uuid4().hex + "0" * 8
    first = workshop.build(sha=sha)
    time.sleep(1.1)  # a build now would label, so identify, its image apart from the first
    again = workshop.build(sha=sha)
    assert again.reused and not first.reused
    assert (again.image_id, again.built_at) == (first.image_id, first.built_at)
    image = workshop.client.images.get(again.tag)  # type: ignore[attr-defined]
    assert image.id == first.image_id
    assert first.inputs_tag is not None and first.inputs_tag in image.tags
    # The inputs are a tag: each build label costs the classic builder a step of its own.
    assert set(image.labels) == {LABEL_REVISION, LABEL_BUILT, "org.opencontainers.image.title"}


def test_a_base_image_tag_that_moved_means_building_again(workshop: Workshop) -> None:
    client = workshop.client
    base = f"local/slipway-test-base:{uuid.uuid4().hex[:8]}"
    client.images.get(BASE_IMAGE).tag(base)  # type: ignore[attr-defined]
    try:
        sha = uuid.uuid4().hex + "0" * 8
        first = workshop.build(sha=sha, base_image=base)
        client.images.get(first.image_id).tag(base)  # type: ignore[attr-defined]  # the tag moves
        time.sleep(1.1)
        again = workshop.build(sha=sha, base_image=base)
        assert not again.reused and again.image_id != first.image_id
        layers = client.images.get(again.image_id).attrs["RootFS"]["Layers"]  # type: ignore[attr-defined]
        moved_base = client.images.get(first.image_id).attrs["RootFS"]["Layers"]  # type: ignore[attr-defined]
        assert layers[: len(moved_base)] == moved_base  # built on what the tag names now
    finally:
        client.images.remove(base)  # type: ignore[attr-defined]


def test_build_inputs_are_the_commit_the_arguments_and_each_base_images_id(
    workshop: Workshop,
) -> None:
    client, sha = workshop.client, "1" * 40

    def inputs(dockerfile: str, commit: str = sha, **args: str) -> str | None:
        return build_inputs_digest(client, dockerfile, sha=commit, buildargs=args)  # type: ignore[arg-type]

    template = "ARG BASE_IMAGE=local/absent:x\nFROM ${BASE_IMAGE}\nCOPY app/ app/\n"
    plain = inputs(template, BASE_IMAGE=BASE_IMAGE)
    assert plain is not None and plain == inputs(template, BASE_IMAGE=BASE_IMAGE)
    assert inputs(template, "2" * 40, BASE_IMAGE=BASE_IMAGE) != plain
    assert inputs(f"ARG BASE={BASE_IMAGE}\nFROM $BASE\n") is not None  # the declared default
    staged = f"FROM {BASE_IMAGE} AS build\nFROM build\nCOPY --from=build / /\n"
    assert inputs(staged) == inputs(f"FROM {BASE_IMAGE}\n")  # a stage is not a base image


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM $UNDECLARED\n",
        "ARG BASE=${OTHER:-x}\nFROM ${BASE}\n",
        "FROM scratch\nCOPY app/ app/\n",
        "FROM local/slipway-never-built:none\n",
        "FROM \\\n  local/python-base:bookworm\n",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    ],
)
def test_a_build_whose_base_images_are_not_known_is_never_reused(
    workshop: Workshop, dockerfile: str
) -> None:
    assert build_inputs_digest(workshop.client, dockerfile, sha="1" * 40, buildargs={}) is None  # type: ignore[arg-type]


def test_content_is_what_a_container_runs_not_the_labels(workshop: Workshop) -> None:
    client = workshop.client
    first, again = workshop.build(), workshop.build()  # other shas: other labels, own ids

    def content(built: BuiltImage) -> str:
        return content_digest(client, built.image_id)  # type: ignore[arg-type]

    assert first.image_id != again.image_id and content(first) == content(again)
    assert inputs_digest(client, first.tag) == inputs_digest(client, again.tag)  # type: ignore[arg-type]
    other_command = inputs_digest(client, first.tag, command=("python3", "-m", "pytest"))  # type: ignore[arg-type]
    assert other_command != inputs_digest(client, first.tag)  # type: ignore[arg-type]
    assert content(workshop.build(workshop.variant())) != content(first)  # other files
    for change in ("ENV FEATURE=on", "HEALTHCHECK NONE", "STOPSIGNAL SIGINT"):
        tree = workshop.root / uuid.uuid4().hex
        shutil.copytree(workshop.source, tree)
        with (tree / "Dockerfile").open("a", encoding="utf-8") as dockerfile:
            dockerfile.write(f"\n{change}\n")
        changed = workshop.build(tree)
        layers = client.images.get(changed.tag).attrs["RootFS"]["Layers"]  # type: ignore[attr-defined]
        assert layers == client.images.get(first.tag).attrs["RootFS"]["Layers"]  # type: ignore[attr-defined]
        assert content(changed) != content(first), change  # same layers, other runtime


def test_a_missing_dockerfile_is_a_build_error(workshop: Workshop) -> None:
    tree = workshop.variant()
    (tree / "Dockerfile").unlink()
    with pytest.raises(BuildError, match="no Dockerfile"):
        workshop.build(tree)


def test_a_failing_build_step_reports_the_log_tail(workshop: Workshop) -> None:
    tree = workshop.variant()
    with (tree / "Dockerfile").open("a") as f:
        f.write('RUN ["python3", "-c", "raise SystemExit(\'broken step 42\')"]\n')
    with pytest.raises(BuildError, match="broken step 42"):
        workshop.build(tree)


def test_the_services_tests_pass_inside_the_image(workshop: Workshop) -> None:
    report = run_image_tests.fn(workshop.client, workshop.build().tag)
    assert report.passed and report.exit_code == 0
    assert [c.result for c in report.cases] == ["passed"] * 4
    assert all(c.name.startswith("tests.test_server.ServerTest.") for c in report.cases)
    assert report.rows()[0].keys() == {"test", "result"}


def test_failing_tests_are_reported_with_their_output(workshop: Workshop) -> None:
    built = workshop.build(workshop.variant(failing_tests=True))
    report = run_image_tests.fn(workshop.client, built.tag)
    assert not report.passed
    failed = [c for c in report.cases if c.result == "failed"]
    assert [c.name for c in failed] == ["tests.test_release.ReleaseTest.test_release_is_ready"]
    assert "deliberately failing" in report.tail


def test_tests_run_without_network_even_to_the_hosts_loopback(workshop: Workshop) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted: list[object] = []

        def accept() -> None:
            # Timed out or closed: nobody connected, as it should be.
            with contextlib.suppress(OSError):
                accepted.append(listener.accept())

        thread = threading.Thread(target=accept, daemon=True)
        listener.settimeout(30)
        thread.start()
        built = workshop.build(workshop.variant(network_test_port=port))
        report = run_image_tests.fn(workshop.client, built.tag)
    assert not report.passed
    assert {c.name: c.result for c in report.cases}[
        "tests.test_network.NetworkTest.test_reaches_the_host"
    ] == "error"
    assert "ConnectionRefusedError" in report.tail
    assert accepted == []


def test_tests_that_hang_are_killed_after_the_timeout(workshop: Workshop) -> None:
    built = workshop.build()
    began = time.monotonic()
    report = run_image_tests.fn(
        workshop.client,
        built.tag,
        command=("python3", "-c", "import time; time.sleep(60)"),
        timeout=2,
    )
    assert not report.passed and report.exit_code == -1
    assert "killed after 2 s" in report.tail
    assert time.monotonic() - began < 30
    leftovers = workshop.client.containers.list(  # type: ignore[attr-defined]
        all=True, filters={"ancestor": built.image_id}
    )
    assert leftovers == []


def test_push_returns_the_digest_the_registry_serves(workshop: Workshop) -> None:
    built = workshop.build()
    pushed = push_image.fn(workshop.client, built, registry=workshop.registry)
    assert pushed.digest.startswith("sha256:")
    assert pushed.reference == f"{workshop.repository}@{pushed.digest}"
    assert manifest_digest(workshop.registry.url, workshop.service, built.sha) == pushed.digest


def test_push_to_a_registry_that_is_down_retries_then_fails(
    workshop: Workshop, caplog: pytest.LogCaptureFixture
) -> None:
    dead = ContainerRegistry(url=f"127.0.0.1:{free_port()}")
    built = workshop.build()
    tag = built.tag.replace(workshop.registry.url, dead.url)
    workshop.client.images.get(built.tag).tag(tag)  # type: ignore[attr-defined]
    moved = BuiltImage(built.service, built.sha, tag, built.image_id, built.built_at, 0)
    began = time.monotonic()
    with caplog.at_level("WARNING"), pytest.raises(BuildError, match="after 3 attempts") as error:
        push_image.fn(workshop.client, moved, registry=dead, attempts=3, backoff=0.1)
    assert time.monotonic() - began >= 0.3  # waited 0.1 s, then 0.2 s
    assert "connection refused" in str(error.value).lower()
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    remove_image(workshop.client, tag)


@pytest.mark.parametrize(
    "value", ["$(id)", "--upload-pack=x", "HEAD", "abc", "A" * 40, "a" * 41, "deadbeef;ls"]
)
def test_anything_but_a_hex_sha_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="not a commit id"):
        check_sha(value)


@pytest.mark.parametrize("service", ["--rm", "$(id)", "Bad_Name", "../x"])
def test_a_service_name_that_docker_could_misread_is_refused(service: str) -> None:
    with pytest.raises(InvalidRequest):
        image_repository(ContainerRegistry(url="127.0.0.1:5001"), service)


# -- untrusted builds and containers ---------------------------------------------------------

CONFINEMENT_TEST = """import os, pathlib, unittest


def read(*paths):
    return next(pathlib.Path(p).read_text().strip() for p in paths if os.path.exists(p))


class ConfinementTest(unittest.TestCase):
    def test_runs_confined_without_platform_secrets(self):
        self.assertNotEqual(os.getuid(), 0)
        self.assertNotEqual(os.getgid(), 0)
        lines = read("/proc/self/status").splitlines()
        status = dict(line.split(":", 1) for line in lines if ":" in line)
        self.assertEqual(int(status["CapEff"].strip(), 16), 0)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        with self.assertRaises(OSError):
            open("/srv/service/app/written", "w")
        pathlib.Path("/tmp/scratch").write_text("ok")
        self.assertFalse(os.path.exists("/var/run/docker.sock"))
        self.assertFalse(os.path.exists("/run/docker.sock"))
        pids = read("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max")
        memory = read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        self.assertEqual((pids, memory), ("256", str(512 * 2**20)))
        leaked = [k for k in os.environ if k.startswith(("PREFECT", "AWS", "SLIPWAY", "DOCKER"))]
        self.assertEqual(leaked, [])
"""


def with_dockerfile_line(workshop: Workshop, before: str, line: str) -> Path:
    """A variant whose Dockerfile has ``line`` just before the first line starting ``before``."""
    tree = workshop.variant()
    dockerfile = tree / "Dockerfile"
    text = dockerfile.read_text()
    at = text.index(before)
    dockerfile.write_text(text[:at] + line + "\n" + text[at:])
    return tree


def test_the_tests_container_is_confined_and_holds_no_platform_secret(
    workshop: Workshop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_platform_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-platform-secret")
    tree = workshop.variant()
    (tree / "tests" / "test_confinement.py").write_text(CONFINEMENT_TEST)
    report = run_image_tests.fn(workshop.client, workshop.build(tree).tag)
    assert report.passed, report.tail
    assert "tests.test_confinement.ConfinementTest.test_runs_confined_without_platform_secrets" in {
        c.name for c in report.cases
    }


def test_a_run_step_cannot_reach_a_listener_on_the_hosts_loopback(
    workshop: Workshop, loopback_listener: Listener
) -> None:
    step = (
        'RUN ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('
        f"'{loopback_listener.url}/api/admin/settings', timeout=5).read())\"]"
    )
    tree = with_dockerfile_line(workshop, "COPY app/", step)
    with pytest.raises(BuildError) as refused:
        workshop.build(tree)
    message = str(refused.value)
    assert "Connection refused" in message or "Network is unreachable" in message
    assert "RUN steps have no network" in message and "wheelhouse" in message
    assert loopback_listener.hits == []
    assert workshop.build().tag  # the platform keeps building


def test_an_image_that_runs_as_root_is_refused_before_its_tests_run(workshop: Workshop) -> None:
    built = workshop.build(with_dockerfile_line(workshop, "EXPOSE", "USER root"))
    with pytest.raises(BuildError) as refused:
        run_image_tests.fn(workshop.client, built.tag)
    assert "runs as root (USER root): its tests were not run" in str(refused.value)
    assert "Fix: remove `USER root`" in str(refused.value)
    started = workshop.client.containers.list(  # type: ignore[attr-defined]
        all=True, filters={"ancestor": built.image_id}
    )
    assert started == []
    named = workshop.build(with_dockerfile_line(workshop, "EXPOSE", "USER nobody"))
    with pytest.raises(BuildError, match="cannot verify is not root"):
        run_image_tests.fn(workshop.client, named.tag)


def test_an_image_without_a_user_runs_as_the_deploy_targets_non_root_user(
    workshop: Workshop,
) -> None:
    tree = workshop.variant()
    dockerfile = tree / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("USER 65534\n", ""))
    (tree / "tests" / "test_confinement.py").write_text(CONFINEMENT_TEST)
    report = run_image_tests.fn(workshop.client, workshop.build(tree).tag)
    assert report.passed, report.tail


def test_dependencies_come_from_the_wheelhouse_and_the_build_has_no_network(
    workshop: Workshop, tmp_path: Path
) -> None:
    tree = workshop.variant()
    (tree / "requirements.txt").write_text("six==1.17.0  # a pure-Python wheel\n")
    (tree / "tests" / "test_dependency.py").write_text(
        "import unittest\n\nimport six\n\n\nclass DependencyTest(unittest.TestCase):\n"
        "    def test_six_is_installed(self):\n"
        "        self.assertEqual(six.__version__, '1.17.0')\n"
    )
    built = build_image.fn(
        workshop.client,
        tree,
        service=workshop.service,
        sha=uuid.uuid4().hex + "0" * 8,
        repository=workshop.repository,
        base_image=BASE_IMAGE,
        wheelhouses=tmp_path / "wheelhouses",
    )
    assert not (tree / ".wheelhouse").exists()  # taken out of the context again
    report = run_image_tests.fn(workshop.client, built.tag)
    assert report.passed, report.tail
    (stored,) = [p for p in (tmp_path / "wheelhouses").iterdir() if p.name != "pythons"]
    lock = (stored / "requirements.txt").read_text()
    assert "six==1.17.0 --hash=sha256:" in lock and "# installer pip-" in lock


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--index-url http://127.0.0.1:4200/api/", "is a pip option"),
        ("-e git+http://127.0.0.1:3000/x.git#egg=x", "is a pip option"),
        ("secrets @ http://127.0.0.1:4200/api/block_documents", "names a URL"),
        ("six>=1.0", "is not pinned with =="),
        ("./vendor/six", "is not a requirement"),
    ],
    ids=["index-url", "editable", "url", "unpinned", "path"],
)
def test_a_requirement_that_would_fetch_from_elsewhere_is_refused_naming_its_line(
    workshop: Workshop, line: str, expected: str
) -> None:
    tree = workshop.variant()
    (tree / "requirements.txt").write_text(f"# pinned\nsix==1.17.0\n{line}\n")
    with pytest.raises(BuildError, match="Fix: pin each requirement") as refused:
        workshop.build(tree)
    assert f"requirements.txt line 3 ({line!r}) {expected}" in str(refused.value)
    assert not (tree / ".wheelhouse").exists()
