"""The SQL-backed botbuilder Storage: botbuilder's own conformance suite, on both databases,
plus concurrency and restart behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from botbuilder.core import ConversationState, MessageFactory, TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.dialogs import (
    DialogSet,
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

from bot.state_storage import SqlStorage
from storage.db import create_engine, session_factory
from storage.models import BotState


@pytest.fixture
async def storage(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[SqlStorage]:
    async with sessions() as session, session.begin():
        await session.exec(delete(BotState))  # type: ignore[call-overload]
    yield SqlStorage(sessions)


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


async def test_every_conformance_test_is_run() -> None:
    available = {
        name
        for name in vars(StorageBaseTests)
        if not name.startswith("_") and callable(getattr(StorageBaseTests, name))
    }
    assert available == set(CONFORMANCE)


async def test_a_stale_etag_is_refused_and_the_newer_data_kept(storage: SqlStorage) -> None:
    await storage.write({"conversation/1": {"step": 1}})
    first = (await storage.read(["conversation/1"]))["conversation/1"]
    second = (await storage.read(["conversation/1"]))["conversation/1"]

    first["step"] = 2
    await storage.write({"conversation/1": first})
    second["step"] = 99
    with pytest.raises(Exception, match="conversation/1"):
        await storage.write({"conversation/1": second})

    assert (await storage.read(["conversation/1"]))["conversation/1"]["step"] == 2


async def test_a_conflict_leaves_the_whole_batch_unwritten(storage: SqlStorage) -> None:
    await storage.write({"a": {"n": 1}})
    stale = (await storage.read(["a"]))["a"]
    await storage.write({"a": {"n": 2, "e_tag": "*"}})
    with pytest.raises(Exception, match="e-tag"):
        await storage.write({"b": {"n": 1}, "a": stale})
    assert await storage.read(["b"]) == {}


async def test_long_keys(storage: SqlStorage) -> None:
    key = "msteams/conversations/" + "19:" + "x" * 600 + "@thread.tacv2"
    await storage.write({key: {"ok": True}})
    assert (await storage.read([key]))[key]["ok"] is True


async def test_a_waterfall_continues_on_a_new_storage_after_a_restart(database_url: str) -> None:
    """Turn one runs on one process's storage; turn two on a new engine and storage."""

    def bot_logic(storage: SqlStorage):  # type: ignore[no-untyped-def]
        conversation_state = ConversationState(storage)
        dialogs = DialogSet(conversation_state.create_property("DialogState"))

        async def ask(step: WaterfallStepContext):  # type: ignore[no-untyped-def]
            return await step.prompt(
                "name", PromptOptions(prompt=MessageFactory.text("Which project?"))
            )

        async def answer(step: WaterfallStepContext):  # type: ignore[no-untyped-def]
            await step.context.send_activity(f"You chose {step.result}")
            return await step.end_dialog()

        dialogs.add(TextPrompt("name"))
        dialogs.add(WaterfallDialog("ask", [ask, answer]))

        async def logic(turn_context: TurnContext) -> None:
            dialog_context = await dialogs.create_context(turn_context)
            result = await dialog_context.continue_dialog()
            if result.status == DialogTurnStatus.Empty:
                await dialog_context.begin_dialog("ask")
            await conversation_state.save_changes(turn_context)

        return logic

    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        first = TestAdapter(bot_logic(SqlStorage(session_factory(engines[0]))))
        await (await first.send("status")).assert_reply("Which project?")

        second = TestAdapter(bot_logic(SqlStorage(session_factory(engines[1]))))
        await (await second.send("alloy")).assert_reply("You chose alloy")
    finally:
        for engine in engines:
            await engine.dispose()
