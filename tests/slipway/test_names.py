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
