"""botbuilder's `Storage` on the bot's SQL database, so dialog state survives restarts and is
shared by every replica."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from botbuilder.core import Storage, StoreItem
from jsonpickle.pickler import Pickler
from jsonpickle.unpickler import Unpickler
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import state
from storage.db import transaction


class SqlStorage(Storage):
    """Documents are serialised with jsonpickle, as botbuilder's Azure stores do: dialog state
    holds DialogState/DialogInstance objects that plain json cannot round-trip."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    async def read(self, keys: Iterable[str]) -> dict[str, Any]:
        if keys is None:
            raise ValueError("Keys are required when reading")
        async with self._sessions() as session:
            rows = await state.read_documents(session, keys=list(keys))
        items: dict[str, Any] = {}
        for key, (document, etag) in rows.items():
            item = Unpickler().restore(json.loads(document))
            _set_etag(item, etag)
            items[key] = item
        return items

    async def write(self, changes: dict[str, StoreItem]) -> None:
        if changes is None:
            raise ValueError("Changes are required when writing")
        if not changes:
            return
        # One transaction: a conflict on any key leaves every key of this write unchanged.
        async with transaction(self._sessions) as session:
            for key, item in changes.items():
                expected = _get_etag(item)
                document = json.dumps(Pickler().flatten(_without_etag(item)))
                new_etag = await state.write_document(
                    session, key=key, document=document, expected_etag=expected
                )
                # The caller's object now carries the row's new e-tag, so a second save in
                # the same turn is not mistaken for a concurrent writer.
                _set_etag(item, new_etag)

    async def delete(self, keys: list[str]) -> None:
        async with transaction(self._sessions) as session:
            await state.delete_documents(session, keys=keys)


def _get_etag(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


def _set_etag(item: Any, etag: str) -> None:
    if isinstance(item, dict):
        item["e_tag"] = etag
    elif hasattr(item, "e_tag") or isinstance(item, StoreItem):
        item.e_tag = etag


def _without_etag(item: Any) -> Any:
    # The e-tag belongs to the row, not the document: storing it too would let the two drift.
    if isinstance(item, dict) and "e_tag" in item:
        return {key: value for key, value in item.items() if key != "e_tag"}
    return item
