from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from slipway.errors import InvalidRequest, PortInUse
from tasks.osv_mirror import MirrorServer, OsvMirror, affects, serve
from tests.tasks.scanners.conftest import OSV_RECORDS


def _query(server: MirrorServer, name: str, version: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"package": {"name": name, "ecosystem": "PyPI"}}
    if version is not None:
        body["version"] = version
    response = httpx.post(server.query_url, json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def _ids(answer: dict[str, Any]) -> set[str]:
    return {v["id"] for v in answer.get("vulns", [])}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.26.5", {"PYSEC-2023-192"}),  # inside [0, 1.26.17)
        ("2.0.3", {"PYSEC-2023-192"}),  # inside [2.0.0, 2.0.6)
        ("1.26.17", set()),
        ("1.26.18", set()),
        ("2.0.6", set()),
        ("2.2.0", set()),
    ],
)
def test_query_over_http_honours_both_intervals_of_a_range(
    osv_server: MirrorServer, version: str, expected: set[str]
):
    assert _ids(_query(osv_server, "urllib3", version)) == expected


def test_requests_2_19_0_is_affected_by_both_requests_advisories(osv_server: MirrorServer):
    assert _ids(_query(osv_server, "requests", "2.19.0")) == {"PYSEC-2018-28", "PYSEC-2023-74"}
    assert _ids(_query(osv_server, "requests", "2.2.1")) == {"PYSEC-2018-28"}
    assert _query(osv_server, "requests", "2.31.0") == {}  # OSV's own empty answer


def test_package_names_are_compared_pep503_normalised(osv_server: MirrorServer):
    assert _ids(_query(osv_server, "Jinja2", "2.8")) == {"PYSEC-2019-220"}
    assert _ids(_query(osv_server, "jinja2", "2.8.1")) == set()
    assert _ids(_query(osv_server, "URLLIB3", None)) == {"PYSEC-2023-192"}


def test_served_timestamps_use_the_z_form_pip_audit_parses(osv_server: MirrorServer):
    (record,) = _query(osv_server, "urllib3", "1.26.5")["vulns"]
    assert record["published"] == "2023-10-04T17:15:00Z"
    assert record["modified"] == "2023-11-08T03:43:38.123456Z"
    assert record["aliases"] == ["CVE-2023-43804", "GHSA-v845-jxx5-vc9f"]


def test_querybatch_answers_ids_per_query_in_order(osv_server: MirrorServer):
    queries = [
        {"package": {"name": "urllib3", "ecosystem": "PyPI"}, "version": "2.0.6"},
        {"package": {"name": "requests", "ecosystem": "PyPI"}, "version": "2.19.0"},
    ]
    response = httpx.post(f"{osv_server.url}/v1/querybatch", json={"queries": queries}, timeout=5)

    first, second = response.json()["results"]
    assert first == {}
    assert {v["id"] for v in second["vulns"]} == {"PYSEC-2018-28", "PYSEC-2023-74"}


def test_one_record_by_id_and_errors_for_bad_requests(osv_server: MirrorServer):
    assert httpx.get(f"{osv_server.url}/v1/vulns/PYSEC-2018-28").json()["id"] == "PYSEC-2018-28"
    assert httpx.get(f"{osv_server.url}/v1/vulns/PYSEC-0000-0").status_code == 404
    assert httpx.post(osv_server.query_url, content=b"not json").status_code == 400
    assert httpx.post(osv_server.query_url, json={"version": "1.0"}).status_code == 400


def test_an_explicit_versions_list_counts_as_affected():
    record = {
        "id": "TEST-1",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo"}, "versions": ["1.0rc1"]}],
    }
    assert affects(record, "PyPI", "Demo", "1.0rc1")
    assert not affects(record, "PyPI", "demo", "1.0")


def test_sync_from_a_zip_replaces_the_records(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(OSV_RECORDS / "PYSEC-2019-220.json", "PYSEC-2019-220.json")
        zf.writestr("broken.json", "{not json")
    mirror = OsvMirror.load(OSV_RECORDS)
    assert len(mirror) == 4

    assert mirror.sync_from(archive) == 1

    assert mirror.query("requests", "2.19.0") == []
    assert [r["id"] for r in mirror.query("jinja2", "2.7")] == ["PYSEC-2019-220"]


def test_a_bad_sync_source_is_refused_and_keeps_the_records(tmp_path: Path):
    mirror = OsvMirror.load(OSV_RECORDS)
    not_a_zip = tmp_path / "all.zip"
    not_a_zip.write_text(json.dumps({"id": "x"}))

    for source in (tmp_path / "missing", not_a_zip):
        with pytest.raises(InvalidRequest, match="neither a directory nor a zip"):
            mirror.sync_from(source)
    assert len(mirror) == 4


def test_a_taken_port_is_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUse):
            serve(OsvMirror(), port=taken.getsockname()[1])


def test_stop_frees_the_port_and_may_be_called_twice():
    server = serve(OsvMirror())
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.query_url, json={}, timeout=2)
