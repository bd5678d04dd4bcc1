"""The weekly digest fanned out to 200 channels through the outbox, against a Bot Connector
that refuses (429 with Retry-After, 503), hangs, holds its answers back, and records every
request it gets (tests/support/faulty_connector.py).

What the issue asks the engine to show: every channel gets its digest exactly once, the
requests stay within Teams' limits (for the bot and per conversation) as Teams would count
them, at the connector; killing the server half-way loses nothing and repeats only what
was in flight; two servers on one PostgreSQL database send each digest once.

Delivery is at least once: Teams offers no idempotency, so a message posted while its sender
died (or gave up waiting) is posted again by the retry. The tests say exactly which messages
those are, and check that `outbox status` owns up to them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import build_worker, delivery_policy
from bot.background import OutboxLoop, running
from bot.digests import queue_digests_now
from bot.proactive import DeliveryPolicy
from storage import outbox, ratelimit, subscriptions
from storage.db import hold_transaction_lock, transaction
from storage.models import DeliveryAttempt, OutboxMessage, utcnow
from storage.ratelimit import TEAMS_LIMITS, Window
from tests.bot.conftest import make_settings
from tests.support import channels as channels_support
from tests.support.faulty_connector import HANG, Fault, FaultyConnector, late, refuse
from tests.support.served import free_port

CHANNELS = 200
TEAM_ID = "19:team-fanout@thread.tacv2"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
# What the bot processes started here are told (see bot/config.py): a lease just longer than
# a send and the longest wait for a rate-limit slot, so a dead server's claims run out soon.
SEND_TIMEOUT_SECONDS = 1.0
LEASE_SECONDS = 6.5
# Faults for the first requests to a channel, all in the first half of the fan-out so that
# the retries are done by the time it ends. The first few channels meet three in a row;
# after them, one channel in ten is throttled, one refused and one hung, once each.
RUN_OF_FAULTS: Sequence[Fault | None] = [refuse(429, retry_after=0.5), refuse(503), HANG]
RUNS = 5
FAULTS: dict[int, Sequence[Fault | None]] = {
    1: [refuse(429, retry_after=1.0)],
    2: [refuse(503)],
    3: [HANG],
}


def channel_id(number: int) -> str:
    return f"19:fanout-{number:03d}-{uuid.uuid4().hex[:8]}@thread.tacv2"


def fault_plan(channels: Sequence[str]) -> dict[str, Sequence[Fault | None]]:
    plan = {}
    for number, channel in enumerate(channels):
        if number < RUNS:
            plan[channel] = RUN_OF_FAULTS
        elif number < len(channels) // 2 and number % 10 in FAULTS:
            plan[channel] = FAULTS[number % 10]
    return plan


async def add_channels(
    sessions: async_sessionmaker[AsyncSession],
    service_url: str,
    channels: Sequence[str],
    *,
    subscribe: bool = True,
) -> None:
    await channels_support.add_channels(
        sessions, service_url, channels, team_id=TEAM_ID, subscribe=subscribe
    )


async def outbox_status(sessions: async_sessionmaker[AsyncSession]) -> outbox.OutboxStatus:
    async with sessions() as session:
        return await outbox.status(session, now=utcnow())


async def wait_for_status(
    sessions: async_sessionmaker[AsyncSession],
    *,
    sent: int,
    within: float = 30.0,
) -> outbox.OutboxStatus:
    """The outbox's status once `sent` messages are recorded as sent and none is claimed."""
    deadline = time.monotonic() + within
    while True:
        status = await outbox_status(sessions)
        if status.counts["sent"] == sent and status.counts["sending"] == 0:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the outbox did not settle at {sent} sent: {status}")
        await asyncio.sleep(0.02)


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, OutboxMessage]:
    async with sessions() as session:
        found = await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        return {row.conversation_id: row for row in found.all()}


def is_digest(posted: dict[str, Any] | None) -> bool:
    attachments = (posted or {}).get("attachments") or [{}]
    return bool(attachments[0].get("contentType") == ADAPTIVE_CARD)


@pytest.fixture(autouse=True)
def startup_objects_frozen() -> Iterator[None]:
    """The outbox worker runs in this process, which carries what every earlier test left
    behind. A served bot sets its start-up objects aside from the garbage collector
    (bot.app.freeze_startup_objects), so its full collections are short; here they would
    walk the whole test run's objects and stall the worker for over 100 ms between logging
    a request and making it. Set aside as the server does, and let go afterwards."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
async def connector() -> AsyncIterator[FaultyConnector]:
    fake = await FaultyConnector().start()
    yield fake
    await fake.close()


# --- in process: the worker the server runs, driven by the test -------------------------------


def quick_policy(database_url: str, **changes: Any) -> DeliveryPolicy:
    """The configured policy (Teams' limits) with backoff and timeouts short enough for a
    test: the limits are what is being checked, the waits are not."""
    policy = delivery_policy(make_settings(database_url))
    short: dict[str, Any] = {
        "send_timeout": 1.0,
        "first_backoff": timedelta(seconds=0.2),
        "lease": timedelta(seconds=10),
    }
    return dataclasses.replace(policy, **(short | changes))


async def deliver_until(
    sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
    policy: DeliveryPolicy,
    database_url: str,
    *,
    posted: int,
    sent: int,
) -> outbox.OutboxStatus:
    """Run the server's outbox loop until `posted` messages reached the connector and
    `sent` are recorded; stop it as a server stops; the outbox's status then."""
    worker = build_worker(make_settings(database_url), sessions, policy=policy)
    loop = OutboxLoop(worker, sessions, poll_seconds=0.1)
    try:
        async with running(loop.run_forever()):
            await connector.wait_until(
                lambda: len(connector.posted()) >= posted, what=f"{posted} posted"
            )
            status = await wait_for_status(sessions, sent=sent)
            await loop.stop(wait_seconds=policy.send_timeout + 1)
    finally:
        await worker.close()
    return status


async def test_200_channels_get_one_digest_each_through_refusals_and_hangs_within_the_limits(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
) -> None:
    channels = [channel_id(number) for number in range(CHANNELS)]
    connector.plan = fault_plan(channels)
    await add_channels(fresh_sessions, connector.url, channels)
    run = await queue_digests_now(fresh_sessions, now=utcnow(), zone=make_settings("").zone)
    assert run.queued == CHANNELS
    policy = quick_policy(fresh_database_url)

    status = await deliver_until(
        fresh_sessions, connector, policy, fresh_database_url, posted=CHANNELS, sent=CHANNELS
    )

    assert connector.posted_per_conversation() == {channel: 1 for channel in channels}
    assert connector.duplicates() == {}
    assert all(is_digest(arrival.activity) for arrival in connector.posted())
    # Every planned fault happened, and each was followed by exactly one more request.
    planned = connector.plan
    assert connector.requests_per_conversation() == {
        channel: len(planned.get(channel, ())) + 1 for channel in channels
    }
    refused = [a for a in connector.arrivals if not a.posted]
    assert len(refused) == sum(len(faults) for faults in planned.values()) == 42
    # Every request counts against Teams' limits, the refused and the hung too.
    assert connector.breaches(policy.limits) == []
    # A 429's Retry-After is honoured; a hang is given up after the send timeout.
    for channel, faults in planned.items():
        times = [a.at for a in connector.arrivals if a.conversation_id == channel]
        for fault, before, after in zip(faults, times, times[1:], strict=False):
            assert fault is not None
            if fault.retry_after:
                assert after - before >= fault.retry_after - 0.01, (channel, fault)
            if fault.hang:
                assert after - before >= policy.send_timeout - 0.01, (channel, fault)
    # `outbox status` tells it as it is: everything sent, nothing failed. Nothing was sent
    # twice; a hung request may count as in doubt (the worker cannot know Teams did not
    # post it), a refused one may not.
    assert status.counts == {"pending": 0, "sending": 0, "sent": CHANNELS, "failed": 0}
    assert status.retrying == 0 and status.latest_failures == []
    assert status.unknown_outcomes <= sum(1 for a in connector.arrivals if a.outcome == "hung")


async def test_one_busy_conversation_keeps_to_its_own_limits(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
) -> None:
    busy = channel_id(0)
    connector.plan = {busy: [None, None, refuse(503), None, refuse(429, retry_after=0.3)]}
    await add_channels(fresh_sessions, connector.url, [busy], subscribe=False)
    texts = [f"Message {number}" for number in range(20)]
    async with transaction(fresh_sessions) as session:
        for text in texts:
            await outbox.enqueue(
                session,
                dedupe_key=f"burst:{text}",
                conversation_id=busy,
                payload={"type": "message", "text": text},
                now=utcnow(),
            )
    policy = quick_policy(fresh_database_url)

    status = await deliver_until(
        fresh_sessions, connector, policy, fresh_database_url, posted=20, sent=20
    )

    posted = sorted(a.activity["text"] for a in connector.posted() if a.activity)
    assert posted == sorted(texts), "each message once"
    assert len(connector.arrivals) == 22
    assert connector.breaches(policy.limits) == []
    # Teams' per-conversation limits were reached, not merely respected from afar.
    assert connector.max_in_window(1.0) == 7
    assert connector.max_in_window(2.0) == 8
    assert status.counts["sent"] == 20 and status.unknown_outcomes == 0


async def test_a_request_reaches_the_connector_within_the_guard_of_being_logged(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
) -> None:
    """What the limiter relies on (storage/ratelimit.py): a request is made within `guard`
    (0.2 s) of the moment it is logged, so windows counted that much longer hold at Teams'
    end too. Here another replica holds the rate log's lock for half a second while this
    worker wants to send: the request must be logged when it was let go, not when it began
    to wait."""
    if fresh_database_url.startswith("sqlite"):
        pytest.skip(
            "the rate log's lock is PostgreSQL's advisory lock; SQLite's writer lock cannot be "
            "held for the log alone (benchmarks/fanout.py shows the same delays there)"
        )
    channel = channel_id(0)
    await add_channels(fresh_sessions, connector.url, [channel])
    await queue_digests_now(fresh_sessions, now=utcnow(), zone=make_settings("").zone)
    policy = quick_policy(fresh_database_url)
    worker = build_worker(make_settings(fresh_database_url), fresh_sessions, policy=policy)
    try:
        async with transaction(fresh_sessions) as session:
            await hold_transaction_lock(session, ratelimit.RATE_LOCK)
            sending = asyncio.create_task(worker.deliver_due())
            await asyncio.sleep(0.5)
        report = await sending
    finally:
        await worker.close()

    assert report.sent == 1
    async with fresh_sessions() as session:
        logged = (await session.exec(select(DeliveryAttempt))).one()
    logged_at = logged.at if logged.at.tzinfo else logged.at.replace(tzinfo=UTC)
    late_by = connector.arrivals[0].wall - logged_at.timestamp()
    assert late_by < policy.limits.guard, f"arrived {late_by:.3f} s after it was logged"


async def test_a_message_posted_but_answered_too_late_counts_as_maybe_sent_twice(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
) -> None:
    slow = channel_id(0)
    connector.plan = {slow: [late(1.5)]}  # posted, answered after the client gave up
    await add_channels(fresh_sessions, connector.url, [slow])
    await queue_digests_now(fresh_sessions, now=utcnow(), zone=make_settings("").zone)
    policy = quick_policy(fresh_database_url, send_timeout=0.5)

    status = await deliver_until(
        fresh_sessions, connector, policy, fresh_database_url, posted=2, sent=1
    )

    # At least once: the retry posted it again, and nothing could have told the two apart.
    assert connector.duplicates() == {slow: 2}
    # But the status must own up to it.
    assert status.unknown_outcomes == 1


async def test_a_claim_waiting_for_the_rate_limit_past_its_lease_is_not_sent_twice(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
) -> None:
    # Scaled down from OUTBOX_MAX_PER_SECOND=1, OUTBOX_LEASE_SECONDS=8 and a send timeout of
    # 2 s, which Settings and DeliveryPolicy accept: sixteen sends in flight then wait up to
    # 16 x 1.2 s for their slots, each wait shorter than max_wait, all together longer than
    # the lease. Here: one request each 0.15 s, ten in flight, a lease of 0.7 s.
    channels = [channel_id(number) for number in range(10)]
    await add_channels(fresh_sessions, connector.url, channels)
    await queue_digests_now(fresh_sessions, now=utcnow(), zone=make_settings("").zone)
    policy = quick_policy(
        fresh_database_url,
        limits=dataclasses.replace(TEAMS_LIMITS, per_bot=(Window(0.05, 1),)),
        concurrency=10,
        send_timeout=0.2,
        max_wait=0.4,
        lease=timedelta(seconds=0.7),
    )

    # Settled means every claim, the second ones too, was sent and recorded.
    await deliver_until(fresh_sessions, connector, policy, fresh_database_url, posted=10, sent=10)

    assert connector.duplicates() == {}


# --- real server processes ------------------------------------------------------------------


def process_env(database_url: str, **settings: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return (
        inherited
        | {
            "DATABASE_URL": database_url,
            "MicrosoftAppId": "",
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "REMINDERS_AT": "off",
            "SCHEDULER_ENABLED": "false",
            "OUTBOX_LEASE_SECONDS": f"{LEASE_SECONDS:g}",
            "OUTBOX_SEND_TIMEOUT_SECONDS": f"{SEND_TIMEOUT_SECONDS:g}",
            "OUTBOX_FIRST_BACKOFF_SECONDS": "0.5",
        }
        | settings
    )


async def cli(database_url: str, *args: str) -> str:
    """Run `ourcambridge ARGS` as a deploy step would; its standard output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=process_env(database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


class Server:
    """`ourcambridge serve` in a process of its own, its log in a file."""

    def __init__(self, database_url: str, log: Path, **settings: str) -> None:
        self.env = process_env(database_url, PORT=str(free_port()), **settings)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Server:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self, how: signal.Signals = signal.SIGTERM, *, within: float = 15) -> int:
        """Send `how` and wait for the process to end; its exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(how)
        async with asyncio.timeout(within):
            return await self.process.wait()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Servers a test starts; any still running at the end are killed."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process is not None and server.process.returncode is None:
            await server.stop(signal.SIGKILL)


async def test_a_fan_out_stopped_then_killed_half_way_reaches_every_channel(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
    servers: list[Server],
    tmp_path: Path,
) -> None:
    """One fan-out, three servers in turn: the first is stopped (SIGTERM) a third of the way
    through, the second killed (SIGKILL) two thirds of the way, the third finishes. (One
    test rather than two: each server start and the wait for a dead server's lease cost
    seconds.)"""
    channels = [channel_id(number) for number in range(CHANNELS)]
    await add_channels(fresh_sessions, connector.url, channels)
    assert "200 digest(s) queued" in await cli(fresh_database_url, "digest", "send", "--now")

    # 1. Stopped: the posts in flight (answered after 0.3 s) are finished and recorded, the
    # messages claimed but not sent are given back, and the process ends cleanly.
    connector.latency = 0.3
    first = Server(fresh_database_url, tmp_path / "first.log")
    servers.append(await first.start())
    await connector.wait_until(lambda: len(connector.posted()) >= CHANNELS // 3)
    in_flight_at_stop = len(connector.held())
    assert await first.stop(signal.SIGTERM) == 0
    assert "Traceback" not in first.output() and " ERROR " not in first.output()
    stopped = await outbox_status(fresh_sessions)
    assert in_flight_at_stop > 0, "the stop had posts in flight to finish"
    assert stopped.counts["sent"] == len(connector.posted()), "every post was recorded"
    assert stopped.counts["sending"] == 0, "nothing left claimed: the next server starts at once"
    assert stopped.unknown_outcomes == 0
    assert connector.duplicates() == {}

    # 2. Killed: answer the posts up to two thirds at once, then post the rest but answer
    # nothing, so that what is in flight at the kill is exactly the posts the server never
    # heard back about. Kill it once the answered ones are recorded.
    connector.epoch, connector.latency = 2, 0.0
    two_thirds = 2 * CHANNELS // 3
    connector.hold_after = two_thirds
    second = Server(fresh_database_url, tmp_path / "second.log")
    servers.append(await second.start())
    await connector.wait_until(lambda: bool(connector.held()), what="a post held back")
    deadline = time.monotonic() + 10
    while (await outbox_status(fresh_sessions)).counts["sent"] < two_thirds:
        assert time.monotonic() < deadline, second.output()
        await asyncio.sleep(0.01)
    assert await second.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()
    await asyncio.sleep(0.2)  # anything the dead process had already written arrives
    held = connector.held()
    in_flight = {arrival.conversation_id for arrival in held}
    assert in_flight, "the kill caught posts in flight"
    # Killed before any held post timed out in the server: it never gave up on one itself.
    assert killed_at - min(arrival.at for arrival in held) < SEND_TIMEOUT_SECONDS

    # 3. Another server sends the rest at once, and what the dead one had claimed when its
    # lease runs out.
    connector.epoch = 3
    connector.release_held()
    third = Server(fresh_database_url, tmp_path / "third.log")
    servers.append(await third.start())
    await connector.wait_until(
        lambda: len(connector.posted()) == CHANNELS + len(in_flight),
        within=LEASE_SECONDS + 15,
        what="every channel's digest",
    )
    status = await wait_for_status(fresh_sessions, sent=CHANNELS)
    assert await third.stop() == 0
    assert "Traceback" not in third.output()

    # Every channel has its digest. The ones in flight at the kill have it twice, and only
    # those: Teams had posted them, the server died before hearing so, the retry posted
    # them again (Teams offers no way to post only once).
    assert set(connector.posted_per_conversation()) == set(channels)
    assert connector.duplicates() == {channel: 2 for channel in in_flight}
    assert connector.breaches(TEAMS_LIMITS) == []
    # `outbox status` tells the truth: all sent, and how many may have been sent twice,
    # counting at least every one that was.
    assert status.counts == {"pending": 0, "sending": 0, "sent": CHANNELS, "failed": 0}
    in_doubt = {
        channel for channel, row in (await rows(fresh_sessions)).items() if row.unknown_outcomes
    }
    assert in_flight <= in_doubt
    assert status.unknown_outcomes == len(in_doubt)
    printed = await cli(fresh_database_url, "outbox", "status")
    assert f"may have been sent twice: {len(in_doubt)}" in printed


def tcp_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP connections (Linux /proc): which server a
    request came from."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_two_servers_on_one_postgres_database_send_each_digest_once(
    fresh_database_url: str,
    fresh_sessions: async_sessionmaker[AsyncSession],
    connector: FaultyConnector,
    servers: list[Server],
    tmp_path: Path,
) -> None:
    if fresh_database_url.startswith("sqlite"):
        pytest.skip("servers share a database over the network: PostgreSQL")
    channels = [channel_id(number) for number in range(CHANNELS)]
    await add_channels(fresh_sessions, connector.url, channels)
    # Every channel's weekly time passed two minutes ago (set well before that).
    zone = make_settings("").zone
    due = (utcnow() - timedelta(minutes=2)).astimezone(zone)
    async with transaction(fresh_sessions) as session:
        for channel in channels:
            await subscriptions.change_schedule(
                session,
                conversation_id=channel,
                weekday=due.weekday(),
                send_time=due.strftime("%H:%M"),
                now=utcnow() - timedelta(hours=1),
            )
    connector.latency = 0.05

    # The second server starts once the first is fanning out (a replica added, a rolling
    # deploy): its scheduler finds this week's digests queued already, and its worker takes
    # its share of them. (Started at the same moment, the one whose scheduler did not queue
    # them would only look at the outbox at its next poll, 10 s later: both send only if
    # the second comes up while the digests are waiting.)
    pair = [
        Server(fresh_database_url, tmp_path / f"server-{n}.log", SCHEDULER_ENABLED="true")
        for n in (1, 2)
    ]
    servers.extend(pair)
    await pair[0].start()
    await connector.wait_until(lambda: bool(connector.posted()), what="the first digest")
    await pair[1].start()
    await connector.wait_until(
        lambda: len(connector.posted_per_conversation()) == CHANNELS, what="every channel"
    )
    status = await wait_for_status(fresh_sessions, sent=CHANNELS)
    ports = [tcp_ports(server.pid) for server in pair]
    for server in pair:
        assert await server.stop() == 0
        assert "Traceback" not in server.output()

    assert connector.posted_per_conversation() == {channel: 1 for channel in channels}
    # Both sent, and together they kept to the bot's limit.
    by_server = [sum(1 for a in connector.arrivals if a.peer_port in p) for p in ports]
    assert all(by_server), by_server
    assert connector.breaches(TEAMS_LIMITS) == []
    assert "Queued 200 weekly digest(s)" in pair[0].output()
    assert "Queued" not in pair[1].output(), "the second found them queued"
    assert status.counts == {"pending": 0, "sending": 0, "sent": CHANNELS, "failed": 0}
    assert status.unknown_outcomes == 0
