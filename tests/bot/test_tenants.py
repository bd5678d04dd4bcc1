"""ALLOWED_TENANT_IDS: activities from any other tenant get no reply and store nothing."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import people
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import TENANT_ID, TeamsClient, card_text


async def _row_counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            table.name: (await session.exec(select(func.count()).select_from(table))).one()
            for table in SQLModel.metadata.sorted_tables
        }


async def test_other_tenants_are_ignored_and_ours_served(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours_only = make_settings(database_url, allowed_tenant_ids=frozenset({TENANT_ID.upper()}))
    server = await BotServer(ours_only).start()
    try:
        stranger = TeamsClient(bot_url=server.url, connector=connector, http=http)
        foreign = stranger.activity(text="status alloy")
        foreign["channelData"]["tenant"]["id"] = "0000dead-0000-4000-8000-000000000000"
        before = await _row_counts(sessions)
        with caplog.at_level(logging.WARNING, logger="bot.handler"):
            reply = await stranger.post(foreign)
        assert reply.sent == []
        assert await _row_counts(sessions) == before
        assert any("tenant not allowed" in r.getMessage() for r in caplog.records)
        async with sessions() as session:
            assert None is await people.conversation_address(
                session, conversation_id=stranger.conversation_id
            )

        member = TeamsClient(bot_url=server.url, connector=connector, http=http)
        assert "Currently in delivery" in card_text((await member.say("status alloy")).card)
    finally:
        await server.stop()
