"""The mirror's life beside the flows: fetching, installing, and serving what was synced."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from blocks.vulnerability_source import VulnerabilitySource
from slipway.errors import ConfigurationError, InvalidRequest
from tasks.osv_mirror import MirrorServer
from tasks.scanners.exploited import (
    KNOWN_EXPLOITED_FILE,
    install_catalog,
    load_known_exploited,
    parse_catalog,
)
from tasks.scanners.vulnerability_data import (
    fetch,
    install_archive,
    load_synced,
    osv_endpoint,
    redact_url,
)
from tests.tasks.scanners.conftest import FIXTURES, OSV_RECORDS

KEV = FIXTURES / "known-exploited" / "catalog.json"


def archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for record in OSV_RECORDS.glob("*.json"):
            zf.write(record, record.name)
    return path


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_fetch_copies_from_http_a_file_url_and_a_path(tmp_path: Path, web: tuple[Path, str]):
    root, url = web
    (root / "all.zip").write_bytes(b"zip bytes")

    assert fetch(f"{url}/all.zip", tmp_path / "a") == 9
    assert fetch(f"file://{root / 'all.zip'}", tmp_path / "b") == 9
    assert fetch(str(root / "all.zip"), tmp_path / "c") == 9
    assert (tmp_path / "c").read_bytes() == b"zip bytes"


def test_a_failed_fetch_leaves_nothing_behind(tmp_path: Path, web: tuple[Path, str]):
    _, url = web
    target = tmp_path / "partial"

    with pytest.raises(InvalidRequest, match=r"could not fetch .*404"):
        fetch(f"{url}/missing.zip", target)
    with pytest.raises(InvalidRequest, match="use http"):
        fetch("ftp://example.invalid/all.zip", target)
    assert not target.exists()


def test_urls_lose_credentials_before_they_are_shown():
    assert redact_url("https://user:pw@mirror.internal:8443/osv/all.zip?token=abc") == (
        "https://mirror.internal:8443/osv/all.zip"
    )
    assert redact_url("/srv/osv/all.zip") == "/srv/osv/all.zip"


def test_a_new_archive_replaces_the_old_only_when_it_holds_advisories(tmp_path: Path):
    installed = tmp_path / "all.zip"

    assert install_archive(archive(tmp_path / "new.zip"), installed) == 4
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(InvalidRequest, match="holds no OSV advisory"):
        install_archive(empty, installed)
    assert len(zipfile.ZipFile(installed).namelist()) == 4


def test_a_mirror_source_is_served_on_a_private_socket_for_the_scan(tmp_path: Path):
    archive(tmp_path / "all.zip")
    source = VulnerabilitySource(kind="mirror", mirror_path=tmp_path)

    with osv_endpoint(source) as server:
        assert server.query_url == "http://127.0.0.1:8765/v1/query"  # inside the sandbox
        socket_path = server.socket_path
        assert socket_path is not None and server.forward is not None
        assert server.forward.socket == socket_path and socket_path.stat().st_mode & 0o170000
        via_socket = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)))
        answer = via_socket.post(
            "http://osv/v1/query",
            json={"package": {"name": "urllib3", "ecosystem": "PyPI"}, "version": "1.26.5"},
        ).json()
        assert [v["id"] for v in answer["vulns"]] == ["PYSEC-2023-192"]
    assert not socket_path.exists()


def test_an_online_source_is_relayed_by_the_platform_through_the_socket(
    osv_server: MirrorServer,
):
    source = VulnerabilitySource(osv_url=osv_server.query_url)  # OSV's API, on loopback here
    with osv_endpoint(source) as server:
        assert server.socket_path is not None
        via_socket = httpx.Client(transport=httpx.HTTPTransport(uds=str(server.socket_path)))
        answer = via_socket.post(
            "http://osv/v1/query",
            json={"package": {"name": "requests", "ecosystem": "PyPI"}, "version": "2.19.0"},
        ).json()
        assert {v["id"] for v in answer["vulns"]} == {"PYSEC-2018-28", "PYSEC-2023-74"}
        refused = via_socket.get("http://osv/v1/vulns/PYSEC-2018-28")
        assert refused.status_code == 404  # only queries cross, nothing else


def test_an_unsynced_mirror_says_how_to_sync(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"has not been synced.*sync-vulnerability-db"):
        load_synced(VulnerabilitySource(kind="mirror", mirror_path=tmp_path))


def test_the_known_exploited_catalog_is_read_installed_and_required(tmp_path: Path):
    catalog = parse_catalog(KEV.read_bytes())
    assert catalog.matches(frozenset({"PYSEC-2018-28", "CVE-2018-18074"})) == {"CVE-2018-18074"}

    with pytest.raises(ConfigurationError, match="no known-exploited catalog"):
        load_known_exploited(tmp_path)
    candidate = tmp_path / "download.json"
    candidate.write_bytes(KEV.read_bytes())
    assert install_catalog(candidate, tmp_path / KNOWN_EXPLOITED_FILE) == 2
    assert len(load_known_exploited(tmp_path)) == 2

    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "not a catalog"}')
    with pytest.raises(ValueError, match="not a KEV catalog"):
        install_catalog(bad, tmp_path / KNOWN_EXPLOITED_FILE)
    assert len(load_known_exploited(tmp_path)) == 2
