"""The outbox: a key is stored once, a row is claimed by one worker, a dead worker's claim
expires, failures are retried or given up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import outbox
from storage.db import transaction
from storage.models import OutboxMessage, utcnow

LEASE = timedelta(minutes=5)


async def _enqueue(sessions: async_sessionmaker[AsyncSession], key: str, **extra: object) -> bool:
    async with transaction(sessions) as session:
        return await outbox.enqueue(
            session,
            dedupe_key=key,
            conversation_id=f"a:nowhere-{key}",
            payload={"type": "message", "text": "hello"},
            now=extra.get("now", utcnow()),  # type: ignore[arg-type]
        )


async def _row(sessions: async_sessionmaker[AsyncSession], key: str) -> OutboxMessage:
    async with sessions() as session:
        return (
            await session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
        ).one()


async def test_the_same_key_is_stored_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    key = f"test:{uuid.uuid4().hex}"
    results = await asyncio.gather(*(_enqueue(sessions, key) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_a_message_is_claimed_by_one_worker_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Due in the past, so it is ahead of anything else the shared database holds.
    key = f"test:{uuid.uuid4().hex}"
    past = utcnow() - timedelta(days=3650)
    await _enqueue(sessions, key, now=past)

    async def claim() -> list[str]:
        async with transaction(sessions) as session:
            claimed = await outbox.claim_due(session, now=utcnow(), limit=1000, lease=LEASE)
        return [d.dedupe_key for d in claimed]

    claims = await asyncio.gather(*(claim() for _ in range(4)))
    assert sum(keys.count(key) for keys in claims) == 1
    row = await _row(sessions, key)
    assert row.status == "sending" and row.attempts == 1


async def test_a_claim_whose_lease_ran_out_is_claimed_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = f"test:{uuid.uuid4().hex}"
    await _enqueue(sessions, key, now=utcnow() - timedelta(days=3650))
    async with transaction(sessions) as session:
        first = await outbox.claim_due(session, now=utcnow(), limit=1000, lease=LEASE)
    assert key in [d.dedupe_key for d in first]
    async with transaction(sessions) as session:
        meanwhile = await outbox.claim_due(session, now=utcnow(), limit=1000, lease=LEASE)
    assert key not in [d.dedupe_key for d in meanwhile], "leased to the first worker"
    async with transaction(sessions) as session:
        later = await outbox.claim_due(
            session, now=utcnow() + LEASE + timedelta(seconds=1), limit=1000, lease=LEASE
        )
    assert key in [d.dedupe_key for d in later], "the first worker died: claimed again"
    assert (await _row(sessions, key)).attempts == 2


async def _claim(
    sessions: async_sessionmaker[AsyncSession], key: str, **when: Any
) -> outbox.Delivery:
    """Claim due messages as a worker does; the claim of `key`."""
    async with transaction(sessions) as session:
        claimed = await outbox.claim_due(
            session, now=when.get("now", utcnow()), limit=1000, lease=LEASE
        )
    return next(d for d in claimed if d.dedupe_key == key)


async def test_failures_are_retried_later_or_given_up(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    retry, give_up = f"test:{uuid.uuid4().hex}", f"test:{uuid.uuid4().hex}"
    for key in (retry, give_up):
        await _enqueue(sessions, key, now=utcnow() - timedelta(days=3650))
    async with transaction(sessions) as session:
        claimed = await outbox.claim_due(session, now=utcnow(), limit=1000, lease=LEASE)
    deliveries = {d.dedupe_key: d for d in claimed}
    retry_at = utcnow() + timedelta(minutes=2)
    async with transaction(sessions) as session:
        assert await outbox.mark_failed(
            session, delivery=deliveries[retry], error="429", retry_at=retry_at
        )
        assert await outbox.mark_failed(
            session, delivery=deliveries[give_up], error="403", retry_at=None
        )
    retried, failed = await _row(sessions, retry), await _row(sessions, give_up)
    assert retried.status == "pending" and retried.last_error == "429"
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    stored = retried.next_attempt_at.replace(tzinfo=UTC)
    assert abs((stored - retry_at).total_seconds()) < 1
    assert failed.status == "failed" and failed.last_error == "403"


async def test_a_worker_whose_claim_ran_out_cannot_overwrite_the_next_ones_outcome(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = f"test:{uuid.uuid4().hex}"
    await _enqueue(sessions, key, now=utcnow() - timedelta(days=3650))
    slow = await _claim(sessions, key)
    fast = await _claim(sessions, key, now=utcnow() + LEASE + timedelta(seconds=1))
    async with transaction(sessions) as session:
        assert await outbox.mark_sent(session, delivery=fast, now=utcnow())
    async with transaction(sessions) as session:
        late = await outbox.mark_failed(
            session, delivery=slow, error="timed out", retry_at=utcnow()
        )
    assert late is False
    assert (await _row(sessions, key)).status == "sent", "a sent message stays sent"
