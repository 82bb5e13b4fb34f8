"""The webhook bridge over real HTTP, in a real `slipway up`, posting to a real Prefect."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from deployments.bridge import MAX_BODY_BYTES, build_app
from deployments.webhooks import Provider, event_id
from tests.deployments.conftest import Up, free_port, slipway_env

SERVICE = "payments"


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[tuple[Up, str]]:
    home = tmp_path_factory.mktemp("bridge") / "home"
    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    up = Up(home, ports, slipway_env())
    try:
        up.start()
        subprocess.run(
            ["git", "init", "--quiet", "--bare", str(home / "git" / f"{SERVICE}.git")], check=True
        )
        script = (
            "from blocks.webhook import load_webhook_secret as s; print(s().get_secret_value())"
        )
        secret = subprocess.run(
            [sys.executable, "-c", script],
            env=dict(up.env, PREFECT_API_URL=up.api),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        yield up, secret
    finally:
        up.kill()


def _push(repository: str = SERVICE, **overrides: object) -> bytes:
    payload = {
        "ref": "refs/heads/main",
        "before": "a" * 40,
        "after": "c" * 40,
        "repository": {"name": repository},
        "pusher": {"name": "ada"},
        "commits": [{"added": [], "modified": ["app/server.py"], "removed": []}],
    }
    payload.update(overrides)
    return json.dumps(payload).encode()


def _send(
    up: Up, secret: str, body: bytes, *, event: str = "push", delivery: str | None = None
) -> httpx.Response:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    url = f"http://127.0.0.1:{up.ports['bridge']}/hooks/github"
    return httpx.post(url, content=body, headers=headers, timeout=30)


def _events_with_id(up: Up, wanted: str, *, settle: float = 10) -> list[dict[str, object]]:
    """Prefect stores events asynchronously: poll until the event shows, then once more."""
    body = {"filter": {"id": {"id": [wanted]}, "occurred": {"since": "2020-01-01T00:00:00Z"}}}
    deadline = time.monotonic() + settle
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        found = httpx.post(f"{up.api}/events/filter", json=body, timeout=10).json()["events"]
        if found:
            break
        time.sleep(0.2)
    return found


def test_signed_push_becomes_one_prefect_event_even_when_redelivered(running):
    up, secret = running
    delivery = str(uuid.uuid4())
    first = _send(up, secret, _push(), delivery=delivery)
    assert first.status_code == 200, first.text
    expected = str(event_id(Provider.GITHUB, delivery))
    assert first.json()["event_id"] == expected

    again = _send(up, secret, _push(), delivery=delivery)  # GitHub's "Redeliver"
    assert again.status_code == 200 and again.json()["event_id"] == expected

    events = _events_with_id(up, expected)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "slipway.git.push"
    assert event["resource"]["prefect.resource.id"] == f"slipway.service.{SERVICE}"
    assert event["payload"]["after"] == "c" * 40
    assert event["payload"]["changed_paths"] == ["app/server.py"]
    time.sleep(1)
    assert len(_events_with_id(up, expected)) == 1


def test_bad_signature_is_refused_and_emits_no_event(running):
    up, secret = running
    delivery = str(uuid.uuid4())
    response = _send(up, secret + "x", _push(), delivery=delivery)
    assert response.status_code == 401
    assert _events_with_id(up, str(event_id(Provider.GITHUB, delivery)), settle=2) == []


@pytest.mark.parametrize(
    ("event", "body", "status", "reason"),
    [
        ("ping", b'{"zen": "Keep it logically awesome."}', 200, "pong"),
        ("issues", b"{}", 202, "not handled"),
        ("push", b"{not json", 400, "not a github push payload"),
        ("push", _push(repository="unknown-service"), 202, "not a known service"),
        ("push", _push(after="0" * 40, deleted=True), 202, "was deleted"),
    ],
)
def test_each_kind_of_delivery_gets_its_answer(running, event, body, status, reason):
    up, secret = running
    response = _send(up, secret, body, event=event)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]


def test_a_body_over_25_mb_is_refused(running):
    up, secret = running
    response = _send(up, secret, b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413


def test_the_secret_never_reaches_the_bridges_log(running):
    up, secret = running
    _send(up, secret + "x", _push())  # a refusal is logged
    _send(up, secret, _push())  # and so is an acceptance
    log = (up.home / "logs" / "bridge.log").read_text()
    assert "refused" in log and "became event" in log
    assert secret not in log


def test_prefect_outage_answers_503_so_the_sender_redelivers():
    dead_api = f"http://127.0.0.1:{free_port()}/api"
    app = build_app(api_url=dead_api, secret=SecretStr("s3"), is_service=lambda name: True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        body = _push()
        signature = hmac.new(b"s3", body, hashlib.sha256).hexdigest()
        response = httpx.post(
            f"http://127.0.0.1:{port}/hooks/github",
            content=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature}"},
            timeout=30,
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "10"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
