"""How fast the outbox fans a digest out, as a fraction of the rate limit it must keep to.

    .venv/bin/python -m benchmarks.fanout [--channels 1000] [--postgres URL]

Sets up N subscribed channels on a temporary SQLite database (and on a temporary database of
the PostgreSQL server at URL, if given), queues every channel's digest, and delivers them with
the server's outbox loop against the fake Bot Connector of the tests, answering at once and
after 100 ms. Each is measured three ways, so the table shows where the time goes:

- plain aiohttp: the same posts from a loop with the worker's concurrency, no database and
  no limiter: what the connection and the fake connector allow;
- engine, no limit: the outbox worker with a rate limit too high to matter: the cost of
  claiming, logging and recording each message in the database;
- engine, Teams' limits: the worker as configured (OUTBOX_MAX_PER_SECOND, 50 by default).

The fraction is messages a second over the configured per-bot limit. The limiter counts
each window `guard` (0.2 s) longer than Teams does, so its ceiling is limit / 1.2 a second,
about 0.83 of the limit (a short run comes out a little above it: its first second may use
the whole limit at once). "max in 1 s" is the most requests the connector saw in any one
second: more than the limit is what Teams would throttle. "log to arrival" is how long after
the limiter allowed a request (its delivery_attempt row) the request arrived, p99 and max:
the guard assumes this stays under 0.2 s.

A benchmark, not a test: it takes about a minute and a half for 1000 channels on each
database, and prints its numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from botbuilder.core import TurnContext
from botbuilder.schema import Activity
from sqlalchemy import delete, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import build_worker, delivery_policy
from bot.background import OutboxLoop, running
from bot.config import Settings, async_database_url
from bot.digests import queue_digests_now
from bot.proactive import DeliveryPolicy, restore_reference
from storage import migrate, outbox
from storage.db import create_engine, session_factory, transaction
from storage.models import DeliveryAttempt, OutboxMessage, aware, utcnow
from storage.ratelimit import Window
from storage.seed import seed_programme
from tests.support.channels import add_channels
from tests.support.faulty_connector import FaultyConnector
from tests.support.teams import TENANT_ID

LATENCIES = (0.0, 0.1)
TEAM_ID = "19:team-benchmark@thread.tacv2"


@dataclass
class Result:
    database: str
    latency: float
    mode: str
    messages: int
    seconds: float
    max_in_one_second: int
    log_to_arrival: tuple[float, float] | None = None  # p99, max (seconds)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


class ConnectorThread:
    """The fake connector, which serves from a thread of its own (its work is not done on
    the loop being measured, as Teams' is not), for the benchmark's several asyncio.run()."""

    def __init__(self) -> None:
        self.connector = FaultyConnector()

    def __enter__(self) -> ConnectorThread:
        self.connector.start_thread()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.connector.stop_thread()

    def reset(self, latency: float) -> None:
        async def reset() -> None:
            self.connector.forget()
            self.connector.latency = latency

        self.connector.call(reset())


async def setup_channels(
    sessions: async_sessionmaker[AsyncSession], service_url: str, count: int
) -> list[str]:
    channels = [f"19:bench-{n:05d}-{uuid.uuid4().hex[:8]}@thread.tacv2" for n in range(count)]
    await add_channels(sessions, service_url, channels, team_id=TEAM_ID)
    return channels


async def requeue(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """An empty outbox and rate-limit log, then every channel's digest queued."""
    async with transaction(sessions) as session:
        await session.exec(delete(OutboxMessage))
        await session.exec(delete(DeliveryAttempt))
    await queue_digests_now(sessions, now=utcnow(), zone=settings.zone)


async def run_engine(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    policy: DeliveryPolicy,
    connector: ConnectorThread,
    messages: int,
) -> tuple[float, tuple[float, float]]:
    """Deliver the queued digests with the server's outbox loop: (seconds from the start
    until the last was recorded sent, (p99, max) of log-to-arrival delays)."""
    worker = build_worker(settings, sessions, policy=policy)
    loop = OutboxLoop(worker, sessions, poll_seconds=0.1)
    started = utcnow()
    try:
        async with running(loop.run_forever()):
            # The table's time comes from the rows' sent_at, not from this polling.
            while True:
                if await _count_sent(sessions) >= messages:
                    break
                await asyncio.sleep(0.1)
            await loop.stop(wait_seconds=policy.send_timeout)
    finally:
        await worker.close()
    async with sessions() as session:
        last = (await session.exec(select(func.max(OutboxMessage.sent_at)))).one()
        logged = await session.exec(select(DeliveryAttempt).order_by(col(DeliveryAttempt.at)))
        log = logged.all()
    assert last is not None
    return (aware(last) - started).total_seconds(), _delays(log, connector.connector)


async def _count_sent(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        found = await session.exec(select(func.count()).where(col(OutboxMessage.status) == "sent"))
        return int(found.one())


def _delays(log: Sequence[DeliveryAttempt], connector: FaultyConnector) -> tuple[float, float]:
    # Each channel gets one message: its logged request and its arrival pair up.
    logged_at = {row.conversation_id: aware(row.at).timestamp() for row in log}
    delays = sorted(a.wall - logged_at[a.conversation_id] for a in connector.arrivals)
    return statistics.quantiles(delays, n=100, method="inclusive")[98], delays[-1]


async def run_plain(
    sessions: async_sessionmaker[AsyncSession], channels: list[str], concurrency: int
) -> float:
    """The same posts from a plain aiohttp loop: seconds for all of them."""
    async with sessions() as session:
        row = (await session.exec(select(OutboxMessage).limit(1))).one()
        stored = await outbox.stored_reference(session, conversation_id=row.conversation_id)
    assert stored is not None
    reference = restore_reference(stored, TENANT_ID)
    body = TurnContext.apply_conversation_reference(
        Activity().deserialize(row.payload), reference
    ).serialize()
    base = reference.service_url.rstrip("/")
    places = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:

        async def post(channel: str) -> None:
            async with places:
                url = f"{base}/v3/conversations/{quote(channel, safe='')}/activities"
                async with http.post(url, json=body) as response:
                    await response.read()

        await asyncio.gather(*(post(channel) for channel in channels))
    return time.monotonic() - started


async def measure(
    name: str, url: str, channel_count: int, connector: ConnectorThread
) -> list[Result]:
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    settings = Settings(_env_file=None, database_url=url, microsoft_app_id="")  # type: ignore[call-arg]
    configured = delivery_policy(settings)
    # A short send timeout (and a lease to match): nothing fails here, and a stop at the
    # end of a run should not wait long.
    teams = dataclasses.replace(configured, send_timeout=5.0, lease=timedelta(minutes=5))
    # A per-bot limit too high to matter (each channel gets one message, so the
    # per-conversation limits never bite).
    unlimited = dataclasses.replace(
        teams, limits=dataclasses.replace(configured.limits, per_bot=(Window(1, 10**6),))
    )
    results = []
    try:
        await seed_programme(sessions)
        channels = await setup_channels(sessions, connector.connector.url, channel_count)
        for latency in LATENCIES:
            connector.reset(latency)
            await requeue(sessions, settings)
            seconds = await run_plain(sessions, channels, configured.concurrency)
            results.append(
                _result(name, latency, "plain aiohttp", channel_count, seconds, connector)
            )
            for mode, policy in (("engine, no limit", unlimited), ("engine, Teams' limits", teams)):
                connector.reset(latency)
                await requeue(sessions, settings)
                seconds, delays = await run_engine(
                    sessions, settings, policy, connector, channel_count
                )
                results.append(
                    _result(name, latency, mode, channel_count, seconds, connector, delays)
                )
    finally:
        await engine.dispose()
    return results


def _result(
    name: str,
    latency: float,
    mode: str,
    messages: int,
    seconds: float,
    connector: ConnectorThread,
    delays: tuple[float, float] | None = None,
) -> Result:
    arrivals = connector.connector
    assert len(arrivals.arrivals) == messages, (mode, len(arrivals.arrivals))
    return Result(
        database=name,
        latency=latency,
        mode=mode,
        messages=messages,
        seconds=seconds,
        max_in_one_second=arrivals.max_in_window(1.0),
        log_to_arrival=delays,
    )


@contextmanager
def temporary_databases(postgres: str | None) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as directory:
        databases = [("SQLite", f"sqlite+aiosqlite:///{Path(directory) / 'fanout.db'}")]
        if postgres is None:
            yield databases
            return
        server = make_url(async_database_url(postgres))
        name = f"ourcambridge_bench_{uuid.uuid4().hex[:8]}"
        _admin(server, f"CREATE DATABASE {name}")
        try:
            url = server.set(database=name).render_as_string(hide_password=False)
            yield [*databases, ("PostgreSQL", url)]
        finally:
            _admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _admin(server: Any, statement: str) -> None:
    async def run() -> None:
        engine = create_engine(server.render_as_string(hide_password=False))
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


def print_table(results: list[Result], limit: int, guard: float) -> None:
    print(
        f"{'database':<11} {'latency':>7}  {'mode':<22} {'msgs':>5} {'seconds':>7} "
        f"{'msgs/s':>7} {'of limit':>8} {'max in 1 s':>10} {'log to arrival p99/max':>23}"
    )
    for r in results:
        delays = (
            f"{r.log_to_arrival[0] * 1000:>8.0f} / {r.log_to_arrival[1] * 1000:>5.0f} ms"
            if r.log_to_arrival
            else ""
        )
        print(
            f"{r.database:<11} {r.latency * 1000:>5.0f}ms  {r.mode:<22} {r.messages:>5} "
            f"{r.seconds:>7.2f} {r.rate:>7.1f} {r.rate / limit:>8.2f} {r.max_in_one_second:>10} "
            f"{delays:>23}"
        )
    print(
        f"\nper-bot limit {limit}/s; with its {guard:g} s guard the limiter's steady ceiling "
        f"is {limit / (1 + guard):.1f}/s ({1 / (1 + guard):.2f} of the limit)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="also run on a temporary database there")
    args = parser.parse_args(argv)
    limits = delivery_policy(Settings(_env_file=None)).limits  # type: ignore[call-arg]
    limit = limits.per_bot[0].limit
    results: list[Result] = []
    with temporary_databases(args.postgres) as databases, ConnectorThread() as connector:
        for name, url in databases:
            results += asyncio.run(measure(name, url, args.channels, connector))
    print_table(results, limit, limits.guard)


if __name__ == "__main__":
    main()
