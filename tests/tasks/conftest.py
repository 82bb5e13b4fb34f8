"""Fixtures for the tasks' tests: a real moto S3 server on loopback, and stores on it."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from blocks.s3 import S3Connection
from tasks.storage import LocalStore, ObjectStore, S3Store

SECRET = "slipway-test-secret-7Qx9pL2m"
"""The S3 secret key of every test connection; no message or log may ever show it."""


@pytest.fixture
def s3_connection(moto_endpoint: str) -> S3Connection:
    return S3Connection(
        endpoint_url=moto_endpoint,
        access_key_id="AKIASLIPWAYTEST",
        secret_access_key=SECRET,
        path_style=True,
    )


@pytest.fixture
def s3_client(s3_connection: S3Connection) -> object:
    """A raw client on the same server, to look behind the store's back."""
    return boto3.client("s3", **s3_connection.client_kwargs())


@pytest.fixture
def bucket() -> str:
    return f"slipway-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_store(s3_connection: S3Connection, bucket: str) -> S3Store:
    store = S3Store(bucket=bucket, prefix="slipway/", connection=s3_connection)
    store.ensure_bucket()
    return store


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "artifacts")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each contract test runs against both kinds of store."""
    fixture: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return fixture
