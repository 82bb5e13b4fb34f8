"""Each block refuses a value that cannot work, naming the rule, and accepts good ones.

The blocks are edited by hand in the Prefect UI, so a mistake must be refused when
the document is saved, not discovered half-way through a flow run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from blocks import (
    ALL_BLOCKS,
    ArtifactStore,
    ContainerRegistry,
    DeployTarget,
    GitServer,
    PlatformSettings,
    S3Connection,
    TerraformBackend,
    VulnerabilitySource,
)
from blocks.base import SlipwayBlock
from slipway.home import Ports, SlipwayHome

SECRET = "hunter2-block-secret-Xy7"


def refused(block: type[SlipwayBlock], rule: str, **values: Any) -> None:
    """Assert that ``block(**values)`` fails validation with a message naming ``rule``."""
    with pytest.raises(ValidationError, match=re.escape(rule)):
        block(**values)


# --- S3Connection -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"access_key_id": "AKIA1", "secret_access_key": SECRET},
        {"endpoint_url": "http://127.0.0.1:9000", "path_style": True},
        {"endpoint_url": "https://s3.example.com", "region": "eu-west-1"},
    ],
)
def test_s3_connection_accepts_good_values(values: dict[str, Any]) -> None:
    S3Connection(**values)


def test_s3_connection_refuses_a_key_id_without_its_secret() -> None:
    refused(S3Connection, "give both `access_key_id` and `secret_access_key`", access_key_id="A")


def test_s3_connection_refuses_a_secret_without_its_key_id() -> None:
    refused(S3Connection, "give both", secret_access_key=SECRET)


@pytest.mark.parametrize("url", ["127.0.0.1:9000", "ftp://example.com", "s3://bucket"])
def test_s3_connection_refuses_an_endpoint_without_http_scheme(url: str) -> None:
    refused(S3Connection, "must start with http:// or https://", endpoint_url=url)


def test_s3_connection_refuses_credentials_inside_the_endpoint() -> None:
    refused(
        S3Connection, "must not carry credentials", endpoint_url="http://user:pw@127.0.0.1:9000"
    )


def test_s3_connection_client_kwargs_carry_endpoint_keys_and_path_style() -> None:
    kwargs = S3Connection(
        endpoint_url="http://127.0.0.1:9000",
        access_key_id="AKIA1",
        secret_access_key=SECRET,
        path_style=True,
        region="eu-west-1",
    ).client_kwargs()
    assert kwargs["endpoint_url"] == "http://127.0.0.1:9000"
    assert kwargs["region_name"] == "eu-west-1"
    assert kwargs["aws_access_key_id"] == "AKIA1"
    assert kwargs["aws_secret_access_key"] == SECRET
    assert kwargs["config"].s3 == {"addressing_style": "path"}


def test_s3_connection_without_keys_leaves_credentials_to_boto3() -> None:
    kwargs = S3Connection().client_kwargs()
    assert "aws_access_key_id" not in kwargs and "aws_secret_access_key" not in kwargs
    assert "endpoint_url" not in kwargs


# --- GitServer ----------------------------------------------------------------------


def test_git_server_accepts_a_local_root_and_a_hosted_organisation(tmp_path: Path) -> None:
    GitServer(provider="local", root=tmp_path)
    GitServer(provider="github", organization="acme", token=SECRET)
    GitServer(provider="gitlab", organization="acme", token=SECRET, api_url="https://gl.acme")


def test_git_server_local_needs_a_root() -> None:
    refused(GitServer, "the local provider needs `root`, an absolute directory path")


def test_git_server_local_refuses_a_relative_root() -> None:
    refused(GitServer, "an absolute directory path", provider="local", root=Path("repos"))


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_git_server_hosted_needs_a_token(provider: str) -> None:
    refused(
        GitServer,
        f"the {provider} provider needs `organization` and `token`",
        provider=provider,
        organization="acme",
    )


def test_git_server_hosted_needs_an_organisation() -> None:
    refused(GitServer, "needs `organization` and `token`", provider="github", token=SECRET)


@pytest.mark.parametrize("branch", ["-x", "--upload-pack=x", "a..b", "a//b", "x.lock", "a/.b", ""])
def test_git_server_refuses_a_default_branch_that_is_not_a_ref(tmp_path: Path, branch: str) -> None:
    refused(GitServer, "is not a valid git ref", root=tmp_path, default_branch=branch)


def test_git_server_accepts_a_nested_branch(tmp_path: Path) -> None:
    GitServer(root=tmp_path, default_branch="release/v1.2")


def test_git_server_refuses_an_unknown_provider(tmp_path: Path) -> None:
    refused(GitServer, "'local', 'github' or 'gitlab'", provider="bitbucket", root=tmp_path)


# --- ContainerRegistry --------------------------------------------------------------


@pytest.mark.parametrize("url", ["127.0.0.1:5001", "ghcr.io/acme", "registry.example.com/a/b"])
def test_container_registry_accepts_host_port_namespace(url: str) -> None:
    ContainerRegistry(url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5001", "https://ghcr.io", "ghcr.io/ACME", "a b", "host:port"]
)
def test_container_registry_refuses_a_url_that_is_not_host_port(url: str) -> None:
    refused(ContainerRegistry, "is not of the form host[:port][/namespace]", url=url)


def test_container_registry_refuses_a_username_without_password() -> None:
    refused(ContainerRegistry, "give both `username` and `password`", username="bot")


def test_container_registry_refuses_a_password_without_username() -> None:
    refused(ContainerRegistry, "give both `username` and `password`", password=SECRET)


def test_container_registry_accepts_a_login() -> None:
    registry = ContainerRegistry(username="bot", password=SECRET)
    assert registry.password is not None
    assert registry.password.get_secret_value() == SECRET


# --- DeployTarget -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "ssh://deploy@box"]
)
def test_deploy_target_accepts_docker_host_schemes(host: str) -> None:
    DeployTarget(docker_host=host)


@pytest.mark.parametrize("host", ["http://127.0.0.1:2375", "/var/run/docker.sock", ""])
def test_deploy_target_refuses_an_unknown_scheme(host: str) -> None:
    refused(DeployTarget, "must start with one of unix://", docker_host=host)


@pytest.mark.parametrize(
    ("start", "end"),
    [(8200, 8100), (80, 8100), (1023, 2000), (8100, 65536), (70000, 70001)],
    ids=["inverted", "privileged", "just-privileged", "too-high", "out-of-bounds"],
)
def test_deploy_target_refuses_a_bad_port_range(start: int, end: int) -> None:
    refused(
        DeployTarget,
        "1024 <= first port <= last port <= 65535",
        port_range_start=start,
        port_range_end=end,
    )


def test_deploy_target_accepts_a_range_of_one_port_at_the_bounds() -> None:
    DeployTarget(port_range_start=1024, port_range_end=1024)
    DeployTarget(port_range_start=65535, port_range_end=65535)


def test_deploy_target_port_in_range_includes_both_ends() -> None:
    target = DeployTarget(port_range_start=8100, port_range_end=8102)
    assert [target.port_in_range(p) for p in (8099, 8100, 8102, 8103)] == [
        False,
        True,
        True,
        False,
    ]


def test_deploy_target_refuses_an_unknown_network_mode() -> None:
    refused(DeployTarget, "'host' or 'bridge'", network_mode="overlay")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("run_as_user", "0", "must be a non-root numeric uid[:gid]"),
        ("run_as_user", "0:0", "must be a non-root numeric uid[:gid]"),
        ("run_as_user", "root", "must be a non-root numeric uid[:gid]"),
        ("memory_limit", "lots", "is not a size such as 512m"),
        ("tmp_size", "0", "is not a size such as 512m"),
        ("build_network", "host", "would let RUN steps reach the platform"),
        ("build_network", "bridge", "would let RUN steps reach the platform"),
        ("build_network", "--privileged", "would let RUN steps reach the platform"),
        ("package_index", "file:///etc", "must be an http(s):// URL"),
        ("pids_limit", 0, "greater than or equal to 16"),
        ("cpu_limit", 0, "greater than 0"),
    ],
)
def test_deploy_target_refuses_confinement_that_would_not_confine(
    field: str, value: object, rule: str
) -> None:
    refused(DeployTarget, rule, **{field: value})


def test_deploy_target_confines_by_default_and_takes_a_named_build_network() -> None:
    target = DeployTarget(build_network="builds-egress-proxy", memory_limit="1G")
    assert (target.build_network, target.memory_limit) == ("builds-egress-proxy", "1g")
    default = DeployTarget()
    assert (default.run_as_user, default.build_network, default.pids_limit) == (
        "65534:65534",
        "none",
        256,
    )


# --- ArtifactStore ------------------------------------------------------------------


def test_artifact_store_accepts_a_local_directory_and_an_s3_bucket(tmp_path: Path) -> None:
    ArtifactStore(kind="local", local_path=tmp_path, prefix="slipway/")
    ArtifactStore(kind="s3", bucket="acme.artifacts-1", s3=S3Connection())


def test_artifact_store_local_needs_an_absolute_path() -> None:
    refused(ArtifactStore, "a local store needs `local_path`", kind="local")
    refused(ArtifactStore, "an absolute directory path", kind="local", local_path=Path("rel"))


def test_artifact_store_s3_needs_a_bucket() -> None:
    refused(ArtifactStore, "an s3 store needs `bucket`", kind="s3")


@pytest.mark.parametrize(
    "bucket", ["ab", "Upper", "a..b", "-abc", "abc-", "abc_def", "a" * 64, "has space"]
)
def test_artifact_store_refuses_a_bucket_name_s3_would_refuse(bucket: str) -> None:
    refused(ArtifactStore, "is not a valid S3 bucket name", kind="s3", bucket=bucket)


@pytest.mark.parametrize("prefix", ["../up", "a/../b", "/abs", ".."])
def test_artifact_store_refuses_a_prefix_that_climbs_or_is_absolute(
    tmp_path: Path, prefix: str
) -> None:
    refused(
        ArtifactStore,
        "must be relative and must not contain '..'",
        local_path=tmp_path,
        prefix=prefix,
    )


# --- TerraformBackend ---------------------------------------------------------------


def test_terraform_backend_accepts_local_and_s3_state(tmp_path: Path) -> None:
    TerraformBackend(kind="local", state_dir=tmp_path, binary=Path("/usr/bin/terraform"))
    TerraformBackend(kind="s3", bucket="acme-state", plugin_mirror=tmp_path)


def test_terraform_backend_local_needs_an_absolute_state_dir() -> None:
    refused(TerraformBackend, "local state needs `state_dir`", kind="local")
    refused(TerraformBackend, "an absolute directory path", state_dir=Path("state"))


def test_terraform_backend_s3_needs_a_valid_bucket() -> None:
    refused(TerraformBackend, "the s3 backend needs `bucket`", kind="s3")
    refused(TerraformBackend, "is not a valid S3 bucket name", kind="s3", bucket="Bad_Bucket")


@pytest.mark.parametrize("field", ["binary", "plugin_mirror"])
def test_terraform_backend_refuses_a_relative_tool_path(tmp_path: Path, field: str) -> None:
    refused(
        TerraformBackend,
        f"`{field}` must be an absolute path",
        state_dir=tmp_path,
        **{field: Path("bin/terraform")},
    )


# --- VulnerabilitySource ------------------------------------------------------------


def test_vulnerability_source_accepts_osv_and_a_mirror(tmp_path: Path) -> None:
    VulnerabilitySource()
    VulnerabilitySource(kind="osv", osv_url="http://127.0.0.1:4500/v1/query")
    VulnerabilitySource(kind="mirror", mirror_path=tmp_path, sync_url="s3://osv/PyPI/all.zip")
    VulnerabilitySource(kind="mirror", mirror_path=tmp_path, sync_url="https://osv.dev/all.zip")


def test_vulnerability_source_mirror_needs_an_absolute_path() -> None:
    refused(VulnerabilitySource, "a mirror needs `mirror_path`", kind="mirror")
    refused(VulnerabilitySource, "an absolute directory path", kind="mirror", mirror_path=Path("m"))


@pytest.mark.parametrize("url", ["api.osv.dev/v1/query", "ftp://osv.dev", "file:///tmp/osv"])
def test_vulnerability_source_refuses_an_osv_url_without_http(url: str) -> None:
    refused(VulnerabilitySource, "must start with http:// or https://", osv_url=url)


@pytest.mark.parametrize("url", ["file:///tmp/all.zip", "/tmp/all.zip", "gs://osv/all.zip"])
def test_vulnerability_source_refuses_a_sync_url_of_another_scheme(url: str) -> None:
    refused(VulnerabilitySource, "must be an http(s):// or s3:// URL", sync_url=url)


# --- PlatformSettings ---------------------------------------------------------------


@pytest.mark.parametrize("image", ["python:3.12-slim", "127.0.0.1:5001/base:1", "local/py@sha"])
def test_platform_settings_accepts_an_image_reference(image: str) -> None:
    PlatformSettings(base_image=image)


@pytest.mark.parametrize("image", ["python 3.12", "python:3.12\n", "", "--privileged"])
def test_platform_settings_refuses_a_base_image_that_is_no_reference(image: str) -> None:
    refused(PlatformSettings, "is not an image reference", base_image=image)


@pytest.mark.parametrize("seconds", [0, -1])
def test_platform_settings_refuses_a_health_timeout_that_is_not_positive(seconds: float) -> None:
    refused(PlatformSettings, "greater than 0", health_timeout_seconds=seconds)


# --- Local defaults and secrets -----------------------------------------------------


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.__name__)
def test_local_default_is_a_valid_block_inside_the_home(
    block: type[SlipwayBlock],
    home: SlipwayHome,
    ports: Ports,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLIPWAY_BASE_IMAGE", raising=False)
    default = block.local_default(home, ports)
    assert type(default) is block
    block.model_validate(default.model_dump())  # survives a save and load round trip
    for value in default.model_dump().values():
        if isinstance(value, Path):
            assert value.is_relative_to(home.root), f"{block.__name__} points outside the home"


def test_local_defaults_point_at_the_home_and_the_loopback_ports(
    home: SlipwayHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIPWAY_BASE_IMAGE", raising=False)
    ports = Ports(registry=5999)
    assert ContainerRegistry.local_default(home, ports).url == "127.0.0.1:5999"
    assert GitServer.local_default(home, ports).root == home.git_root
    assert ArtifactStore.local_default(home, ports).local_path == home.artifacts
    # Which base image depends on the engine: tests/tasks/test_base_image.py.
    assert PlatformSettings.local_default(home, ports).base_image in (
        "python:3.12-slim",
        "local/python-base:bookworm",
    )


def test_platform_settings_default_base_image_follows_the_environment(
    home: SlipwayHome, ports: Ports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_BASE_IMAGE", "local/python-base:bookworm")
    assert PlatformSettings.local_default(home, ports).base_image == "local/python-base:bookworm"


@pytest.mark.parametrize(
    "block",
    [
        S3Connection(access_key_id="AKIA1", secret_access_key=SECRET),
        GitServer(provider="github", organization="acme", token=SECRET),
        ContainerRegistry(username="bot", password=SECRET),
        ArtifactStore(
            kind="s3", bucket="acme-a", s3=S3Connection(access_key_id="A", secret_access_key=SECRET)
        ),
        TerraformBackend(
            kind="s3", bucket="acme-s", s3=S3Connection(access_key_id="A", secret_access_key=SECRET)
        ),
    ],
    ids=lambda b: type(b).__name__,
)
def test_secrets_are_not_revealed_by_repr_str_or_json(block: SlipwayBlock) -> None:
    for text in (repr(block), str(block), block.model_dump_json(), str(block.model_dump())):
        assert SECRET not in text


def test_a_secret_is_kept_as_secret_str() -> None:
    connection = S3Connection(access_key_id="AKIA1", secret_access_key=SECRET)
    assert isinstance(connection.secret_access_key, SecretStr)
    assert connection.secret_access_key.get_secret_value() == SECRET
