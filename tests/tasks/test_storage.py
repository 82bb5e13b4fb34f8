"""The artifact store's contract, run against a directory and a real S3 (moto) alike."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from botocore.exceptions import ClientError

import tasks.storage as storage
from blocks.artifact_store import ArtifactStore
from blocks.s3 import S3Connection
from slipway.errors import (
    ConfigurationError,
    InvalidRequest,
    ObjectNotFound,
    SlipwayError,
    StorageError,
    WriteConflict,
)
from tasks.storage import LocalStore, ObjectStore, S3Store, check_key, open_store
from tests.tasks.conftest import SECRET

BAD_KEYS = [
    pytest.param("", "must not be empty", id="empty"),
    pytest.param("/etc/passwd", "no leading '/'", id="leading-slash"),
    pytest.param("a/../../b", "'..' segments", id="dotdot"),
    pytest.param("./a", "'.' or '..' segments", id="dot"),
    pytest.param("a//b", "empty segments", id="empty-segment"),
    pytest.param("a/b/", "empty segments", id="trailing-slash"),
    pytest.param("a\\..\\b", "backslashes", id="backslash"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("a/.slipway-partial-1", "reserved", id="reserved"),
    pytest.param("k" * 1025, "1024 bytes", id="too-long"),
]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class Tripwire:
    """An S3 client that fails the test if the store calls it at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store called S3's {name} for a key it should have refused")


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- The contract, for both stores -------------------------------------------------


def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    data = bytes(range(256)) * 3
    store.put("payments/3f2a/scan.sarif", data)
    store.put("payments/3f2a/empty.txt", b"")
    assert store.get("payments/3f2a/scan.sarif") == data
    assert store.get("payments/3f2a/empty.txt") == b""


def test_put_reports_the_size_and_the_md5_of_the_content(store: ObjectStore) -> None:
    stored = store.put("docs/index.html", b"<h1>hi</h1>", content_type="text/html")
    assert (stored.key, stored.size, stored.etag) == ("docs/index.html", 11, md5(b"<h1>hi</h1>"))


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("a.txt", b"old")
    stored = store.put("a.txt", b"newer")
    assert store.get("a.txt") == b"newer"
    assert store.list() == [stored]


def test_exists_is_true_only_for_a_stored_key(store: ObjectStore) -> None:
    store.put("docs/a/index.html", b"x")
    assert store.exists("docs/a/index.html")
    assert not store.exists("docs/a")  # a "directory" is not an object
    assert not store.exists("docs/a/other.html")


def test_list_returns_every_object_below_the_prefix_sorted_by_key(store: ObjectStore) -> None:
    for key in ["b/2.txt", "a/z.txt", "a/b/c/deep.txt", "a/b.txt", "ab.txt", "c.txt"]:
        store.put(key, key.encode())
    everything = ["a/b.txt", "a/b/c/deep.txt", "a/z.txt", "ab.txt", "b/2.txt", "c.txt"]
    assert [o.key for o in store.list()] == everything
    assert [o.key for o in store.list("a/")] == ["a/b.txt", "a/b/c/deep.txt", "a/z.txt"]
    assert [o.key for o in store.list("a")] == ["a/b.txt", "a/b/c/deep.txt", "a/z.txt", "ab.txt"]
    assert [o.key for o in store.list("a/b")] == ["a/b.txt", "a/b/c/deep.txt"]
    assert store.list("nothing/") == []


def test_list_reports_the_same_size_and_etag_as_put(store: ObjectStore) -> None:
    stored = [store.put(f"r/{i}.json", b"{}" * i) for i in range(3)]
    assert store.list("r/") == stored


def test_list_of_an_empty_store_is_empty(store: ObjectStore) -> None:
    assert store.list() == []


def test_get_of_a_missing_key_raises_object_not_found_naming_the_key(store: ObjectStore) -> None:
    store.put("docs/a.html", b"x")
    for key in ["docs/missing.html", "docs"]:
        with pytest.raises(ObjectNotFound, match=re.escape(repr(key))) as caught:
            store.get(key)
        assert isinstance(caught.value, KeyError)
        assert "list()" in str(caught.value)  # the hint


def test_delete_removes_the_object(store: ObjectStore) -> None:
    store.put("a/b.txt", b"x")
    store.put("a/c.txt", b"y")
    store.delete("a/b.txt")
    assert not store.exists("a/b.txt")
    assert [o.key for o in store.list()] == ["a/c.txt"]


def test_deleting_a_missing_key_is_a_noop(store: ObjectStore) -> None:
    store.put("a/b.txt", b"x")
    store.delete("never/stored.txt")
    store.delete("a")  # a "directory" holding an object is not an object itself
    store.delete("a/b.txt/below")
    assert store.get("a/b.txt") == b"x"


def test_get_with_etag_gives_the_content_and_the_etag_put_reported(store: ObjectStore) -> None:
    put = store.put("a/b.json", b"{}")

    assert store.get_with_etag("a/b.json") == (b"{}", put.etag)
    with pytest.raises(ObjectNotFound):
        store.get_with_etag("a/missing.json")


def test_put_if_writes_only_over_the_etag_it_was_given(store: ObjectStore) -> None:
    first = store.put_if("index.json", b"one", etag=None)  # absent: created
    with pytest.raises(WriteConflict, match="changed since it was read"):
        store.put_if("index.json", b"two", etag=None)  # present now
    second = store.put_if("index.json", b"two", etag=first.etag)
    with pytest.raises(WriteConflict):
        store.put_if("index.json", b"three", etag=first.etag)  # stale
    with pytest.raises(WriteConflict):
        store.put_if("missing.json", b"x", etag=first.etag)  # nothing to match

    assert store.get_with_etag("index.json") == (b"two", second.etag)
    assert not store.exists("missing.json")
    assert [o.key for o in store.list()] == ["index.json"]  # no lock file shows


def test_local_put_if_lets_concurrent_writers_take_turns(tmp_path: Path) -> None:
    """Each of 40 read-change-write loops on 8 threads counts once: none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path)
    store.put("counter", b"0")

    def increment(_: int) -> None:
        for _attempt in range(1000):
            data, etag = store.get_with_etag("counter")
            try:
                store.put_if("counter", str(int(data) + 1).encode(), etag=etag)
                return
            except WriteConflict:
                continue
        raise AssertionError("never got a turn")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(increment, range(40)))

    assert store.get("counter") == b"40"


def test_check_passes_on_a_usable_store(store: ObjectStore) -> None:
    store.check()


@pytest.mark.parametrize(("key", "rule"), BAD_KEYS)
def test_each_bad_key_is_refused_naming_the_rule(store: ObjectStore, key: str, rule: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ]
    for call in calls:
        with pytest.raises(InvalidRequest, match=re.escape(rule)):
            call()
    assert store.list() == []


@pytest.mark.parametrize("prefix", ["/a", "a/../", "..", "a//", "a\\b/", "a\x00/"])
def test_a_bad_list_prefix_is_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidRequest, match="prefix"):
        store.list(prefix)


@pytest.mark.parametrize(("key", "rule"), BAD_KEYS)
def test_a_bad_key_is_refused_before_the_store_is_touched(
    tmp_path: Path, key: str, rule: str
) -> None:
    local = LocalStore(tmp_path / "not-yet")
    s3 = S3Store(bucket="never-used", prefix="", connection=S3Connection(), client=Tripwire())
    for store in (local, s3):
        with pytest.raises(InvalidRequest, match=re.escape(rule)):
            store.put(key, b"x")
        with pytest.raises(InvalidRequest, match=re.escape(rule)):
            store.get(key)
    assert not (tmp_path / "not-yet").exists()


def test_check_key_returns_a_good_key_unchanged() -> None:
    for key in ["a", "payments/3f2a/scan.sarif", ".well-known/x", "a b/ü.txt", "a..b/c"]:
        assert check_key(key) == key


# --- LocalStore --------------------------------------------------------------------


def test_local_put_creates_directories_and_leaves_no_partial_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    store.put("a/b/c.txt", b"x")
    store.put("a/b/c.txt", b"y")
    assert files_under(tmp_path / "artifacts") == ["a/b/c.txt"]
    assert store.describe() == str(tmp_path / "artifacts")


def test_local_write_below_an_object_raises_storage_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    store.put("a", b"1")
    with pytest.raises(StorageError, match="cannot write 'a/b'"):
        store.put("a/b", b"2")
    assert files_under(tmp_path) == ["a"]


def test_local_key_through_a_symlinked_directory_out_of_the_root_is_refused(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    store = LocalStore(tmp_path / "artifacts")
    store.put("ok.txt", b"ok")
    (tmp_path / "artifacts" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidRequest, match="symlink"):
        store.put("link/new.txt", b"x")
    with pytest.raises(InvalidRequest, match="symlink"):
        store.get("link/secret.txt")
    with pytest.raises(InvalidRequest, match="symlink"):
        store.delete("link/secret.txt")
    assert files_under(outside) == ["secret.txt"]
    assert [o.key for o in store.list()] == ["ok.txt"]
    assert store.list("link/") == []


def test_local_symlinked_file_out_of_the_root_cannot_be_read_or_listed(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"secret")
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    store = LocalStore(root)
    with pytest.raises(InvalidRequest, match="symlink"):
        store.get("leak.txt")
    with pytest.raises(InvalidRequest, match="symlink"):
        store.exists("leak.txt")
    assert store.list() == []


def test_local_symlink_that_stays_inside_the_root_is_followed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("real/x.txt", b"x")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert store.get("alias/x.txt") == b"x"


def test_local_list_reports_a_file_changed_behind_the_stores_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    put = store.put("docs/a.html", b"first")
    assert [o.etag for o in store.list("docs/")] == [put.etag]
    path = tmp_path / "artifacts" / "docs" / "a.html"
    path.write_bytes(b"other")  # same size, rewritten in place: the kept MD5 is stale
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert [o.etag for o in store.list("docs/")] == [hashlib.md5(b"other").hexdigest()]
    copied = tmp_path / "artifacts" / "docs" / "b.html"
    copied.write_bytes(b"copied in")  # no kept MD5 at all
    listed = {o.key: o.etag for o in store.list("docs/")}
    assert listed["docs/b.html"] == hashlib.md5(b"copied in").hexdigest()


def test_local_check_creates_a_missing_root(tmp_path: Path) -> None:
    LocalStore(tmp_path / "new" / "artifacts").check()
    assert (tmp_path / "new" / "artifacts").is_dir()
    assert files_under(tmp_path) == []


def test_local_check_on_a_root_that_is_a_file_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="local_path") as caught:
        LocalStore(tmp_path / "file").check()
    assert str(tmp_path / "file") in str(caught.value)


def test_local_list_of_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert LocalStore(tmp_path / "missing").list() == []


# --- S3Store against moto ----------------------------------------------------------


def test_s3_etag_is_s3s_own_etag(s3_store: S3Store, s3_client: Any, bucket: str) -> None:
    stored = s3_store.put("a.txt", b"hello")
    head = s3_client.head_object(Bucket=bucket, Key="slipway/a.txt")
    assert stored.etag == head["ETag"].strip('"') == md5(b"hello")


def test_s3_keys_live_under_the_store_prefix_with_their_content_type(
    s3_store: S3Store, s3_client: Any, bucket: str
) -> None:
    s3_store.put("docs/index.html", b"<p/>", content_type="text/html")
    listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["slipway/docs/index.html"]
    head = s3_client.head_object(Bucket=bucket, Key="slipway/docs/index.html")
    assert head["ContentType"] == "text/html"


def test_s3_prefix_without_a_final_slash_gains_one(
    s3_connection: S3Connection, s3_client: Any, bucket: str
) -> None:
    store = S3Store(bucket=bucket, prefix="team", connection=s3_connection)
    store.ensure_bucket()
    store.put("a.txt", b"x")
    assert store.describe() == f"s3://{bucket}/team/"
    assert s3_client.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"] == "team/a.txt"


def test_s3_store_with_a_bad_prefix_is_refused(s3_connection: S3Connection) -> None:
    with pytest.raises(InvalidRequest, match=re.escape("'..'")):
        S3Store(bucket="b-b-b", prefix="../up/", connection=s3_connection)


def test_s3_list_follows_every_page(
    s3_connection: S3Connection, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("s3", **s3_connection.client_kwargs())
    requests: list[int] = []
    client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2",
        lambda params, **_: requests.append(params["MaxKeys"]),
    )
    store = S3Store(bucket=bucket, prefix="p/", connection=s3_connection, client=client)
    store.ensure_bucket()
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        store.put(key, b"x")
    monkeypatch.setattr(storage.s3, "_PAGE_SIZE", 2)
    assert [o.key for o in store.list()] == keys
    assert requests == [2, 2, 2]


class _PutRecorder(BaseHTTPRequestHandler):
    """An S3 endpoint that takes any put, noting whether it asked for 100 Continue."""

    protocol_version = "HTTP/1.1"  # so a request's Expect gets its 100 Continue
    expects: ClassVar[list[str | None]] = []

    def do_PUT(self) -> None:
        self.expects.append(self.headers.get("Expect"))
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_s3_put_sends_a_small_body_at_once_and_a_large_one_after_100_continue() -> None:
    _PutRecorder.expects = []
    with ThreadingHTTPServer(("127.0.0.1", 0), _PutRecorder) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        connection = S3Connection(
            endpoint_url=endpoint, access_key_id="AKIASLIPWAYTEST", secret_access_key=SECRET
        )
        store = S3Store(bucket="b-b-b", prefix="", connection=connection)
        store.put("small", b"x" * 1000)
        store.put("large", b"x" * (1024 * 1024))
        server.shutdown()
    assert _PutRecorder.expects == [None, "100-continue"]


def test_s3_list_skips_keys_that_get_would_refuse(
    s3_store: S3Store, s3_client: Any, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="slipway/a//b", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="slipway/../up", Body=b"x")
    s3_store.put("ok", b"x")
    assert [o.key for o in s3_store.list()] == ["ok"]


def test_s3_check_on_a_missing_bucket_names_the_bucket(s3_connection: S3Connection) -> None:
    store = S3Store(bucket="no-such-bucket-here", prefix="", connection=s3_connection)
    with pytest.raises(StorageError, match="'no-such-bucket-here' does not exist") as caught:
        store.check()
    assert "ensure_bucket" in str(caught.value)


def test_s3_get_from_a_missing_bucket_is_a_storage_error_not_object_not_found(
    s3_connection: S3Connection,
) -> None:
    store = S3Store(bucket="no-such-bucket-here", prefix="", connection=s3_connection)
    with pytest.raises(StorageError, match="does not exist") as caught:
        store.get("a.txt")
    assert not isinstance(caught.value, ObjectNotFound)


def test_ensure_bucket_creates_the_bucket_with_versioning(
    s3_connection: S3Connection, s3_client: Any, bucket: str
) -> None:
    store = S3Store(bucket=bucket, prefix="", connection=s3_connection)
    store.ensure_bucket(versioning=True)
    store.check()
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_ensure_bucket_on_an_existing_bucket_keeps_its_objects(s3_store: S3Store) -> None:
    s3_store.put("a.txt", b"x")
    s3_store.ensure_bucket()
    s3_store.ensure_bucket(versioning=True)
    assert s3_store.get("a.txt") == b"x"


def test_ensure_bucket_outside_us_east_1_sets_the_location(moto_endpoint: str, bucket: str) -> None:
    connection = S3Connection(
        endpoint_url=moto_endpoint,
        region="eu-west-1",
        access_key_id="AKIASLIPWAYTEST",
        secret_access_key=SECRET,
        path_style=True,
    )
    S3Store(bucket=bucket, prefix="", connection=connection).ensure_bucket()
    raw = boto3.client("s3", **connection.client_kwargs())
    assert raw.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


def test_s3_check_against_a_closed_port_fails_fast_with_an_endpoint_hint() -> None:
    connection = S3Connection(
        endpoint_url=f"http://127.0.0.1:{unused_port()}",
        access_key_id="AKIASLIPWAYTEST",
        secret_access_key=SECRET,
        path_style=True,
    )
    store = S3Store(bucket="some-bucket", prefix="", connection=connection)
    started = time.monotonic()
    with pytest.raises(StorageError, match="endpoint unreachable") as caught:
        store.check()
    assert time.monotonic() - started < 10
    assert "endpoint_url" in str(caught.value)


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_s3_access_denied_says_to_check_the_keys(code: str) -> None:
    class Refusing:
        def head_bucket(self, **_: Any) -> None:
            error = {"Error": {"Code": code, "Message": f"signed with {SECRET}"}}
            raise ClientError(error, "HeadBucket")

    store = S3Store(bucket="b-b-b", prefix="", connection=S3Connection(), client=Refusing())
    with pytest.raises(StorageError, match=f"access denied \\({code}\\)") as caught:
        store.check()
    assert "keys" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_no_error_message_or_log_shows_the_secret(
    s3_connection: S3Connection, s3_store: S3Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore's own debug logs included
    closed = s3_connection.model_copy(update={"endpoint_url": f"http://127.0.0.1:{unused_port()}"})
    failures: list[Callable[[], object]] = [
        lambda: s3_store.get("missing.txt"),
        lambda: s3_store.get("../bad"),
        lambda: S3Store(bucket="no-such-bucket-here", prefix="", connection=s3_connection).check(),
        lambda: S3Store(bucket="some-bucket", prefix="", connection=closed).check(),
    ]
    messages = [s3_store.describe(), repr(s3_connection), str(s3_connection)]
    for failure in failures:
        with pytest.raises(SlipwayError) as caught:
            failure()
        messages += [str(caught.value), repr(caught.value)]
    assert all(SECRET not in message for message in messages)
    assert SECRET not in caplog.text


# --- open_store --------------------------------------------------------------------


def test_open_store_gives_a_local_store_below_the_blocks_prefix(tmp_path: Path) -> None:
    store = open_store(ArtifactStore(kind="local", local_path=tmp_path, prefix="team/"))
    assert isinstance(store, LocalStore)
    store.put("a.txt", b"x")
    assert (tmp_path / "team" / "a.txt").read_bytes() == b"x"


def test_open_store_gives_an_s3_store_on_the_blocks_connection(
    s3_connection: S3Connection, bucket: str
) -> None:
    block = ArtifactStore(kind="s3", bucket=bucket, prefix="team", s3=s3_connection)
    store = open_store(block)
    assert isinstance(store, S3Store)
    assert store.describe() == f"s3://{bucket}/team/"
    store.ensure_bucket()
    store.put("a.txt", b"x")
    assert store.get("a.txt") == b"x"


def test_an_endpoint_with_userinfo_is_shown_without_it() -> None:
    # The block refuses such a URL; the store still never repeats one it is given.
    connection = S3Connection.model_construct(
        endpoint_url=f"http://user:{SECRET}@127.0.0.1:{unused_port()}",
        region="us-east-1",
        access_key_id=None,
        secret_access_key=None,
        path_style=True,
    )
    store = S3Store(bucket="some-bucket", prefix="", connection=connection)
    with pytest.raises(StorageError, match=re.escape("at 127.0.0.1:")) as caught:
        store.check()
    assert SECRET not in str(caught.value)


def test_open_store_refuses_a_block_without_a_location() -> None:
    block = ArtifactStore.model_construct(kind="s3", bucket=None, prefix="", s3=None)
    with pytest.raises(ConfigurationError, match="no location"):
        open_store(block)
