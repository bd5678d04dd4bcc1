"""botbuilder's `Storage` on the bot's SQL database, so dialog state survives restarts and is
shared by every replica, with botbuilder's optimistic concurrency on e-tags."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from botbuilder.core import ConversationState, Storage, StoreItem, TurnContext
from jsonpickle.pickler import Pickler
from jsonpickle.unpickler import Unpickler
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import state
from storage.db import transaction
from storage.state import StateConflict

__all__ = ["SqlConversationState", "SqlStorage", "StateConflict"]

ETAG = "e_tag"


class SqlStorage(Storage):
    """Documents are serialised with jsonpickle, as botbuilder's Azure stores do: dialog state
    holds DialogState/DialogInstance objects that plain json cannot round-trip. A write whose
    e-tag is stale raises `StateConflict` (its message names the key)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def read(self, keys: Iterable[str]) -> dict[str, Any]:
        if keys is None:
            # The exact message botbuilder's conformance suite expects of a SQL-like store.
            raise ValueError("Keys are required when reading")
        wanted = list(keys)
        if not wanted:
            return {}
        async with self._sessions() as session:
            rows = await state.read_documents(session, keys=wanted)
        return {key: _restore(document, etag) for key, (document, etag) in rows.items()}

    async def write(self, changes: Mapping[str, Any]) -> None:
        if changes is None:
            raise ValueError("Changes are required when writing")
        if not changes:
            return
        new_etags: dict[str, str] = {}
        # One transaction: a conflict on any key leaves every key of this write unchanged.
        async with transaction(self._sessions) as session:
            # Sorted, so two concurrent multi-key writes lock rows in the same order and
            # cannot deadlock each other on PostgreSQL.
            for key in sorted(changes):
                item = changes[key]
                new_etags[key] = await state.write_document(
                    session, key=key, document=_flatten(item), expected_etag=_get_etag(item)
                )
        # Only after the commit: the caller's objects now carry the rows' e-tags, so a second
        # save in the same turn is not refused as if another writer had got in between. Done
        # before the commit, a rolled-back write would leave them holding e-tags never stored.
        for key, etag in new_etags.items():
            _set_etag(changes[key], etag)

    async def delete(self, keys: Iterable[str]) -> None:
        if keys is None:
            raise ValueError("Keys are required when deleting")
        wanted = list(keys)
        if not wanted:
            return
        async with transaction(self._sessions) as session:
            await state.delete_documents(session, keys=wanted)


class SqlConversationState(ConversationState):
    """botbuilder's ConversationState, but a conversation's first save is conditional too.

    botbuilder keeps no e-tag for state it found missing, so the first save of a
    conversation was an unconditional write: of two first turns at once (a question asked
    while a form was opened), the one saving second silently replaced the other's dialog.
    Here state found missing carries the e-tag ABSENT, which SqlStorage writes only if the
    row is still missing; otherwise the turn fails with StateConflict and the person is asked
    to repeat it (bot/replies.py), as on any later turn."""

    async def load(self, turn_context: TurnContext, force: bool = False) -> None:
        await super().load(turn_context, force)
        cached = self.get_cached_state(turn_context)
        if cached is not None and ETAG not in cached.state:
            cached.state[ETAG] = state.ABSENT
            # Not a change: a turn that leaves the state alone still writes nothing.
            cached.hash = cached.compute_hash(cached.state)


def _flatten(item: Any) -> str:
    flattened = Pickler().flatten(item)
    if isinstance(item, dict) and isinstance(flattened, dict):
        # A plain dict's e-tag belongs to the row, not the document: a copy stored inside
        # would only go stale. (An object's e_tag attribute is kept, so that reading it back
        # still finds the attribute to refresh; it is overwritten from the row on read.)
        flattened.pop(ETAG, None)
    return json.dumps(flattened)


def _restore(document: str, etag: str) -> Any:
    item = Unpickler().restore(json.loads(document))
    _set_etag(item, etag)
    return item


def _get_etag(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get(ETAG)
    return getattr(item, ETAG, None)


def _set_etag(item: Any, etag: str) -> None:
    # As botbuilder's stores: dicts get the key; objects only if they use e-tags at all.
    if isinstance(item, dict):
        item[ETAG] = etag
    elif hasattr(item, ETAG) or isinstance(item, StoreItem):
        setattr(item, ETAG, etag)
