"""Exactly-once processing of incoming activities across replicas.

Teams redelivers an activity when the bot is slow to answer; the first replica to claim its
key handles it and every other delivery is acknowledged and dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ProcessedActivity, utcnow


def activity_key(*, channel_id: str, conversation_id: str, activity_id: str) -> str:
    return f"{channel_id}/{conversation_id}/{activity_id}"


async def claim_activity(session: AsyncSession, *, key: str) -> bool:
    """True when this delivery is the first of the activity; False for a repeat."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(ProcessedActivity)
        .values(key=key, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["key"])
    )
    result = await session.exec(statement)
    return bool(result.rowcount)


async def release_activity(session: AsyncSession, *, key: str) -> None:
    """Forget a claim whose turn failed, so a redelivery can try again."""
    await session.exec(delete(ProcessedActivity).where(col(ProcessedActivity.key) == key))


async def forget_processed_before(session: AsyncSession, *, cutoff: datetime) -> int:
    result = await session.exec(
        delete(ProcessedActivity).where(col(ProcessedActivity.received_at) < cutoff)
    )
    return int(result.rowcount)
