"""The pieces of `slipway up` on their own: prefect.yaml, ports, the lock."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deployments.components import check_port_free
from deployments.serve import declared_deployments
from deployments.state import UpLock
from slipway.errors import ComponentError, ConfigurationError, PortInUse
from slipway.home import Ports, SlipwayHome

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_entrypoints_that_exist():
    declared = declared_deployments(REPO)
    assert "platform-check" in {d.name for d in declared}
    for d in declared:
        path, _, function = d.entrypoint.partition(":")
        assert (REPO / path).is_file(), d.entrypoint
        assert f"def {function}(" in (REPO / path).read_text()


def test_prefect_yaml_entry_without_entrypoint_is_refused(tmp_path):
    (tmp_path / "prefect.yaml").write_text("deployments:\n  - name: lonely\n")
    with pytest.raises(ConfigurationError, match="entrypoint"):
        declared_deployments(tmp_path)


def test_unreadable_prefect_yaml_is_a_configuration_error(tmp_path):
    (tmp_path / "prefect.yaml").write_text("deployments: [unclosed\n")
    with pytest.raises(ConfigurationError, match="cannot read deployments"):
        declared_deployments(tmp_path)
    with pytest.raises(ConfigurationError, match="cannot read deployments"):
        declared_deployments(tmp_path / "missing")


def test_a_taken_port_names_the_port_and_the_override():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as caught:
            check_port_free("docs", port)
    message = str(caught.value)
    assert f"port {port}" in message and "SLIPWAY_DOCS_PORT" in message
    check_port_free("docs", port)  # free again once released


def test_one_up_per_home(tmp_path):
    home = SlipwayHome(tmp_path)
    first, second = UpLock(home), UpLock(home)
    first.acquire()
    try:
        assert second.is_held()
        with pytest.raises(ComponentError, match="already running"):
            second.acquire()
    finally:
        first.release()
    assert not second.is_held()
    second.acquire()
    second.release()


def test_port_overrides_come_from_the_environment():
    ports = Ports.from_env({"SLIPWAY_PREFECT_PORT": "4201", "SLIPWAY_DOCS_PORT": "4401"})
    assert (ports.prefect, ports.docs, ports.registry) == (4201, 4401, 5001)
    assert ports.prefect_api_url == "http://127.0.0.1:4201/api"
    with pytest.raises(ConfigurationError, match="not a port number"):
        Ports.from_env({"SLIPWAY_PREFECT_PORT": "http"})
    with pytest.raises(ConfigurationError, match="outside 1024-65535"):
        Ports.from_env({"SLIPWAY_REGISTRY_PORT": "80"})


def test_home_comes_from_slipway_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SLIPWAY_HOME", str(tmp_path / "h"))
    home = SlipwayHome.from_env()
    assert home.root == (tmp_path / "h").resolve()
    home.ensure()
    home.ensure()  # idempotent
    assert home.git_root.is_dir() and home.logs.is_dir()
    monkeypatch.delenv("SLIPWAY_HOME")
    monkeypatch.chdir(tmp_path)
    assert SlipwayHome.from_env().root == tmp_path.resolve() / ".slipway"
