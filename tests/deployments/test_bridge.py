"""The webhook bridge over real HTTP, in a real `slipway up`, with its queue and Prefect's runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from blocks import GitServer
from deployments.bridge import MAX_BODY_BYTES
from deployments.bridge_intake import BridgeConfig, Intake
from deployments.bridge_services import Catalogued
from deployments.post_receive import spool_delivery
from deployments.webhooks import Provider, parse_push, push_event
from tasks.catalog import Catalog, CatalogEntry
from tasks.git import PushHook, create_repository
from tests.deployments.conftest import Up, free_port, free_ports, slipway_env
from tests.deployments.webhook_helpers import (
    commit_and_push,
    new_commit,
    push_body,
    push_project,
    register,
    runs_of,
    send,
    signed,
    wait_for,
    webhook_secret,
)

SERVICE = "payments"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, str, Path]]:
    root = tmp_path_factory.mktemp("bridge")
    ports = free_ports()
    project = push_project(root / "project")
    up = Up(root / "home", ports, slipway_env(), args=["--project", str(project)])
    try:
        up.start()
        repository = register(up, SERVICE)
        yield up, webhook_secret(up), repository
    finally:
        up.kill()


def _runs_for(up: Up, commit: str) -> list[dict[str, object]]:
    return [r for r in runs_of(up.api, "push-noop") if r["parameters"].get("commit") == commit]


def _still_one_run(up: Up, commit: str, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(_runs_for(up, commit)) != 1:
            return False
        time.sleep(0.5)
    return True


def test_a_signed_push_is_queued_runs_once_and_a_redelivery_is_a_duplicate(running):
    up, secret, repository = running
    sha, delivery = new_commit(repository), str(uuid.uuid4())
    first = send(up, secret, push_body(SERVICE, sha), delivery=delivery)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted"
    [run] = wait_for("the push's run", lambda: _runs_for(up, sha))
    assert run["parameters"]["service"] == SERVICE

    again = send(up, secret, push_body(SERVICE, sha), delivery=delivery)  # GitHub's "Redeliver"
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_id"] == first.json()["event_id"]
    assert _still_one_run(up, sha)


def test_an_old_delivery_id_on_a_new_signed_body_is_not_taken_for_a_duplicate(running):
    up, secret, repository = running
    delivery = str(uuid.uuid4())
    old, new = new_commit(repository), new_commit(repository)
    assert send(up, secret, push_body(SERVICE, old), delivery=delivery).status_code == 202
    second = send(up, secret, push_body(SERVICE, new), delivery=delivery)
    assert second.status_code == 202, second.text
    wait_for("the second push's run", lambda: _runs_for(up, new))


def test_a_bad_signature_is_refused_and_queues_nothing(running):
    up, secret, repository = running
    sha = new_commit(repository)
    response = send(up, secret + "x", push_body(SERVICE, sha))
    assert response.status_code == 401
    assert _runs_for(up, sha) == []


def test_each_kind_of_delivery_gets_its_answer(running):
    up, secret, repository = running
    sha = new_commit(repository)
    cases = [
        ("ping", b'{"zen": "Keep it logically awesome."}', 200, "pong"),
        ("issues", b"{}", 202, "not handled"),
        ("push", b"{not json", 400, "not a github push payload"),
        ("push", b"[" * 50_000 + b"]" * 50_000, 400, "nested too deep"),
        ("push", push_body(SERVICE, sha, ref="refs/heads/a..b"), 400, "not a valid git ref"),
        ("push", push_body(SERVICE, sha, ref="refs/heads/-x"), 400, "not a valid git ref"),
        ("push", push_body("unknown-service", sha), 202, "not a known service"),
        ("push", push_body(SERVICE, "0" * 40, deleted=True), 202, "was deleted"),
        ("push", push_body(SERVICE, "e" * 40), 422, "is not in repository"),
    ]
    for event, body, status, reason in cases:
        response = send(up, secret, body, event=event)
        assert response.status_code == status, (event, response.text)
        assert reason in response.json()["reason"], response.text


def test_a_body_over_25_mb_is_refused(running):
    up, secret, _ = running
    response = send(up, secret, b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413


def test_the_secret_never_reaches_the_bridges_log(running):
    up, secret, repository = running
    send(up, secret + "x", push_body(SERVICE, new_commit(repository)))  # a refusal is logged
    sha = new_commit(repository)
    assert send(up, secret, push_body(SERVICE, sha)).status_code == 202
    logs = up.home / "logs" / "bridge.log"
    log = wait_for(
        "the push's run in the log",
        lambda: f"at {sha[:12]} became" in logs.read_text() and logs.read_text(),
    )
    assert "bad signature refused" in log
    assert secret not in log


@pytest.mark.parametrize(
    ("ref", "preview"),
    [
        ("refs/heads/main", ""),
        ("refs/heads/feature/Fix_login", "preview-feature-fix-login"),
        ("refs/tags/v1.0", ""),
    ],
)
def test_a_push_to_another_branch_names_its_preview_environment(ref, preview):
    push = parse_push(Provider.GITHUB, push_body(SERVICE, "c" * 40, ref=ref))
    event = push_event(Provider.GITHUB, "k-1", "d-1", push, default_branch="main")
    assert event["payload"]["preview_environment"] == preview
    assert event["resource"]["slipway.git.preview"] == str(bool(preview)).lower()


def test_a_service_onboarded_a_moment_ago_is_known_at_its_first_push(running):
    up, secret, repository = running
    assert send(up, secret, push_body(SERVICE, new_commit(repository))).status_code == 202
    name = f"new-{uuid.uuid4().hex[:8]}"
    fresh = register(up, name)
    response = send(up, secret, push_body(name, new_commit(fresh)))
    assert response.status_code == 202, response.text


def _hooked(up: Up, secret: str, name: str, bridge_port: int) -> Path:
    hook = PushHook(
        bridge_url=f"http://127.0.0.1:{bridge_port}/hooks/github",
        secret=SecretStr(secret),
        spool=up.home / "spool",
    )
    register(up, name)
    server = GitServer(provider="local", root=up.home / "git")
    return create_repository(server, name, hook=hook)


def test_a_plain_git_push_to_a_slipway_repository_runs_its_commit(running, tmp_path):
    up, secret, _ = running
    repository = _hooked(up, secret, "hooked", up.ports["bridge"])
    sha, pushed = commit_and_push(repository, tmp_path / "work", "docs/index.md")
    assert pushed.returncode == 0 and "delivered (202)" in pushed.stderr, pushed.stderr
    [run] = wait_for("the pushed commit's run", lambda: _runs_for(up, sha))
    assert run["parameters"]["service"] == "hooked"
    assert oct((repository / "slipway-hook.json").stat().st_mode & 0o777) == "0o600"


def test_a_push_while_the_bridge_is_down_runs_once_the_bridge_drains_the_spool(running, tmp_path):
    up, secret, _ = running
    repository = _hooked(up, secret, "offline", free_port())  # nothing listens there
    sha, pushed = commit_and_push(repository, tmp_path / "work", "app/main.py")
    assert pushed.returncode == 0 and "for redelivery" in pushed.stderr, pushed.stderr
    # The running bridge drains the spool by itself: no restart, no command.
    wait_for("the spooled push's run", lambda: _runs_for(up, sha), timeout=60)
    assert list((up.home / "spool").glob("*.json")) == []


def test_a_spooled_delivery_the_bridge_refuses_is_set_aside_not_lost(running):
    up, _, _ = running
    spool = up.home / "spool"
    name = f"d-bad-{uuid.uuid4().hex[:8]}"
    spool_delivery(
        spool, "http://old", {"X-GitHub-Delivery": name, "X-GitHub-Event": "push"}, b"{}"
    )
    wait_for("the bad delivery set aside", lambda: (spool / "rejected" / f"{name}.json").is_file())
    assert not (spool / f"{name}.json").exists()


def test_health_and_metrics_say_what_waits_and_what_was_counted(running):
    up, secret, repository = running
    sha = new_commit(repository)
    send(up, secret + "x", push_body(SERVICE, sha))
    assert send(up, secret, push_body(SERVICE, sha)).status_code == 202
    base = f"http://127.0.0.1:{up.ports['bridge']}"
    wait_for("the push's run", lambda: _runs_for(up, sha))
    # The bridge counts a push delivered at its next look after the run exists.
    samples = wait_for("the push counted delivered", lambda: _delivered(base))
    health = httpx.get(f"{base}/healthz", timeout=10).json()
    assert set(health["queue"]) == {
        "waiting",
        "in_flight",
        "oldest_seconds",
        "failed",
        "unrecorded",
        "stalled",
    }
    assert health["queue"]["stalled"] is False
    assert samples["slipway_bridge_accepted_total"] >= 1
    assert samples["slipway_bridge_signature_failures_total"] >= 1
    assert samples["slipway_intake_delivered_total"] >= 1
    assert "slipway_intake_oldest_waiting_seconds" in samples
    status = up.cli("status")
    assert "waiting" in status.stdout, status.stdout


def _delivered(base: str) -> dict[str, float] | None:
    """The bridge's metric samples, once it counted a push delivered."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = {
        s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
    }
    return samples if samples.get("slipway_intake_delivered_total", 0) >= 1 else None


def test_a_known_service_is_answered_from_memory_until_the_memory_may_be_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments import bridge_services

    server = GitServer(provider="local", root=tmp_path / "git")
    catalog = Catalog(server)
    entry = CatalogEntry(name="known", owner="group:bench", port=8100, repository="known")
    catalog.save(entry, message="Onboard known")
    services = Catalogued(server)
    assert not services.known_now("known")  # nothing read yet: the caller must look
    assert services("known") and services.known_now("known")
    catalog.remove("known", message="Retire known")
    assert services.known_now("known")  # within KNOWN_SERVICE_SECONDS, memory answers
    monkeypatch.setattr(bridge_services, "KNOWN_SERVICE_SECONDS", 0.0)
    assert not services.known_now("known")
    assert not services("known")  # looked again: gone from the catalog


def test_a_spooled_push_waits_while_the_catalog_cannot_be_read_and_is_queued_after(
    tmp_path: Path,
) -> None:
    """The second `up` that once dropped a spooled push as 'not a known service'.

    At start, `up` rewrote every repository's git config in place while the
    bridge drained the spool; git reading a half-written config made the
    catalog look empty. Unknown is not proven then: the delivery stays spooled.
    """
    import asyncio

    from deployments.intake import IntakeQueue
    from deployments.spool import Redelivery, drain

    server = GitServer(provider="local", root=tmp_path / "git")
    catalog = Catalog(server)
    entry = CatalogEntry(name="spooled", owner="group:test", port=8100, repository="spooled")
    catalog.save(entry, message="Onboard spooled")
    body = push_body("spooled", "b" * 40)
    spool = tmp_path / "spool"
    spool_delivery(spool, "http://old", signed("s3cret", body), body)
    intake = spool_intake(tmp_path, is_service=Catalogued(server))
    config = Path(catalog.url) / "config"
    whole = config.read_text()

    async def deliver(headers: dict[str, str], body: bytes) -> int:
        return (await intake.take(Provider.GITHUB, headers, body)).status

    async def drain_twice() -> tuple[Redelivery, Redelivery, int]:
        intake.queue = await IntakeQueue.open(intake.config.queue_url)
        try:
            config.write_text(whole[:20])  # as a rewrite in place leaves it for a moment
            during = await drain(spool, deliver)
            config.write_text(whole)
            after = await drain(spool, deliver)
            return during, after, (await intake.queue.stats(time.time())).queued
        finally:
            await intake.queue.close()

    during, after, queued = asyncio.run(drain_twice())
    assert (during.sent, during.kept) == (0, 1)
    assert (after.sent, after.kept, queued) == (1, 0, 1)
    assert list(spool.glob("*.json")) == []


def test_a_spooled_push_whose_hand_over_fails_is_kept_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One push's error (here: its branch's preview policy cannot be read) ended the drain.

    It ended it for the bridge's lifetime, so every push spooled after waited
    for a restart. Now that push is logged with its id and kept, the others are
    queued, and it is queued on a later pass once its hand-over works.
    """
    import asyncio
    import logging
    import os

    from slipway.errors import ComponentError

    spool, broken = tmp_path / "spool", [True]
    feature = push_body("spooled", "c" * 40, ref="refs/heads/feature/x")
    first = spool_delivery(spool, "http://old", signed("s3cret", feature), feature)
    os.utime(first, (time.time() - 60, time.time() - 60))  # the oldest: drained first
    main = push_body("spooled", "d" * 40)
    second = spool_delivery(spool, "http://old", signed("s3cret", main), main)

    def preview_branch(branch: str) -> bool:
        if broken[0]:
            raise ComponentError("the platform settings cannot be read")
        return True

    intake = spool_intake(
        tmp_path,
        is_service=lambda name: True,
        preview_branch=preview_branch,
        spool=spool,
        spool_every=0.05,
        ready=lambda: False,  # no forwarding: the queue keeps what the drain queued
    )

    async def queued(count: int) -> None:
        assert intake.queue is not None
        for _ in range(200):
            if (await intake.queue.stats(time.time())).queued == count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} push(es) never queued; spool: {list(spool.glob('*'))}")

    async def drain_while_broken_then_fixed() -> None:
        async with intake.running():
            await queued(1)
            assert first.exists() and not second.exists()
            broken[0] = False
            await queued(2)
            assert not first.exists()

    with caplog.at_level(logging.ERROR, logger="deployments.spool"):
        asyncio.run(drain_while_broken_then_fixed())
    assert any(first.stem in r.getMessage() for r in caplog.records)
    assert not (spool / "rejected").exists()


def spool_intake(tmp_path: Path, **options: Any) -> Intake:
    """An intake whose queue lives under ``tmp_path``, with Prefect out of reach."""
    return Intake(
        BridgeConfig(
            api_url="http://127.0.0.1:9/api",
            api_auth=None,
            secret=SecretStr("s3cret"),
            queue_url=f"sqlite+aiosqlite:///{tmp_path / 'deliveries.db'}",
            **options,
        )
    )
