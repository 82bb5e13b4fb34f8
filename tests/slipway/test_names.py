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


def test_a_typed_name_passes_a_pydantic_field_as_itself_without_a_second_check(monkeypatch):
    from dataclasses import dataclass

    from pydantic import BaseModel, TypeAdapter

    import slipway.names
    from slipway.names import EnvironmentName, ServiceName

    checked: list[str] = []
    real = slipway.names._DNS_LABEL

    @dataclass
    class Counting:
        def fullmatch(self, value: str) -> object:
            checked.append(value)
            return real.fullmatch(value)

    monkeypatch.setattr(slipway.names, "_DNS_LABEL", Counting())

    class Record(BaseModel):
        service: ServiceName
        environment: EnvironmentName

    name = ServiceName.parse("payments-api")
    assert checked == ["payments-api"]
    record = Record(service=name, environment="dev")
    assert record.service is name and checked == ["payments-api", "dev"]
    assert Record.model_validate_json('{"service": "api", "environment": "dev"}').service == "api"
    assert checked[-2:] == ["api", "dev"]  # what arrives as text is checked
    assert TypeAdapter(ServiceName).validate_python(name) is name
    with pytest.raises(ValueError, match="DNS-1123"):
        Record(service="Bad Name", environment="dev")


def test_a_sha_is_taken_as_git_prints_it_whatever_case_and_space_it_came_in():
    from slipway.names import GitSha

    assert GitSha.parse("  ABCDEF1\n") == "abcdef1"
    with pytest.raises(InvalidRequest, match="not a commit id"):
        GitSha.parse("main")
