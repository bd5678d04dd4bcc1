"""The SQL-backed botbuilder Storage: botbuilder's own conformance suite, on both databases,
plus concurrency and restart behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from botbuilder.core import ConversationState, MessageFactory, StoreItem, TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.dialogs import (
    DialogSet,
    DialogState,
    DialogTurnResult,
    DialogTurnStatus,
    PromptOptions,
    TextPrompt,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.testing import StorageBaseTests
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.state_storage import SqlStorage, StateConflict
from storage.db import create_engine, session_factory
from storage.models import BotState
from storage.state import ABSENT


@pytest.fixture
async def storage(sessions: async_sessionmaker[AsyncSession]) -> SqlStorage:
    """A SqlStorage on an empty bot_state table (the database itself is per test session)."""
    async with sessions() as session, session.begin():
        await session.exec(delete(BotState))
    return SqlStorage(sessions)


CONFORMANCE = [
    "return_empty_object_when_reading_unknown_key",
    "handle_null_keys_when_reading",
    "handle_null_keys_when_writing",
    "does_not_raise_when_writing_no_items",
    "create_object",
    "handle_crazy_keys",
    "update_object",
    "delete_object",
    "delete_unknown_object",
    "perform_batch_operations",
    "proceeds_through_waterfall",
]


@pytest.mark.parametrize("name", CONFORMANCE)
async def test_botbuilder_storage_conformance(storage: SqlStorage, name: str) -> None:
    assert await getattr(StorageBaseTests, name)(storage) is True


def test_every_conformance_test_is_run() -> None:
    available = {
        name
        for name in vars(StorageBaseTests)
        if not name.startswith("_") and callable(getattr(StorageBaseTests, name))
    }
    assert available == set(CONFORMANCE)


async def test_a_stale_etag_is_refused_and_the_first_writers_data_kept(
    storage: SqlStorage,
) -> None:
    await storage.write({"conversation/1": {"step": 1}})
    first = (await storage.read(["conversation/1"]))["conversation/1"]
    second = (await storage.read(["conversation/1"]))["conversation/1"]
    assert first["e_tag"] == second["e_tag"]

    first["step"] = 2
    await storage.write({"conversation/1": first})
    second["step"] = 99
    with pytest.raises(StateConflict, match="'conversation/1'"):
        await storage.write({"conversation/1": second})

    stored = (await storage.read(["conversation/1"]))["conversation/1"]
    assert stored["step"] == 2
    assert stored["e_tag"] == first["e_tag"]


async def test_of_concurrent_writers_with_one_etag_exactly_one_wins(storage: SqlStorage) -> None:
    await storage.write({"race": {"winner": None}})
    etag = (await storage.read(["race"]))["race"]["e_tag"]

    outcomes = await asyncio.gather(
        *(storage.write({"race": {"winner": n, "e_tag": etag}}) for n in range(8)),
        return_exceptions=True,
    )

    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1
    assert all(isinstance(o, StateConflict) for o in outcomes if o is not None)
    assert (await storage.read(["race"]))["race"]["winner"] == winners[0]


async def test_concurrent_first_writes_of_a_key_do_not_collide(storage: SqlStorage) -> None:
    await asyncio.gather(*(storage.write({"fresh": {"n": n}}) for n in range(8)))
    assert (await storage.read(["fresh"]))["fresh"]["n"] in range(8)


async def test_a_first_save_creates_the_document_only_if_it_is_still_missing(
    storage: SqlStorage,
) -> None:
    """The e-tag ABSENT (a conversation's state read as missing): of concurrent first saves
    with different documents exactly one wins; one with the very document stored is no
    conflict (nothing is lost by it) and learns the stored e-tag."""
    outcomes = await asyncio.gather(
        *(storage.write({"first": {"n": n, "e_tag": ABSENT}}) for n in range(4)),
        return_exceptions=True,
    )
    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1
    assert all(isinstance(o, StateConflict) for o in outcomes if o is not None)
    stored = (await storage.read(["first"]))["first"]
    assert stored["n"] == winners[0]

    same = {"n": winners[0], "e_tag": ABSENT}
    await storage.write({"first": same})
    assert same["e_tag"] == stored["e_tag"], "given the stored e-tag, for the next save"


async def test_a_write_with_an_etag_does_not_recreate_a_deleted_document(
    storage: SqlStorage,
) -> None:
    await storage.write({"gone": {"n": 1}})
    stale = (await storage.read(["gone"]))["gone"]
    await storage.delete(["gone"])

    with pytest.raises(StateConflict, match="'gone'"):
        await storage.write({"gone": stale})
    assert await storage.read(["gone"]) == {}


async def test_a_conflict_leaves_the_whole_batch_unwritten(storage: SqlStorage) -> None:
    await storage.write({"a": {"n": 1}})
    stale = (await storage.read(["a"]))["a"]
    await storage.write({"a": {"n": 2, "e_tag": "*"}})
    fresh = {"n": 1}

    with pytest.raises(StateConflict, match="'a'"):
        await storage.write({"b": fresh, "a": stale})

    assert await storage.read(["b"]) == {}
    assert (await storage.read(["a"]))["a"]["n"] == 2
    # Nothing was stored, so the callers' objects were not given e-tags either.
    assert "e_tag" not in fresh


async def test_the_writer_holds_the_new_etag_and_can_save_again(storage: SqlStorage) -> None:
    item = {"n": 1}
    await storage.write({"k": item})
    assert item["e_tag"] == (await storage.read(["k"]))["k"]["e_tag"]

    item["n"] = 2
    await storage.write({"k": item})  # a second save in the same turn is not a conflict
    assert (await storage.read(["k"]))["k"] == {"n": 2, "e_tag": item["e_tag"]}


async def test_store_items_get_their_etag_attribute(storage: SqlStorage) -> None:
    await storage.write({"item": StoreItem(name="alloy", e_tag="*")})
    loaded = (await storage.read(["item"]))["item"]

    assert isinstance(loaded, StoreItem)
    assert loaded.name == "alloy"
    assert loaded.e_tag not in (None, "*")

    loaded.name = "copper"
    await storage.write({"item": loaded})
    assert (await storage.read(["item"]))["item"].name == "copper"


async def test_long_keys(storage: SqlStorage) -> None:
    key = "msteams/conversations/19:" + "x" * 600 + "@thread.tacv2;messageid=1/"
    await storage.write({key: {"ok": True}})
    assert (await storage.read([key]))[key]["ok"] is True
    await storage.delete([key])
    assert await storage.read([key]) == {}


def _bot(storage: SqlStorage) -> Callable[[TurnContext], Awaitable[None]]:
    """A three-step waterfall: ask a project, ask a colour, then answer with both."""
    conversation_state = ConversationState(storage)
    dialogs = DialogSet(conversation_state.create_property("DialogState"))

    async def ask_project(step: WaterfallStepContext) -> DialogTurnResult:
        return await step.prompt("text", PromptOptions(prompt=MessageFactory.text("Project?")))

    async def ask_rag(step: WaterfallStepContext) -> DialogTurnResult:
        step.values["project"] = step.result
        return await step.prompt("text", PromptOptions(prompt=MessageFactory.text("RAG?")))

    async def answer(step: WaterfallStepContext) -> DialogTurnResult:
        await step.context.send_activity(f"{step.values['project']} is {step.result}")
        return await step.end_dialog()

    dialogs.add(TextPrompt("text"))
    dialogs.add(WaterfallDialog("update", [ask_project, ask_rag, answer]))

    async def logic(turn_context: TurnContext) -> None:
        dialog_context = await dialogs.create_context(turn_context)
        result = await dialog_context.continue_dialog()
        if result.status == DialogTurnStatus.Empty:
            await dialog_context.begin_dialog("update")
        await conversation_state.save_changes(turn_context)

    return logic


async def test_a_waterfall_continues_on_a_new_storage_after_a_restart(
    storage: SqlStorage, database_url: str
) -> None:
    """Two turns on one process's engine and storage; the third on a brand-new pair."""
    before = create_engine(database_url)
    try:
        adapter = TestAdapter(_bot(SqlStorage(session_factory(before))))
        await (await adapter.send("update")).assert_reply("Project?")
        await (await adapter.send("alloy")).assert_reply("RAG?")
    finally:
        await before.dispose()

    after = create_engine(database_url)
    try:
        restarted = SqlStorage(session_factory(after))
        key = ConversationState(restarted).get_storage_key(TurnContext(adapter, adapter.template))
        dialog_state = (await restarted.read([key]))[key]["DialogState"]
        assert isinstance(dialog_state, DialogState)
        waterfall = dialog_state.dialog_stack[-1]
        assert waterfall.id == "update"
        assert waterfall.state["stepIndex"] == 1  # on step 2, waiting for its prompt
        assert waterfall.state["values"] == {"project": "alloy"}

        adapter = TestAdapter(_bot(restarted))
        await (await adapter.send("amber")).assert_reply("alloy is amber")
    finally:
        await after.dispose()
