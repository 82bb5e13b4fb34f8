"""The SBOM index: impact reads 16 shards, gives the answers the SBOMs give, and stays right.

Every test runs on a directory and on S3 (moto) alike, except where it says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from slipway.errors import StorageError, WriteConflict
from tasks.scanners.advisory_impact import affected_by
from tasks.scanners.history import default_branch_scans, save_scan
from tasks.scanners.impact import (
    current_sboms,
    match,
    read_sboms,
    service_versions,
)
from tasks.scanners.sbom_index import INDEX_PREFIX, read_index, shard_key
from tasks.storage import LocalStore, ObjectStore
from tests.tasks.scanners.conftest import OSV_RECORDS
from tests.tasks.scanners.helpers import SCANNED_AT, bom, stored

pytestmark = pytest.mark.timeout(120)

OLD, NEW = "requests==2.19.0", "requests==2.31.0"


def records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(OSV_RECORDS.glob("*.json"))]


def reads(store: ObjectStore) -> list[str]:
    """Record the key of every read the store serves from now on."""
    seen: list[str] = []
    for name in ("get", "get_with_etag"):
        method: Callable[[str], Any] = getattr(store, name)

        def counted(key: str, method: Callable[[str], Any] = method) -> Any:
            seen.append(key)
            return method(key)

        setattr(store, name, counted)
    return seen


def the_old_way(store: ObjectStore, services: list[str], deployed: dict[tuple[str, str], str]):
    """What impact read before the index: each history, then each SBOM."""
    return read_sboms(store, service_versions(store, services, deployed))


def forget_the_index(store: ObjectStore) -> None:
    """Make ``store`` look written before the index existed."""
    for key in store.keys(INDEX_PREFIX):
        store.delete(key)


def fleet(store: ObjectStore, count: int) -> list[str]:
    names = [f"svc-{n:02d}" for n in range(count)]
    for n, name in enumerate(names):
        stored(store, name, f"{n:040x}", OLD if n % 3 == 0 else NEW, "urllib3==1.26.5")
    return names


def test_impact_reads_only_the_index_and_finds_what_the_sboms_say(store: ObjectStore) -> None:
    names = fleet(store, 20)
    expected = the_old_way(store, names, {})

    seen = reads(store)
    *found, unindexed = current_sboms(store, names, {})

    assert tuple(found) == expected
    assert unindexed == []
    assert match(records(), found[0]) == match(records(), expected[0])
    assert seen and all(key.startswith(INDEX_PREFIX) for key in seen), seen
    assert len(set(seen)) <= 16  # where each history and SBOM took 40


def test_a_store_written_before_the_index_is_read_the_old_way_then_indexed(
    store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    names = fleet(store, 12)
    forget_the_index(store)
    expected = the_old_way(store, [*names, "never-scanned"], {})

    with caplog.at_level(logging.WARNING, logger="tasks.scanners.impact"):
        *found, unindexed = current_sboms(store, [*names, "never-scanned"], {})
    assert tuple(found) == expected
    assert unindexed == [*names, "never-scanned"]
    assert "the SBOM index has no entry for 13 of 13 services" in caplog.text

    caplog.clear()
    seen = reads(store)
    assert current_sboms(store, [*names, "never-scanned"], {}) == (*expected, [])
    assert all(key.startswith(INDEX_PREFIX) for key in seen), seen
    assert "no entry" not in caplog.text
    assert affected_by(store, records(), [*names, "never-scanned"], {}).unindexed == ()
    assert read_index(store).entries["never-scanned"].sha is None


def test_a_new_scan_moves_the_entry_and_deployed_commits_still_count(store: ObjectStore) -> None:
    stored(store, "payments", "a" * 40, OLD)
    stored(store, "payments", "b" * 40, NEW, scanned_at=SCANNED_AT + timedelta(hours=1))
    deployed = {("payments", "prod"): "a" * 40, ("payments", "staging"): "b" * 40}

    sboms, unscanned, _ = current_sboms(store, ["payments"], deployed)

    assert read_index(store).entries["payments"].sha == "b" * 40
    assert (sboms, unscanned) == the_old_way(store, ["payments"], deployed)
    assert [(s.version.sha[:1], s.version.where) for s in sboms] == [
        ("b", ("default branch", "staging")),
        ("a", ("prod",)),
    ]
    assert {(i.sha[:1], i.advisory) for i in match(records(), sboms)} == {
        ("a", "PYSEC-2018-28"),
        ("a", "PYSEC-2023-74"),
    }


def test_a_default_branch_scan_reads_its_shard_once_and_not_its_own_sbom_back(
    store: ObjectStore,
) -> None:
    stored(store, "payments", "a" * 40, OLD)
    reads: dict[str, list[str]] = {"get": [], "get_with_etag": []}
    for name, keys in reads.items():
        real = getattr(store, name)

        def counted(key: str, real: Callable[[str], Any] = real, keys: list[str] = keys) -> Any:
            keys.append(key)
            return real(key)

        setattr(store, name, counted)
    stored(store, "payments", "b" * 40, NEW, scanned_at=SCANNED_AT + timedelta(hours=1))

    assert reads["get_with_etag"].count(shard_key("payments")) == 1
    assert not [key for key in reads["get"] if key.endswith("sbom.cdx.json")]
    assert read_index(store).entries["payments"].sha == "b" * 40


def test_a_rescan_of_the_current_commit_replaces_its_components(store: ObjectStore) -> None:
    scan = stored(store, "payments", "a" * 40, NEW)
    save_scan(store, scan, sarif={}, sbom=bom(OLD).encode())  # e.g. a newer SBOM tool

    sboms, _, _ = current_sboms(store, ["payments"], {})

    assert [c.version for c in sboms[0].components] == ["2.19.0"]


def test_a_scan_written_between_a_read_and_a_write_of_a_shard_is_kept(
    store: ObjectStore,
) -> None:
    """The conflict is forced: another scan's entry lands after ours read the shard."""
    # Two services in one shard.
    names = [f"svc-{n}" for n in range(40)]
    first, second = next(
        (a, b) for a in names for b in names if a < b and shard_key(a) == shard_key(b)
    )
    stored(store, first, "a" * 40, OLD)
    real = store.get_with_etag
    shard_reads: list[str] = []
    racing_now = False

    def racing(key: str) -> tuple[bytes, str]:
        nonlocal racing_now
        found = real(key)
        if key == shard_key(first) and not racing_now:
            shard_reads.append(key)
            if len(shard_reads) == 1:  # the index entry's one read
                racing_now = True
                stored(store, second, "c" * 40, NEW)  # lands in between
                racing_now = False
        return found

    setattr(store, "get_with_etag", racing)  # noqa: B010
    stored(store, first, "b" * 40, NEW, scanned_at=SCANNED_AT + timedelta(hours=1))
    assert len(shard_reads) == 2  # the write conflicted, so the shard was read again

    entries = read_index(store).entries
    assert (entries[first].sha, entries[second].sha) == ("b" * 40, "c" * 40)


def test_a_shard_that_cannot_be_read_is_read_around_and_rewritten(
    store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    names = fleet(store, 6)
    expected = the_old_way(store, names, {})
    broken = shard_key(names[0])
    store.put(broken, b"{not json")

    with caplog.at_level(logging.WARNING):
        assert current_sboms(store, names, {})[:2] == expected
    assert "ignoring the unreadable SBOM index shard" in caplog.text

    assert json.loads(store.get(broken))["services"][names[0]]["sha"] == f"{0:040x}"


def test_a_scan_whose_entry_cannot_be_written_fails_before_its_history_moves(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(store, "payments", "a" * 40, OLD)

    def always_conflicts(key: str, data: bytes, **_: Any) -> Any:
        raise WriteConflict(f"{key} changed")

    monkeypatch.setattr(store, "put_if", always_conflicts)
    monkeypatch.setattr("tasks.scanners.sbom_index.time.sleep", lambda _: None)
    with pytest.raises(StorageError, match="could not update the SBOM index shard"):
        stored(store, "payments", "b" * 40, NEW, scanned_at=SCANNED_AT + timedelta(hours=1))

    assert [s.sha for s in default_branch_scans(store, "payments")] == ["a" * 40]
    assert read_index(store).entries["payments"].sha == "a" * 40


def test_concurrent_scans_of_many_services_keep_every_entry(tmp_path: Path) -> None:
    """A directory store only: moto checks a condition and writes in two steps, S3 in one."""
    store = LocalStore(tmp_path)
    names = [f"svc-{n:02d}" for n in range(48)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: stored(store, names[n], f"{n:040x}", NEW), range(len(names))))

    entries = read_index(store).entries
    assert {s: entries[s].sha for s in names} == {s: f"{n:040x}" for n, s in enumerate(names)}
