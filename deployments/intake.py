"""The durable queue of webhook deliveries: what the bridge accepted and what became of it.

Every signed push is a row here, committed (fsync on SQLite, a committed
transaction on PostgreSQL) before the bridge answers 202, so nothing accepted
is lost when Prefect is down or the bridge is killed. The forwarder
(`deployments.forwarder`) moves each row on:

    queued ──► sent ──► delivered        its runs exist in Prefect
       │         └────► failed           Prefect never ran it; see `error`
       └──► superseded                   a newer push of the branch went instead

A row stays after it is done, for ``retention`` (7 days): its key is how a
redelivery is recognised (`accept` returns False), and a superseded row keeps
the push it gave way to. The same code runs on SQLite (a file in the data
directory, when Prefect's server uses SQLite) and on PostgreSQL (tables in
Prefect's own database, when it uses PostgreSQL), through SQLAlchemy Core.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from deployments.intake_schema import (
    DELIVERIES,
    HEADS,
    METADATA,
    Accepted,
    InFlight,
    QueueStats,
    State,
    SupersededPush,
)

__all__ = ["Accepted", "InFlight", "IntakeQueue", "QueueStats", "State", "SupersededPush"]

logger = logging.getLogger(__name__)


class IntakeQueue:
    """The queue on one database; open it with `IntakeQueue.open`, close it with `close`."""

    def __init__(self, engine: AsyncEngine, *, retention: float) -> None:
        self._engine = engine
        self._retention = retention
        self._sqlite = engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if self._sqlite else postgresql.insert
        # SQLite has one writer: one connection and a lock keep the bridge's
        # own writers from meeting as "database is locked".
        self._lock = asyncio.Lock()
        self._connection: AsyncConnection | None = None
        self._waiting: list[tuple[Accepted, asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._lead: Any = None
        """What makes this process the queue's one forwarder: a locked file or a connection."""

    @classmethod
    async def open(cls, url: str, *, retention: float = 7 * 86400) -> IntakeQueue:
        """Connect, create the tables when missing, and return the queue.

        Args:
            url: ``sqlite+aiosqlite:///PATH`` or ``postgresql+asyncpg://...``.
            retention: Seconds a finished delivery is remembered (for dedupe).
        """
        if url.startswith("sqlite"):
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "connect", _durable_sqlite)
        else:
            engine = create_async_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)
        queue = cls(engine, retention=retention)
        async with queue._transaction() as conn:
            await conn.run_sync(METADATA.create_all)
        return queue

    async def close(self) -> None:
        """Wait for accepts in progress, then release the connections."""
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        if self._connection is not None:
            await self._connection.close()
        if isinstance(self._lead, AsyncConnection):
            await self._lead.close()
        elif self._lead is not None:
            self._lead.close()
        await self._engine.dispose()

    async def lead(self) -> bool:
        """Whether this process is the queue's forwarder; the first to ask is, until it exits.

        Two bridges on one queue (a second one started by hand, or a server
        host beside another on one PostgreSQL) would otherwise both send.
        SQLite: a lock on a file beside the database; PostgreSQL: an advisory
        lock held by a connection of its own. Either goes when the process does.
        """
        if self._sqlite:
            if self._lead is None:
                self._lead = _lock_file(f"{self._engine.url.database}.forwarder")
            return self._lead is not None
        if self._lead is not None:
            try:
                await self._lead.execute(select(1))
                return True
            except Exception:  # the connection, and the lock with it, is gone
                with contextlib.suppress(Exception):
                    await self._lead.close()
                self._lead = None
        connection = await self._engine.connect()
        held = await connection.scalar(select(func.pg_try_advisory_lock(_FORWARDER_LOCK)))
        await connection.commit()
        if held:
            self._lead = connection
            return True
        await connection.close()
        return False

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if not self._sqlite:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._lock:
            if self._connection is None:
                self._connection = await self._engine.connect()
            async with self._connection.begin():
                yield self._connection

    # -- the bridge --------------------------------------------------------
    async def accept(self, delivery: Accepted) -> bool:
        """Store ``delivery`` durably; False when one with its key was stored before.

        Deliveries that arrive together share one commit (group commit), so a
        burst costs a few fsyncs, not one per push. Raises the database's
        error when it cannot be stored: then nothing was accepted.
        """
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, stored))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        return await stored

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:500], self._waiting[500:]
            try:
                async with self._transaction() as conn:
                    results = [await self._insert_one(conn, d) for d, _ in batch]
            except Exception as e:  # every waiting caller gets it; none hangs
                for _, stored in batch:
                    if not stored.done():
                        stored.set_exception(e)
                continue
            for (_, stored), new in zip(batch, results, strict=True):
                if not stored.done():
                    stored.set_result(new)

    async def _insert_one(self, conn: AsyncConnection, d: Accepted) -> bool:
        row = {
            "key": d.key,
            "delivery": d.delivery,
            "service": d.service,
            "ref": d.ref,
            "after": d.after,
            "pusher": d.pusher,
            "received_at": d.received_at,
            "pushed_at": d.pushed_at,
            "event": json.dumps(d.event),
            "state": State.QUEUED.value,
            "recorded": False,
            "attempts": 0,
        }
        statement = self._insert(DELIVERIES).values(row).on_conflict_do_nothing()
        return (await conn.execute(statement)).rowcount == 1

    async def stats(self, now: float) -> QueueStats:
        """Counts and the age of the oldest undelivered delivery."""
        d = DELIVERIES.c
        async with self._transaction() as conn:
            rows = await conn.execute(
                select(d.state, func.count(), func.min(d.received_at))
                .where(d.state.in_([State.QUEUED, State.SENT, State.FAILED]))
                .group_by(d.state)
            )
            counts = {r[0]: (int(r[1]), r[2]) for r in rows}
            unrecorded = await conn.scalar(
                select(func.count()).where(d.state == State.SUPERSEDED, d.recorded.is_(False))
            )
        waiting = [counts.get(s, (0, None)) for s in (State.QUEUED, State.SENT)]
        oldest = min((t for _, t in waiting if t is not None), default=None)
        return QueueStats(
            queued=sum(n for n, _ in waiting),
            in_flight=waiting[1][0],
            oldest_age=None if oldest is None else max(0.0, now - oldest),
            failed=counts.get(State.FAILED, (0, None))[0],
            unrecorded=int(unrecorded or 0),
        )

    # -- the forwarder -----------------------------------------------------
    async def coalesce(self, now: float) -> tuple[int, int]:
        """Per branch with nothing in flight, send the newest waiting push; the others give way.

        A push older (by push time) than the newest one already sent on gives
        way to that one even while it is in flight. Returns how many pushes
        became in flight and how many were superseded.
        """
        d, h = DELIVERIES.c, HEADS.c
        sent = superseded = 0
        async with self._transaction() as conn:
            waiting = (
                await conn.execute(
                    select(d.service, d.ref).where(d.state == State.QUEUED).distinct()
                )
            ).all()
            busy = {
                (r.service, r.ref)
                for r in await conn.execute(select(d.service, d.ref).where(d.state == State.SENT))
            }
            heads = {
                (r.service, r.ref): (r.seq, r.pushed_at) for r in await conn.execute(select(HEADS))
            }
            for service, ref in waiting:
                branch = and_(d.state == State.QUEUED, d.service == service, d.ref == ref)
                head = heads.get((service, ref))
                if head is not None:
                    superseded += await self._give_way(
                        conn, branch, d.pushed_at < head[1], head[0], now
                    )
                if (service, ref) in busy:
                    continue
                newest = (
                    await conn.execute(
                        select(d.seq, d.pushed_at)
                        .where(branch)
                        .order_by(d.pushed_at.desc(), d.seq.desc())
                        .limit(1)
                    )
                ).first()
                if newest is None:
                    continue
                superseded += await self._give_way(
                    conn, branch, d.seq != newest.seq, newest.seq, now
                )
                await conn.execute(
                    update(DELIVERIES).where(d.seq == newest.seq).values(state=State.SENT)
                )
                values = {"seq": newest.seq, "pushed_at": newest.pushed_at}
                if head is None:
                    await conn.execute(HEADS.insert().values(service=service, ref=ref, **values))
                else:
                    where = and_(h.service == service, h.ref == ref)
                    await conn.execute(update(HEADS).where(where).values(**values))
                sent += 1
        return sent, superseded

    @staticmethod
    async def _give_way(conn: AsyncConnection, branch: Any, which: Any, by: int, now: float) -> int:
        done = await conn.execute(
            update(DELIVERIES)
            .where(branch, which)
            .values(state=State.SUPERSEDED, superseded_by=by, done_at=now)
        )
        return int(done.rowcount or 0)

    async def in_flight(self) -> list[InFlight]:
        """Every delivery sent on and not confirmed, oldest first."""
        d = DELIVERIES.c
        async with self._transaction() as conn:
            rows = await conn.execute(
                select(DELIVERIES).where(d.state == State.SENT).order_by(d.seq)
            )
            return [
                InFlight(
                    seq=r.seq,
                    service=r.service,
                    ref=r.ref,
                    after=r.after,
                    received_at=r.received_at,
                    event=json.loads(r.event),
                    attempts=r.attempts,
                    posted_at=r.posted_at,
                    expected=json.loads(r.expected) if r.expected else {},
                )
                for r in rows
            ]

    async def posted(self, seq: int, *, at: float, expected: dict[str, Any]) -> None:
        """Its event was posted (once more) at ``at``; ``expected`` says what to look for."""
        d = DELIVERIES.c
        async with self._transaction() as conn:
            await conn.execute(
                update(DELIVERIES)
                .where(d.seq == seq)
                .values(attempts=d.attempts + 1, posted_at=at, expected=json.dumps(expected))
            )

    async def finish(self, seq: int, state: State, *, at: float, error: str | None = None) -> None:
        """Mark an in-flight delivery `State.DELIVERED` or `State.FAILED`."""
        d = DELIVERIES.c
        async with self._transaction() as conn:
            await conn.execute(
                update(DELIVERIES)
                .where(d.seq == seq, d.state == State.SENT)
                .values(state=state, done_at=at, error=error)
            )

    async def unrecorded(self, limit: int = 2000) -> list[SupersededPush]:
        """Superseded pushes that Prefect does not show yet, grouped by the push that won."""
        s, w = DELIVERIES.alias("s"), DELIVERIES.alias("w")
        query = (
            select(s, w.c.after.label("by_after"), w.c.event.label("by_event"))
            .join(w, s.c.superseded_by == w.c.seq)
            .where(s.c.state == State.SUPERSEDED, s.c.recorded.is_(False))
            .order_by(s.c.superseded_by, s.c.seq)
            .limit(limit)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).all()
        return [
            SupersededPush(
                seq=r.seq,
                service=r.service,
                ref=r.ref,
                after=r.after,
                pusher=r.pusher,
                delivery=r.delivery,
                received_at=r.received_at,
                by_seq=r.superseded_by,
                by_after=r.by_after,
                by_event=str(json.loads(r.by_event)["id"]),
            )
            for r in rows
        ]

    async def recorded(self, seqs: Sequence[int]) -> None:
        """These superseded pushes are now recorded in Prefect."""
        d = DELIVERIES.c
        async with self._transaction() as conn:
            for i in range(0, len(seqs), 500):
                chunk = list(seqs[i : i + 500])
                await conn.execute(update(DELIVERIES).where(d.seq.in_(chunk)).values(recorded=True))

    async def prune(self, now: float) -> int:
        """Forget finished deliveries older than the retention; returns how many."""
        d = DELIVERIES.c
        finished = or_(
            d.state.in_([State.DELIVERED, State.FAILED]),
            and_(d.state == State.SUPERSEDED, d.recorded.is_(True)),
        )
        async with self._transaction() as conn:
            done = await conn.execute(
                delete(DELIVERIES).where(finished, d.done_at < now - self._retention)
            )
        return int(done.rowcount or 0)


_FORWARDER_LOCK = 0x5711_9A7E
"""PostgreSQL advisory lock key of the forwarder."""


def _lock_file(path: str) -> IO[str] | None:
    """The open, exclusively locked file at ``path``; None when another process holds it."""
    handle = Path(path).open("a")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _durable_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL with a full sync: a commit is on disk before the bridge answers."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
