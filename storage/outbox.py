"""The outbox: every message the bot sends on its own is written here first, then delivered.

Writing first means nothing is lost if the process stops between deciding to send and
sending, and the unique `dedupe_key` means deciding twice (a job run twice, two replicas)
sends once. Delivery claims rows with a conditional UPDATE, so two workers never send the
same row; a claim is a lease that expires, so a row claimed by a worker that died is picked
up again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ConversationReference, OutboxMessage

MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True)
class Delivery:
    """A claimed message with what is needed to send it."""

    id: int
    dedupe_key: str
    conversation_id: str
    attempts: int  # including this one
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
    lease ran out. Call in a transaction of its own and commit before sending."""
    candidates = (
        await session.exec(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.next_attempt_at)
            .where(
                or_(col(OutboxMessage.status) == "pending", col(OutboxMessage.status) == "sending"),
                col(OutboxMessage.next_attempt_at) <= now,
            )
            .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
            .limit(limit)
        )
    ).all()
    claimed: list[int] = []
    for message_id, status, due_at in candidates:
        # Only if nobody claimed it since we looked: the row still has the values we saw.
        result = await session.exec(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == message_id,
                col(OutboxMessage.status) == status,
                col(OutboxMessage.next_attempt_at) == due_at,
            )
            .values(
                status="sending",
                attempts=OutboxMessage.attempts + 1,
                next_attempt_at=now + lease,
            )
        )
        if result.rowcount == 1 and message_id is not None:
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
            payload=message.payload,
            reference=reference.reference if reference else None,
            tenant_id=reference.tenant_id if reference else None,
        )
        for message, reference in rows
    ]


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


async def mark_sent(session: AsyncSession, *, message_id: int, attempt: int, now: datetime) -> bool:
    """Record that the claim numbered `attempt` sent the message. False if that claim was
    lost (its lease ran out and another worker claimed the row): nothing is changed then."""
    result = await session.exec(
        update(OutboxMessage)
        .where(*_still_claimed(message_id, attempt))
        .values(status="sent", sent_at=now, last_error=None)
    )
    return result.rowcount == 1


async def mark_failed(
    session: AsyncSession,
    *,
    message_id: int,
    attempt: int,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """Record a failed attempt: try again at `retry_at`, or give up for good when None.
    False if the claim was lost, as for mark_sent."""
    result = await session.exec(
        update(OutboxMessage)
        .where(*_still_claimed(message_id, attempt))
        .values(
            status="pending" if retry_at else "failed",
            next_attempt_at=retry_at if retry_at else OutboxMessage.next_attempt_at,
            last_error=error[:MAX_ERROR_LENGTH],
        )
    )
    return result.rowcount == 1


def _still_claimed(message_id: int, attempt: int) -> tuple[Any, ...]:
    # The attempt count is the claim's token: a later claim of the same row has a higher one,
    # so a worker whose lease ran out cannot overwrite what the next worker recorded.
    return (
        col(OutboxMessage.id) == message_id,
        col(OutboxMessage.status) == "sending",
        col(OutboxMessage.attempts) == attempt,
    )


async def forget_conversation(session: AsyncSession, *, conversation_id: str) -> None:
    """The bot can no longer write to this conversation (removed, blocked): drop its
    reference, so the person counts as unreachable and nothing more is queued for it."""
    await session.exec(
        delete(ConversationReference).where(
            col(ConversationReference.conversation_id) == conversation_id
        )
    )
