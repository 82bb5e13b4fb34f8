"""The artifact store in an S3 bucket, on AWS or any S3-compatible endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as EndpointError
from botocore.utils import determine_content_length

from slipway.errors import ObjectNotFound, StorageError, WriteConflict
from tasks.storage.base import (
    LIST_HINT,
    ObjectStore,
    StoredObject,
    check_key,
    check_prefix,
    key_problem,
)

if TYPE_CHECKING:
    from blocks.s3 import S3Connection

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

_PAGE_SIZE = 1000  # keys per list_objects_v2 request, S3's maximum; tests lower it
_TIMEOUTS = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"max_attempts": 3},
    max_pool_connections=32,  # parallel readers (SBOMs, docs) each keep a connection
)
_CONTINUE_FROM = 1024 * 1024  # bytes; smaller bodies are sent without waiting for 100 Continue
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Store(ObjectStore):
    """Objects in ``bucket`` under ``prefix``, on AWS or any S3-compatible endpoint.

    ``prefix`` gains a final '/' if it lacks one. Pass ``client`` to reuse a boto3
    S3 client; otherwise one is built from ``connection`` with short timeouts.
    """

    def __init__(
        self, *, bucket: str, prefix: str, connection: S3Connection, client: Any | None = None
    ) -> None:
        self._bucket, self._connection = bucket, connection
        self._prefix = check_prefix(prefix).removesuffix("/") + "/" if prefix else ""
        if client is None:
            kwargs = connection.client_kwargs()
            own = kwargs.get("config")
            kwargs["config"] = _TIMEOUTS if own is None else _TIMEOUTS.merge(own)
            client = boto3.client("s3", **kwargs)
            client.meta.events.register("before-send.s3.PutObject", _send_small_bodies_at_once)
        self._client = client

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Turn botocore's errors into ours; S3's own text stays in ``__cause__``."""
        try:
            yield
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, action) from e

    def _fail(self, e: Exception, action: str) -> StorageError:
        code = (
            str(e.response.get("Error", {}).get("Code", "")) if isinstance(e, ClientError) else ""
        )
        url, region = self._connection.endpoint_url, self._connection.region
        host = urlsplit(url).netloc.rpartition("@")[2] if url else f"AWS {region}"  # no userinfo
        what, hint = f"cannot {action} {self.describe()} at {host}", None
        reason = code or type(e).__name__
        if code == "NoSuchKey":
            return ObjectNotFound(f"{what}: no such key", hint=LIST_HINT)
        if isinstance(e, EndpointError):
            reason, hint = "endpoint unreachable", "check the S3 connection's endpoint_url"
        elif isinstance(e, NoCredentialsError):
            reason, hint = "no credentials", "set the S3 connection's keys or boto3's chain"
        elif code in _NO_BUCKET:
            reason = f"bucket {self._bucket!r} does not exist"
            hint = "create it with S3Store.ensure_bucket() (`slipway up` does) or fix `bucket`"
        elif code == "NotImplemented":
            reason = "the endpoint does not implement this request (conditional writes?)"
            hint = "use an S3 endpoint with If-Match/If-None-Match on PutObject (AWS has them)"
        elif code in _DENIED:
            reason, hint = f"access denied ({code})", "check the S3 connection's keys and policy"
        return StorageError(f"{what}: {reason}", hint=hint)

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> StoredObject:  # noqa: D102
        with self._call(f"write {key!r} to"):
            return self._put_object(key, data, content_type, {})

    def _put_object(
        self, key: str, data: bytes, content_type: str | None, conditions: dict[str, str]
    ) -> StoredObject:
        """One PutObject, with ``conditions`` (``IfMatch``/``IfNoneMatch``); the caller maps errors."""
        name, extra = self._name(key), {"ContentType": content_type} if content_type else {}
        sent = self._client.put_object(
            Bucket=self._bucket, Key=name, Body=data, **extra, **conditions
        )
        return StoredObject(key, len(data), str(sent["ETag"]).strip('"'))

    def get(self, key: str) -> bytes:  # noqa: D102
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:  # noqa: D102
        name = self._name(key)
        with self._call(f"read {key!r} from"):
            found = self._client.get_object(Bucket=self._bucket, Key=name)
            data: bytes = found["Body"].read()
        return data, str(found["ETag"]).strip('"')

    def put_if(  # noqa: D102
        self, key: str, data: bytes, *, etag: str | None, content_type: str | None = None
    ) -> StoredObject:
        conditions = {"IfMatch": f'"{etag}"'} if etag is not None else {"IfNoneMatch": "*"}
        with self._call(f"write {key!r} to"):
            try:
                return self._put_object(key, data, content_type, conditions)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                # If-Match on a key deleted since it was read answers "no such key"
                if code in _CONFLICT or (etag is not None and code == "NoSuchKey"):
                    raise WriteConflict(
                        f"{key!r} in {self.describe()} changed since it was read",
                        hint="read it again, apply the change, and write it back",
                    ) from e
                raise

    def exists(self, key: str) -> bool:  # noqa: D102
        name = self._name(key)
        with self._call(f"look up {key!r} in"):
            try:
                self._client.head_object(Bucket=self._bucket, Key=name)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return False  # a HEAD has no body, so a missing bucket looks the same
                raise
        return True

    def list(self, prefix: str = "") -> list[StoredObject]:  # noqa: D102
        start, found = self._prefix + check_prefix(prefix), []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=start, PaginationConfig={"PageSize": _PAGE_SIZE}
        )
        with self._call(f"list {prefix!r} in"):
            for item in (item for page in pages for item in page.get("Contents", [])):
                key = str(item["Key"])[len(self._prefix) :]
                if not key_problem(key):  # skip what get() would refuse, e.g. 'a//b'
                    found.append(StoredObject(key, int(item["Size"]), item["ETag"].strip('"')))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:  # noqa: D102
        name = self._name(key)
        with self._call(f"delete {key!r} from"):
            self._client.delete_object(Bucket=self._bucket, Key=name)

    def check(self) -> None:  # noqa: D102
        with self._call("use"):
            self._client.head_bucket(Bucket=self._bucket)

    def describe(self) -> str:  # noqa: D102
        return f"s3://{self._bucket}/{self._prefix}"

    def ensure_bucket(self, *, versioning: bool = False) -> None:
        """Create the bucket unless it exists; ``versioning`` keeps overwritten objects."""
        region = self._connection.region
        location = {"LocationConstraint": region}  # AWS refuses one for us-east-1
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": location}
        with self._call("create"):
            try:  # BucketAlreadyExists, by contrast, means another account has the name
                self._client.create_bucket(Bucket=self._bucket, **where)
                logger.info("created bucket %s", self._bucket)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            if versioning:
                enabled = {"Status": "Enabled"}
                self._client.put_bucket_versioning(
                    Bucket=self._bucket, VersioningConfiguration=enabled
                )


def _send_small_bodies_at_once(request: Any, **_: Any) -> None:
    """Drop ``Expect: 100-continue`` from a put of a small body.

    botocore asks for it on every put, so each one waits a round trip for the
    server's go-ahead before sending its body. That saves sending a large body
    the server would refuse; for the summaries, SARIF and docs pages the
    platform writes it only adds the wait (about 15% of a put's time on moto).
    """
    size = determine_content_length(request.body)
    if size is not None and size < _CONTINUE_FROM:
        request.headers.pop("Expect", None)
