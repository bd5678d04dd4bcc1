"""The outbox worker sends through the Bot Connector with the stored reference, retries
what Teams asks to be retried (honouring Retry-After) and gives up on a 403."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import build_worker
from bot.connector import BotConnector, retry_after_seconds
from bot.proactive import MAX_ATTEMPTS, OutboxWorker
from storage import outbox, people, ratelimit
from storage.db import transaction
from storage.models import DeliveryAttempt, OutboxMessage, utcnow
from tests.bot.conftest import make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import TENANT_ID, activity, new_conversation_id


async def _conversation(
    sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> str:
    conversation_id = new_conversation_id()
    incoming = Activity().deserialize(activity(connector.url, conversation_id=conversation_id))
    async with transaction(sessions) as session:
        await people.save_conversation_reference(
            session,
            conversation_id=conversation_id,
            conversation_type="personal",
            tenant_id=TENANT_ID,
            service_url=connector.url,
            reference=TurnContext.get_conversation_reference(incoming).serialize(),
        )
    return conversation_id


async def _queue(
    sessions: async_sessionmaker[AsyncSession], conversation_id: str, text: str
) -> str:
    key = f"test:{uuid.uuid4().hex}"
    async with transaction(sessions) as session:
        # Due long ago, so this test's message is claimed before anything else queued.
        await outbox.enqueue(
            session,
            dedupe_key=key,
            conversation_id=conversation_id,
            payload={"type": "message", "text": text},
            now=utcnow() - timedelta(days=3000),
        )
    return key


async def _row(sessions: async_sessionmaker[AsyncSession], key: str) -> OutboxMessage:
    async with sessions() as session:
        return (
            await session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
        ).one()


@pytest.fixture
async def worker(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[OutboxWorker]:
    worker = build_worker(make_settings(database_url), sessions)
    yield worker
    await worker.close()


async def test_a_queued_message_is_delivered_once(
    worker: OutboxWorker, sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> None:
    conversation_id = await _conversation(sessions, connector)
    key = await _queue(sessions, conversation_id, "Your session is tomorrow.")
    await worker.deliver_due()
    await worker.deliver_due()
    sent = connector.to(conversation_id)
    assert [a["text"] for a in sent] == ["Your session is tomorrow."]
    assert (await _row(sessions, key)).status == "sent"


async def test_a_throttled_message_waits_for_retry_after(
    worker: OutboxWorker, sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> None:
    conversation_id = await _conversation(sessions, connector)
    key = await _queue(sessions, conversation_id, "Throttled once.")
    connector.refuse = lambda sent: (429, 120.0) if sent.get("text") == "Throttled once." else None
    try:
        report = await worker.deliver_due()
    finally:
        connector.refuse = None
    assert report.retried >= 1
    row = await _row(sessions, key)
    assert row.status == "pending" and row.attempts == 1
    wait = row.next_attempt_at.replace(tzinfo=UTC) - utcnow()
    assert wait > timedelta(seconds=110), "Retry-After is honoured"
    assert connector.to(conversation_id) == []


async def test_a_403_is_not_retried(
    worker: OutboxWorker, sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> None:
    conversation_id = await _conversation(sessions, connector)
    key = await _queue(sessions, conversation_id, "Blocked.")
    connector.refuse = lambda sent: (403, None) if sent.get("text") == "Blocked." else None
    try:
        await worker.deliver_due()
    finally:
        connector.refuse = None
    row = await _row(sessions, key)
    assert row.status == "failed" and row.attempts == 1
    assert "403" in (row.last_error or "")
    async with sessions() as session:
        gone = await outbox.stored_reference(session, conversation_id=conversation_id)
    assert gone is None, "the conversation is forgotten: the person shows as unreachable"


async def test_retries_are_bounded(
    worker: OutboxWorker, sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> None:
    conversation_id = await _conversation(sessions, connector)
    key = await _queue(sessions, conversation_id, "Always failing.")
    connector.refuse = lambda sent: (503, 0.0) if sent.get("text") == "Always failing." else None
    try:
        for _ in range(MAX_ATTEMPTS):
            # Pretend the backoff has passed: deliver as if it were the retry time.
            row = await _row(sessions, key)
            await worker.deliver_due(now=row.next_attempt_at.replace(tzinfo=UTC))
    finally:
        connector.refuse = None
    row = await _row(sessions, key)
    assert row.status == "failed" and row.attempts == MAX_ATTEMPTS


async def test_no_token_in_time_means_nothing_was_sent(connector: FakeConnector) -> None:
    """A token that cannot be had in time fails the send as certainly not posted: it must
    not count as "may have been sent twice"."""

    async def slow_token() -> str | None:
        await asyncio.sleep(5)
        return "never"

    client = BotConnector(token=slow_token, timeout=0.1)
    incoming = Activity().deserialize(activity(connector.url, conversation_id="a:token-test"))
    try:
        result = await client.send(
            TurnContext.get_conversation_reference(incoming),
            Activity(type="message", text="Hello"),
        )
    finally:
        await client.close()
    assert not result.ok and result.error.startswith("no token")
    assert result.maybe_posted is False
    assert connector.to("a:token-test") == []


async def test_a_request_logged_too_long_before_it_could_be_made_is_withdrawn_and_logged_again(
    worker: OutboxWorker,
    sessions: async_sessionmaker[AsyncSession],
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rate limits count a request from when it is logged. If committing that log takes
    # longer than the guard allows for, the request would reach Teams late (and bunched up
    # with the ones after it): it is not made, but withdrawn from the log and logged again.
    slowed: list[bool] = []
    reserved = False
    real_reserve = ratelimit.reserve

    async def reserve(*args: Any, **kwargs: Any) -> Any:
        nonlocal reserved
        answer = await real_reserve(*args, **kwargs)
        reserved = isinstance(answer, ratelimit.Logged)
        return answer

    @contextlib.asynccontextmanager
    async def slow_first_commit(
        sessions: async_sessionmaker[AsyncSession],
    ) -> AsyncIterator[AsyncSession]:
        nonlocal reserved
        async with transaction(sessions) as session:
            yield session
        if reserved and not slowed:
            slowed.append(True)
            await asyncio.sleep(worker.policy.limits.guard)
        reserved = False

    monkeypatch.setattr(ratelimit, "reserve", reserve)
    monkeypatch.setattr("bot.proactive.transaction", slow_first_commit)
    await _sent_once_after_being_late_once(worker, sessions, connector)


async def test_slow_queries_of_the_rate_log_make_a_request_late_too(
    worker: OutboxWorker,
    sessions: async_sessionmaker[AsyncSession],
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A request's lateness counts from the moment its logged time was read, so a busy
    # database answering the log's counting queries slowly makes it late as a slow commit
    # does: it is withdrawn and logged again.
    slowed: list[bool] = []
    real_free_from = ratelimit._free_from

    async def slow_free_from(*args: Any, **kwargs: Any) -> Any:
        if not slowed:
            slowed.append(True)
            await asyncio.sleep(worker.policy.limits.guard)
        return await real_free_from(*args, **kwargs)

    monkeypatch.setattr(ratelimit, "_free_from", slow_free_from)
    await _sent_once_after_being_late_once(worker, sessions, connector)


async def _sent_once_after_being_late_once(
    worker: OutboxWorker, sessions: async_sessionmaker[AsyncSession], connector: FakeConnector
) -> None:
    """Queue a message and deliver: its first logged request is late (the test made it so),
    taken out of the log and logged again; the message is sent once."""
    conversation_id = await _conversation(sessions, connector)
    key = await _queue(sessions, conversation_id, "Sent once, on time.")

    report = await worker.deliver_due()

    assert (report.late, report.sent) == (1, 1)
    assert [a["text"] for a in connector.to(conversation_id)] == ["Sent once, on time."]
    row = await _row(sessions, key)
    async with sessions() as session:
        logged = (
            await session.exec(select(DeliveryAttempt).where(DeliveryAttempt.outbox_id == row.id))
        ).all()
    assert len(logged) == 1  # the request made; the late one was taken out of the log


async def test_a_database_always_slow_to_commit_delays_a_request_once_not_for_ever(
    worker: OutboxWorker,
    sessions: async_sessionmaker[AsyncSession],
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @contextlib.asynccontextmanager
    async def slow_commits(
        sessions: async_sessionmaker[AsyncSession],
    ) -> AsyncIterator[AsyncSession]:
        async with transaction(sessions) as session:
            yield session
        await asyncio.sleep(worker.policy.limits.guard)

    monkeypatch.setattr("bot.proactive.transaction", slow_commits)
    conversation_id = await _conversation(sessions, connector)
    await _queue(sessions, conversation_id, "Sent despite a slow database.")

    report = await worker.deliver_due()

    assert (report.late, report.sent) == (1, 1)
    assert [a["text"] for a in connector.to(conversation_id)] == ["Sent despite a slow database."]


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    in_a_minute = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=60))
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
