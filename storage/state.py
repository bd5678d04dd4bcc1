"""Rows of the bot's state documents, with optimistic concurrency on an e-tag per row.

The botbuilder `Storage` built on these lives in `bot/state_storage.py`; this module knows
only keys, JSON text and e-tags. The functions take a session rather than a sessionmaker so
the caller decides the transaction: one `Storage.write` of several keys is one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import BotState, utcnow

# botbuilder's convention: no e-tag, or the wildcard, means "write whatever is there".
UNCONDITIONAL: tuple[str | None, ...] = (None, "*")
# The e-tag of a document its reader found missing (bot/state_storage.py gives it to a
# conversation's state on its first turn): write it only if nobody has created it since.
# Without it, two first turns of a conversation both wrote unconditionally and the one that
# saved second silently replaced the other's dialog (a question asked, then forgotten).
ABSENT = "absent"


class StateConflict(Exception):
    """The document was changed or deleted by another writer since it was read."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Bot state {key!r} was changed or deleted by another writer since it was read "
            "(e-tag mismatch)"
        )
        self.key = key


async def read_documents(
    session: AsyncSession, *, keys: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """key -> (document JSON text, e-tag) for the keys that exist; missing keys are omitted."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.exec(select(BotState).where(col(BotState.key).in_(wanted)))
    return {row.key: (row.document, row.etag) for row in rows}


async def write_document(
    session: AsyncSession, *, key: str, document: str, expected_etag: str | None
) -> str:
    """Store `document` under `key` and return its new e-tag.

    `expected_etag` None or "*" writes unconditionally (creating the row if need be); ABSENT
    creates the row only if there is none. Any other value replaces only the version that
    carried that e-tag: if the row was changed or deleted meanwhile, StateConflict is raised
    and nothing is written. (A deleted row is a conflict too: recreating it would silently
    undo the other writer's delete.) An ABSENT write that finds the very document it would
    create is not a conflict: nothing the other writer saved is lost, and the stored e-tag is
    returned.
    """
    new_etag = uuid.uuid4().hex
    now = utcnow()
    if expected_etag in UNCONDITIONAL:
        await session.exec(_upsert(session, key=key, document=document, etag=new_etag, now=now))
        return new_etag
    if expected_etag == ABSENT:
        created = await session.exec(
            _insert(session, key=key, document=document, etag=new_etag, now=now)
        )
        if created.rowcount == 1:
            return new_etag
        # Several first turns of a chat (four idea forms asked for at once, say) all save the
        # same empty dialog state: only a different document means a turn's input was lost.
        stored = (
            await session.exec(
                select(BotState.document, BotState.etag).where(col(BotState.key) == key)
            )
        ).first()
        if stored is not None and stored[0] == document:
            return stored[1]
        raise StateConflict(key)
    # One conditional statement, so the check and the write are atomic: PostgreSQL re-checks
    # the WHERE after waiting for a concurrent writer's row lock, SQLite serialises writers.
    result = await session.exec(
        update(BotState)
        .where(col(BotState.key) == key, col(BotState.etag) == expected_etag)
        .values(document=document, etag=new_etag, updated_at=now)
    )
    if result.rowcount != 1:
        raise StateConflict(key)
    return new_etag


async def delete_documents(session: AsyncSession, *, keys: Iterable[str]) -> None:
    """Delete the keys' rows; keys that do not exist are ignored."""
    wanted = list(keys)
    if wanted:
        await session.exec(delete(BotState).where(col(BotState.key).in_(wanted)))


def _insert(session: AsyncSession, *, key: str, document: str, etag: str, now: datetime) -> Any:
    """INSERT ... ON CONFLICT (key) DO NOTHING: its row count says whether it was created."""
    values = {"key": key, "document": document, "etag": etag, "updated_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(BotState).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(BotState).values(values).on_conflict_do_nothing()
    raise NotImplementedError(f"No race-safe insert for the {dialect!r} dialect")


def _upsert(session: AsyncSession, *, key: str, document: str, etag: str, now: datetime) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE: a select-then-insert would let two first
    writers of a key both try to insert, and one would fail on the primary key."""
    values = {"key": key, "document": document, "etag": etag, "updated_at": now}
    replaced = ("document", "etag", "updated_at")
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg_statement = postgresql.insert(BotState).values(values)
        return pg_statement.on_conflict_do_update(
            index_elements=[col(BotState.key)],
            set_={name: pg_statement.excluded[name] for name in replaced},
        )
    if dialect == "sqlite":
        lite_statement = sqlite.insert(BotState).values(values)
        return lite_statement.on_conflict_do_update(
            index_elements=[col(BotState.key)],
            set_={name: lite_statement.excluded[name] for name in replaced},
        )
    # Failing loudly beats falling back to a racy select-then-insert on an untested backend.
    raise NotImplementedError(f"No race-safe upsert for the {dialect!r} dialect")
