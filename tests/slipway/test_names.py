from __future__ import annotations

import pytest

from slipway.errors import InvalidRequest
from slipway.names import check_dns_label, check_git_ref, check_host_port


@pytest.mark.parametrize("name", ["a", "payments", "payments-api", "a1", "x" * 63])
def test_dns_labels_are_accepted(name):
    assert check_dns_label(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Bad_Name", "DNS-1123"),
        ("../x", "DNS-1123"),
        ("-lead", "DNS-1123"),
        ("trail-", "DNS-1123"),
        ("", "DNS-1123"),
        ("x" * 70, "at most 63"),
        ("a b", "DNS-1123"),
    ],
)
def test_bad_dns_labels_name_the_rule(name, rule):
    with pytest.raises(InvalidRequest, match=rule):
        check_dns_label(name)


@pytest.mark.parametrize("ref", ["main", "feature/login", "release-1.2", "v1.0.0", "a_b"])
def test_git_refs_are_accepted(ref):
    assert check_git_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=x",
        "$(id)",
        "-x",
        "a..b",
        "a//b",
        "x.lock",
        "x/",
        "a b",
        "a;b",
        "`id`",
        ".hidden",
        "a/.b",
        "",
    ],
)
def test_refs_that_could_become_options_or_shell_are_refused(ref):
    with pytest.raises(InvalidRequest, match="not a valid git ref"):
        check_git_ref(ref)


@pytest.mark.parametrize(
    "value", ["127.0.0.1:5001", "ghcr.io/acme", "registry.local", "r:5000/team/sub"]
)
def test_registry_addresses_are_accepted(value):
    assert check_host_port(value) == value


@pytest.mark.parametrize("value", ["http://127.0.0.1:5001", "ghcr.io/Acme", "a b", "", "host:port"])
def test_bad_registry_addresses_are_refused(value):
    with pytest.raises(InvalidRequest, match="host\\[:port\\]"):
        check_host_port(value)


def test_typed_names_are_checked_once_and_pass_through_as_themselves():
    from slipway.names import EnvironmentName, GitRef, GitSha, ServiceName

    name = ServiceName.parse("payments-api")
    assert name == "payments-api" and isinstance(name, str)
    assert ServiceName.parse(name) is name  # already checked: not checked again
    assert EnvironmentName.parse("preview-feature-x").is_preview
    assert GitSha.parse("0123abc") == "0123abc"
    assert GitRef.parse("refs/heads/main").branch == "main"
    assert GitRef.parse("refs/tags/v1").branch is None


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("ServiceName", "Payments_API"),
        ("EnvironmentName", "-prod"),
        ("GitSha", "XYZ"),
        ("GitRef", "--upload-pack=x"),
        ("GitRef", "$(id)"),
    ],
)
def test_typed_names_refuse_what_their_check_refuses(kind: str, value: str):
    import slipway.names

    with pytest.raises(InvalidRequest):
        getattr(slipway.names, kind).parse(value)


def test_typed_names_validate_as_pydantic_fields_and_flow_parameters():
    from pydantic import BaseModel, ValidationError

    from slipway.names import GitSha, ServiceName

    class Form(BaseModel):
        service: ServiceName
        commit: GitSha

    form = Form.model_validate({"service": "api", "commit": "a" * 40})
    assert isinstance(form.service, ServiceName)
    assert form.model_dump(mode="json") == {"service": "api", "commit": "a" * 40}
    schema = Form.model_json_schema()["properties"]["service"]
    assert schema["type"] == "string" and schema["pattern"].startswith("^[a-z0-9]")
    with pytest.raises(ValidationError, match="DNS-1123"):
        Form.model_validate({"service": "Bad Name", "commit": "a" * 40})
