"""The outbox: every message the bot sends on its own is written here first, then delivered.

Writing first means nothing is lost if the process stops between deciding to send and
sending, and the unique `dedupe_key` means deciding twice (a job run twice, two replicas)
sends once. Delivery claims rows (FOR UPDATE SKIP LOCKED on PostgreSQL), so two workers
never send the same row; a claim is a lease that expires, so a row claimed by a worker that
died is picked up again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import ratelimit
from storage.models import OUTBOX_STATUSES, ConversationReference, OutboxMessage, aware

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True)
class Delivery:
    """A claimed message with what is needed to send it."""

    id: int
    dedupe_key: str
    conversation_id: str
    attempts: int  # including this one
    claim_token: str
    payload: dict[str, Any]
    reference: dict[str, Any] | None  # None: the conversation is not known (any more)
    tenant_id: str | None


async def enqueue(
    session: AsyncSession,
    *,
    dedupe_key: str,
    conversation_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Add a message unless one with this key exists. True if this call added it."""
    values = {
        "dedupe_key": dedupe_key,
        "conversation_id": conversation_id,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "unknown_outcomes": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    # INSERT ... ON CONFLICT DO NOTHING: a select-then-insert would let two enqueuers of the
    # same key both insert, and one of them fail.
    if dialect == "postgresql":
        statement: Any = postgresql.insert(OutboxMessage).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(OutboxMessage).values(values)
    else:
        raise NotImplementedError(f"No race-safe enqueue for the {dialect!r} dialect")
    result = await session.exec(statement.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return bool(result.rowcount)


async def claim_due(
    session: AsyncSession, *, now: datetime, limit: int, lease: timedelta
) -> list[Delivery]:
    """Claim up to `limit` messages due now: pending ones, and ones whose earlier claim's
    lease ran out (their worker died or hung). Call in a transaction of its own and commit
    before sending; the claim lasts `lease`.

    On PostgreSQL the due rows are locked with FOR UPDATE SKIP LOCKED, so workers on
    several servers claim different rows without waiting for each other. SQLite has one
    writer at a time; there the UPDATE repeats the condition, so a row claimed by another
    process since it was read is left alone.
    """
    due = (
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.attempts)
        .where(
            col(OutboxMessage.status).in_(("pending", "sending")),
            col(OutboxMessage.next_attempt_at) <= now,
        )
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    candidates = (await session.exec(due)).all()
    token = uuid.uuid4().hex
    claimed: list[int] = []
    for message_id, status, attempts in candidates:
        assert message_id is not None
        unknown = 0
        if status == "sending" and attempts in await ratelimit.started_attempts(
            session, outbox_id=message_id
        ):
            # The worker that held it logged the request and then went quiet: Teams may have
            # posted it. Sending again may show it twice; not sending may lose it. We send,
            # and count it, so `outbox status` can say so.
            unknown = 1
            logger.warning(
                "Outbox message %d: attempt %d started but its outcome was never recorded; "
                "sending it again",
                message_id,
                attempts,
            )
        result = await session.exec(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == message_id,
                col(OutboxMessage.status) == status,
                col(OutboxMessage.attempts) == attempts,
                col(OutboxMessage.next_attempt_at) <= now,
            )
            .values(
                status="sending",
                attempts=attempts + 1,
                claim_token=token,
                unknown_outcomes=OutboxMessage.unknown_outcomes + unknown,
                last_attempt_at=now,
                next_attempt_at=now + lease,
            )
        )
        if result.rowcount == 1:
            claimed.append(message_id)
    if not claimed:
        return []
    rows = (
        await session.exec(
            select(OutboxMessage, ConversationReference)
            .join(
                ConversationReference,
                col(ConversationReference.conversation_id) == col(OutboxMessage.conversation_id),
                isouter=True,
            )
            .where(col(OutboxMessage.id).in_(claimed))
            .order_by(col(OutboxMessage.id))
        )
    ).all()
    return [
        Delivery(
            id=message.id or 0,
            dedupe_key=message.dedupe_key,
            conversation_id=message.conversation_id,
            attempts=message.attempts,
            claim_token=token,
            payload=message.payload,
            reference=reference.reference if reference else None,
            tenant_id=reference.tenant_id if reference else None,
        )
        for message, reference in rows
    ]


async def next_due(session: AsyncSession) -> datetime | None:
    """When the next message falls due: a pending one, or a claim running out (None:
    nothing waiting)."""
    found = await session.exec(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            col(OutboxMessage.status).in_(("pending", "sending"))
        )
    )
    moment = found.one()
    return aware(moment) if moment is not None else None


async def personal_conversation_id(session: AsyncSession, *, person_id: int) -> str | None:
    """The 1:1 chat the bot has with this person (the newest, if Teams gave several), or
    None: they have not opened the app, so the bot cannot message them yet."""
    found = await session.exec(
        select(ConversationReference.conversation_id)
        .where(
            col(ConversationReference.person_id) == person_id,
            col(ConversationReference.conversation_type) == "personal",
        )
        .order_by(col(ConversationReference.updated_at).desc())
        .limit(1)
    )
    return found.first()


async def stored_reference(session: AsyncSession, *, conversation_id: str) -> dict[str, Any] | None:
    """The serialised botbuilder ConversationReference stored for a conversation."""
    found = await session.exec(
        select(ConversationReference.reference).where(
            col(ConversationReference.conversation_id) == conversation_id
        )
    )
    reference = found.first()
    return dict(reference) if reference is not None else None


async def mark_sent(session: AsyncSession, *, delivery: Delivery, now: datetime) -> bool:
    """Record that this claim sent the message. False if the claim was lost (its lease ran
    out and another worker claimed the row): nothing is changed then."""
    result = await session.exec(
        update(OutboxMessage)
        .where(*_still_claimed(delivery))
        .values(status="sent", sent_at=now, last_error=None, claim_token=None)
    )
    return result.rowcount == 1


async def mark_failed(
    session: AsyncSession,
    *,
    delivery: Delivery,
    error: str,
    retry_at: datetime | None,
    maybe_posted: bool = False,
) -> bool:
    """Record a failed attempt: try again at `retry_at`, or give up for good when None.
    `maybe_posted`: no answer came, but Teams may have posted it (counted as an unknown
    outcome: a retry may show it twice). False if the claim was lost, as for mark_sent."""
    result = await session.exec(
        update(OutboxMessage)
        .where(*_still_claimed(delivery))
        .values(
            status="pending" if retry_at else "failed",
            next_attempt_at=retry_at if retry_at else OutboxMessage.next_attempt_at,
            last_error=error[:MAX_ERROR_LENGTH],
            claim_token=None,
            unknown_outcomes=OutboxMessage.unknown_outcomes + (1 if maybe_posted else 0),
        )
    )
    return result.rowcount == 1


async def release(session: AsyncSession, *, delivery: Delivery, at: datetime) -> bool:
    """Give a claimed message back unsent, due again at `at`; the attempt does not count
    (nothing was sent: the rate limits said wait, or the worker is stopping)."""
    result = await session.exec(
        update(OutboxMessage)
        .where(*_still_claimed(delivery))
        .values(
            status="pending",
            attempts=OutboxMessage.attempts - 1,
            next_attempt_at=at,
            claim_token=None,
        )
    )
    return result.rowcount == 1


def _still_claimed(delivery: Delivery) -> tuple[Any, ...]:
    # A later claim of the same row has another token, so a worker whose lease ran out
    # cannot overwrite what the next worker recorded.
    return (
        col(OutboxMessage.id) == delivery.id,
        col(OutboxMessage.status) == "sending",
        col(OutboxMessage.claim_token) == delivery.claim_token,
    )


async def forget_conversation(session: AsyncSession, *, conversation_id: str) -> None:
    """The bot can no longer write to this conversation (removed, blocked): drop its
    reference, so the person counts as unreachable and nothing more is queued for it."""
    await session.exec(
        delete(ConversationReference).where(
            col(ConversationReference.conversation_id) == conversation_id
        )
    )


@dataclass(frozen=True)
class Failure:
    id: int
    dedupe_key: str
    conversation_id: str
    attempts: int
    error: str
    at: datetime | None


@dataclass(frozen=True)
class OutboxStatus:
    counts: dict[str, int]  # by status: pending (incl. waiting to retry), sending, sent, failed
    retrying: int  # pending after at least one failed attempt
    unknown_outcomes: int  # messages that may have reached Teams twice
    oldest_due: datetime | None  # the longest-waiting message due now
    latest_failures: list[Failure]


async def status(session: AsyncSession, *, now: datetime, failures: int = 10) -> OutboxStatus:
    by_status = dict(
        (
            await session.exec(
                select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))
            )
        ).all()
    )
    counts = {name: int(by_status.get(name, 0)) for name in OUTBOX_STATUSES}
    retrying = (
        await session.exec(
            select(func.count()).where(
                col(OutboxMessage.status) == "pending", col(OutboxMessage.attempts) > 0
            )
        )
    ).one()
    unknown = (
        await session.exec(select(func.count()).where(col(OutboxMessage.unknown_outcomes) > 0))
    ).one()
    oldest_due = (
        await session.exec(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                col(OutboxMessage.status) == "pending", col(OutboxMessage.next_attempt_at) <= now
            )
        )
    ).one()
    latest = (
        await session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.status) == "failed")
            .order_by(col(OutboxMessage.last_attempt_at).desc(), col(OutboxMessage.id).desc())
            .limit(failures)
        )
    ).all()
    return OutboxStatus(
        counts=counts,
        retrying=int(retrying),
        unknown_outcomes=int(unknown),
        oldest_due=oldest_due,
        latest_failures=[
            Failure(
                id=message.id or 0,
                dedupe_key=message.dedupe_key,
                conversation_id=message.conversation_id,
                attempts=message.attempts,
                error=message.last_error or "",
                at=message.last_attempt_at,
            )
            for message in latest
        ],
    )
