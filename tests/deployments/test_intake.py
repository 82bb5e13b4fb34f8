"""The intake queue on a real SQLite file and a real PostgreSQL: dedupe, coalescing, durability."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from deployments.intake import Accepted, IntakeQueue, State
from tests.deployments.conftest import Postgres

T = TypeVar("T")


def run(work: Callable[[IntakeQueue], Awaitable[T]], url: str) -> T:
    """Open the queue on ``url``, do ``work`` with it, close it."""

    async def go() -> T:
        queue = await IntakeQueue.open(url)
        try:
            return await work(queue)
        finally:
            await queue.close()

    return asyncio.run(go())


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'deliveries.db'}"
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    yield postgres.url
    asyncio.run(_drop_tables(postgres.url))


async def _drop_tables(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for table in ("slipway_intake_deliveries", "slipway_intake_heads"):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    await engine.dispose()


def push(service: str = "payments", ref: str = "refs/heads/main", **overrides: Any) -> Accepted:
    after = uuid.uuid4().hex + "0" * 8
    values: dict[str, Any] = {
        "key": uuid.uuid4().hex,
        "delivery": str(uuid.uuid4()),
        "service": service,
        "ref": ref,
        "after": after,
        "pusher": "ada",
        "received_at": 1000.0,
        "pushed_at": 1000.0,
        "event": {"id": str(uuid.uuid4()), "payload": {"after": after}},
    }
    values.update(overrides)
    return Accepted(**values)


def test_a_delivery_is_stored_once_even_when_sent_twice_at_once(url: str) -> None:
    first = push()

    async def work(queue: IntakeQueue) -> list[bool]:
        return list(await asyncio.gather(*(queue.accept(first) for _ in range(3))))

    assert sorted(run(work, url)) == [False, False, True]
    assert run(lambda q: q.accept(first), url) is False  # and after a reopen


def test_what_was_accepted_survives_a_reopen_and_says_how_long_it_waited(url: str) -> None:
    run(lambda q: q.accept(push(received_at=1000.0)), url)
    run(lambda q: q.accept(push(received_at=1010.0)), url)
    stats = run(lambda q: q.stats(1030.0), url)
    assert (stats.queued, stats.in_flight, stats.oldest_age) == (2, 0, 30.0)


def test_waiting_pushes_of_a_branch_collapse_to_the_newest_and_others_wait_their_turn(
    url: str,
) -> None:
    main = [push(pushed_at=1000.0 + i) for i in range(5)]
    other = push(ref="refs/heads/feature")
    later = [push(pushed_at=2000.0 + i) for i in range(3)]

    async def work(queue: IntakeQueue) -> None:
        for p in [*main, other]:
            assert await queue.accept(p)
        assert await queue.coalesce(1100.0) == (2, 4)  # main's newest and feature go
        flights = {f.ref: f for f in await queue.in_flight()}
        assert flights["refs/heads/main"].after == main[-1].after
        assert flights["refs/heads/feature"].after == other.after

        for p in later:  # arrive while main's push is in flight: they wait
            assert await queue.accept(p)
        assert await queue.coalesce(1200.0) == (0, 0)
        await queue.finish(flights["refs/heads/main"].seq, State.DELIVERED, at=1300.0)
        assert await queue.coalesce(1300.0) == (1, 2)
        now = {f.ref: f for f in await queue.in_flight()}
        assert now["refs/heads/main"].after == later[-1].after

        gave_way = await queue.unrecorded()
        assert sorted(p.after for p in gave_way) == sorted(
            p.after for p in [*main[:-1], *later[:-1]]
        )
        assert {p.by_after for p in gave_way} == {main[-1].after, later[-1].after}
        assert {p.by_event for p in gave_way if p.by_after == main[-1].after} == {
            main[-1].event["id"]
        }
        await queue.recorded([p.seq for p in gave_way])
        assert await queue.unrecorded() == []

    run(work, url)


def test_a_push_older_than_the_one_sent_on_gives_way_to_it(url: str) -> None:
    # A spooled or redelivered push arrives after a newer one of its branch was sent on.
    newer, older = push(pushed_at=2000.0), push(pushed_at=1000.0)

    async def work(queue: IntakeQueue) -> None:
        await queue.accept(newer)
        assert await queue.coalesce(2001.0) == (1, 0)
        [flight] = await queue.in_flight()
        await queue.finish(flight.seq, State.DELIVERED, at=2002.0)
        await queue.accept(older)
        assert await queue.coalesce(2003.0) == (0, 1)
        assert await queue.in_flight() == []
        [gave_way] = await queue.unrecorded()
        assert (gave_way.after, gave_way.by_after) == (older.after, newer.after)

    run(work, url)


def test_a_posted_push_keeps_its_attempts_and_expectations_until_it_is_finished(url: str) -> None:
    async def work(queue: IntakeQueue) -> None:
        await queue.accept(push())
        await queue.coalesce(1.0)
        [flight] = await queue.in_flight()
        assert (flight.attempts, flight.posted_at, flight.expected) == (0, None, {})
        await queue.posted(flight.seq, at=5.0, expected={"keys": {"k": "d"}})
        await queue.posted(flight.seq, at=9.0, expected={"keys": {"k": "d", "k2": "d"}})
        [flight] = await queue.in_flight()
        assert (flight.attempts, flight.posted_at) == (2, 9.0)
        assert flight.expected == {"keys": {"k": "d", "k2": "d"}}
        await queue.finish(flight.seq, State.FAILED, at=10.0, error="no run")
        stats = await queue.stats(11.0)
        assert (stats.queued, stats.failed, stats.oldest_age) == (0, 1, None)

    run(work, url)


def test_finished_deliveries_are_forgotten_after_the_retention_and_not_before(url: str) -> None:
    kept, done = push(), push()

    async def work(queue: IntakeQueue) -> None:
        await queue.accept(done)
        await queue.coalesce(100.0)
        [flight] = await queue.in_flight()
        await queue.finish(flight.seq, State.DELIVERED, at=100.0)
        await queue.accept(kept)  # waiting: never pruned
        assert await queue.prune(100.0 + 7 * 86400 - 1) == 0
        assert not await queue.accept(done)  # still a duplicate
        assert await queue.prune(100.0 + 7 * 86400 + 1) == 1
        assert await queue.accept(done)  # a replay older than the retention is new again
        assert (await queue.stats(0.0)).queued == 2

    run(work, url)


def test_one_process_forwards_from_a_queue_and_another_takes_over_when_it_goes(url: str) -> None:
    async def work() -> None:
        first, second = await IntakeQueue.open(url), await IntakeQueue.open(url)
        try:
            assert await first.lead() and await first.lead()
            assert not await second.lead()
            await first.close()
            assert await second.lead()
        finally:
            await second.close()

    asyncio.run(work())
