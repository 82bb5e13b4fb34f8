"""The webhook bridge over real HTTP, in a real `slipway up`, posting to a real Prefect."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from blocks import GitServer
from deployments.bridge import MAX_BODY_BYTES, EventPoster, build_app, push_event
from deployments.post_receive import spool_delivery
from deployments.spool import Redelivery, redeliver
from deployments.webhooks import Provider, event_id, parse_push
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import PushHook, create_repository
from tests.deployments.conftest import Up, free_port, slipway_env

SERVICE = "payments"


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[tuple[Up, str]]:
    home = tmp_path_factory.mktemp("bridge") / "home"
    ports = {name: free_port() for name in ("prefect", "docs", "registry", "bridge")}
    up = Up(home, ports, slipway_env())
    try:
        up.start()
        register(up, SERVICE)
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


@pytest.mark.parametrize(
    ("ref", "preview"),
    [
        ("refs/heads/main", ""),
        ("refs/heads/feature/Fix_login", "preview-feature-fix-login"),
        ("refs/heads/___", ""),  # names no environment: no preview, still an event
        ("refs/tags/v1.0", ""),
    ],
)
def test_a_push_to_another_branch_names_its_preview_environment(ref, preview):
    push = parse_push(Provider.GITHUB, _push(ref=ref))
    event = push_event(Provider.GITHUB, "d-1", push, default_branch="main")
    assert event["payload"]["preview_environment"] == preview
    assert event["resource"]["slipway.git.preview"] == str(bool(preview)).lower()


def test_a_service_onboarded_a_moment_ago_is_known_at_its_first_push(running):
    up, secret = running
    assert _send(up, secret, _push()).status_code == 200  # the bridge has just read the catalog
    name = f"new-{uuid.uuid4().hex[:8]}"
    register(up, name)
    response = _send(up, secret, _push(repository=name))
    assert response.status_code == 200, response.text


def test_a_burst_of_events_shares_requests_and_prefect_stores_every_one(running):
    up, _ = running
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    # Pushes in form, under a name no trigger expects: the subject is the
    # batching, and 120 build and scan runs of a repository that does not
    # exist would only load this module's server for the tests after it.
    events = [
        push_event(
            Provider.GITHUB,
            str(uuid.uuid4()),
            parse_push(Provider.GITHUB, _push(after=uuid.uuid4().hex + "0" * 8)),
            default_branch="main",
        )
        | {"event": "slipway.test.burst"}
        for _ in range(60)
    ]

    async def burst() -> None:
        async with httpx.AsyncClient(
            base_url=up.api, timeout=30, event_hooks={"request": [record]}
        ) as client:
            poster = EventPoster(client)
            await asyncio.gather(*(poster.post(event) for event in events))

    asyncio.run(burst())
    assert len(requests) < len(events) / 2, f"{len(requests)} requests for 60 events"
    for event in events:
        assert len(_events_with_id(up, event["id"])) == 1


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


def _events_for(up: Up, service: str, after: str, *, settle: float = 15) -> list[dict[str, object]]:
    body = {
        "filter": {
            "resource": {"id": [f"slipway.service.{service}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        events = httpx.post(f"{up.api}/events/filter", json=body, timeout=10).json()["events"]
        matching = [e for e in events if e["payload"].get("after") == after]
        if matching:
            return matching
        time.sleep(0.3)
    return []


def _commit_and_push(
    repository: Path, work: Path, path: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com"]
    if not work.exists():
        subprocess.run(["git", "clone", "--quiet", str(repository), str(work)], check=True)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(f"{uuid.uuid4()}\n")
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "change"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pushed = subprocess.run(
        ["git", "-C", str(work), "push", "origin", "HEAD:main"], capture_output=True, text=True
    )
    return sha, pushed


def _server(up: Up) -> GitServer:
    return GitServer(provider="local", root=up.home / "git")


def register(up: Up, name: str) -> None:
    """Put ``name`` in the platform's catalog, which is how the bridge knows a service."""
    entry = CatalogEntry(name=name, owner="group:test", port=8100, repository=name)
    Catalog(_server(up)).save(entry, message=f"Onboard {name}")


def test_a_plain_git_push_to_a_slipway_repository_becomes_an_event_with_its_commit(
    running, tmp_path
):
    up, secret = running
    hook = PushHook(
        bridge_url=f"http://127.0.0.1:{up.ports['bridge']}/hooks/github",
        secret=SecretStr(secret),
        spool=up.home / "spool",
    )
    register(up, "hooked")
    repository = create_repository(_server(up), "hooked", hook=hook)
    assert create_repository(_server(up), "hooked", hook=hook) == repository  # idempotent
    sha, pushed = _commit_and_push(repository, tmp_path / "work", "docs/index.md")
    assert pushed.returncode == 0, pushed.stderr
    assert "delivered (200)" in pushed.stderr
    [event] = _events_for(up, "hooked", sha)
    assert event["payload"]["ref"] == "refs/heads/main"
    assert event["payload"]["changed_paths"] == ["docs/index.md"]
    assert event["resource"]["slipway.git.docs-changed"] == "true"
    assert oct((repository / "slipway-hook.json").stat().st_mode & 0o777) == "0o600"


def test_a_push_while_the_bridge_is_down_succeeds_and_is_redelivered_later(running, tmp_path):
    up, secret = running
    spool = tmp_path / "spool"
    down = PushHook(
        bridge_url=f"http://127.0.0.1:{free_port()}/hooks/github",
        secret=SecretStr(secret),
        spool=spool,
    )
    register(up, "offline")
    repository = create_repository(_server(up), "offline", hook=down)
    sha, pushed = _commit_and_push(repository, tmp_path / "work", "app/main.py")
    assert pushed.returncode == 0, pushed.stderr
    assert "saved" in pushed.stderr and "for redelivery" in pushed.stderr
    assert len(list(spool.glob("*.json"))) == 1
    assert _events_for(up, "offline", sha, settle=1) == []

    bridge = f"http://127.0.0.1:{up.ports['bridge']}/hooks/github"
    assert redeliver(spool, bridge) == Redelivery(sent=1, rejected=0, kept=0)
    assert list(spool.glob("*.json")) == []
    [event] = _events_for(up, "offline", sha)
    assert event["payload"]["changed_paths"] == ["app/main.py"]


def test_a_spooled_delivery_the_bridge_refuses_is_set_aside_not_lost(running, tmp_path):
    up, _ = running
    spool = tmp_path / "spool"
    spool_delivery(
        spool, "http://old", {"X-GitHub-Delivery": "d-bad", "X-GitHub-Event": "push"}, b"{}"
    )
    bridge = f"http://127.0.0.1:{up.ports['bridge']}/hooks/github"
    assert redeliver(spool, bridge) == Redelivery(sent=0, rejected=1, kept=0)
    assert (spool / "rejected" / "d-bad.json").is_file()
    closed = f"http://127.0.0.1:{free_port()}/hooks/github"
    spool_delivery(spool, "http://old", {"X-GitHub-Delivery": "d-later"}, b"{}")
    assert redeliver(spool, closed) == Redelivery(sent=0, rejected=0, kept=1)
    assert (spool / "d-later.json").is_file()


def test_a_known_service_is_answered_from_memory_until_the_memory_may_be_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments import bridge

    server = GitServer(provider="local", root=tmp_path / "git")
    catalog = Catalog(server)
    entry = CatalogEntry(name="known", owner="group:bench", port=8100, repository="known")
    catalog.save(entry, message="Onboard known")
    services = bridge._Catalogued(server)
    assert not services.known_now("known")  # nothing read yet: the caller must look
    assert services("known") and services.known_now("known")
    catalog.remove("known", message="Retire known")
    assert services.known_now("known")  # within KNOWN_SERVICE_SECONDS, memory answers
    monkeypatch.setattr(bridge, "KNOWN_SERVICE_SECONDS", 0.0)
    assert not services.known_now("known")
    assert not services("known")  # looked again: gone from the catalog
