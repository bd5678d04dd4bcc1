"""Rows of the bot's state documents, with optimistic concurrency on an e-tag per row.

The botbuilder `Storage` built on these lives in `bot/state_storage.py`; this module knows
only keys, JSON text and e-tags.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import BotState, utcnow

UNCONDITIONAL = (None, "*")


class StateConflict(Exception):
    """Another turn changed the document since it was read."""

    def __init__(self, key: str):
        super().__init__(f"State {key!r} was changed by another turn (e-tag mismatch)")
        self.key = key


async def read_documents(
    session: AsyncSession, *, keys: Iterable[str]
) -> dict[str, tuple[str, str]]:
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.exec(select(BotState).where(col(BotState.key).in_(wanted)))
    return {row.key: (row.document, row.etag) for row in rows}


async def write_document(
    session: AsyncSession, *, key: str, document: str, expected_etag: str | None
) -> str:
    """Store `document` under `key`; return its new e-tag.

    With an e-tag, only the version read may be replaced: a concurrent writer's change makes
    this raise StateConflict instead of being silently overwritten. A key that does not
    exist yet is created either way (as botbuilder's MemoryStorage does).
    """
    new_etag = uuid.uuid4().hex
    now = utcnow()
    if expected_etag not in UNCONDITIONAL:
        result = await session.exec(
            update(BotState)
            .where(col(BotState.key) == key, col(BotState.etag) == expected_etag)
            .values(document=document, etag=new_etag, updated_at=now)
        )
        if result.rowcount:
            return new_etag
        existing = await session.exec(select(BotState.key).where(col(BotState.key) == key))
        if existing.first() is not None:
            raise StateConflict(key)
    # An upsert in one statement, so two first writers of a key cannot both insert.
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = insert(BotState).values(key=key, document=document, etag=new_etag, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["key"],
        set_={"document": document, "etag": new_etag, "updated_at": now},
    )
    await session.exec(statement)
    return new_etag


async def delete_documents(session: AsyncSession, *, keys: Iterable[str]) -> None:
    wanted = list(keys)
    if wanted:
        await session.exec(delete(BotState).where(col(BotState.key).in_(wanted)))


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"
