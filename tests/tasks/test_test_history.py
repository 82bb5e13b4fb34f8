from __future__ import annotations

from pathlib import Path

import pytest

from tasks import images
from tasks.storage import LocalStore
from tasks.test_history import load_passed_tests, save_passed_tests

DIGEST = "ab" * 32
PASSED = images.TestReport(
    True, 0, (images.TestCase("tests.test_app.AppTest.test_ok", "passed"),), "OK", 0.8
)


def test_a_passed_run_comes_back_naming_the_commit_it_ran_for(tmp_path: Path):
    store = LocalStore(tmp_path)

    save_passed_tests(store, "payments", DIGEST, PASSED, sha="3f2a" * 10)
    found = load_passed_tests(store, "payments", DIGEST)

    assert found is not None and found.reused_from == "3f2a" * 10
    assert (found.passed, found.cases, found.tail) == (True, PASSED.cases, "OK")
    assert load_passed_tests(store, "payments", "cd" * 32) is None
    assert load_passed_tests(store, "orders", DIGEST) is None


def test_failed_and_reused_runs_are_not_kept(tmp_path: Path):
    store = LocalStore(tmp_path)
    failed = images.TestReport(False, 1, (), "FAILED (failures=1)", 0.9)
    reused = images.TestReport(True, 0, (), "OK", 0.8, reused_from="1" * 40)

    save_passed_tests(store, "payments", DIGEST, failed, sha="2" * 40)
    save_passed_tests(store, "payments", DIGEST, reused, sha="3" * 40)

    assert store.list() == []


def test_an_unreadable_record_means_the_tests_run_again(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.put(f"payments/tests/{DIGEST}.json", b"{not json")

    assert load_passed_tests(store, "payments", DIGEST) is None


def test_a_key_is_only_a_service_and_a_digest(tmp_path: Path):
    with pytest.raises(ValueError, match="not a test-inputs digest"):
        load_passed_tests(LocalStore(tmp_path), "payments", "../../etc/passwd")
