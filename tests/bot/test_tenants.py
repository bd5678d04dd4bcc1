"""ALLOWED_TENANT_IDS: activities from any other tenant get no reply and store nothing."""

from __future__ import annotations

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import people
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import TENANT_ID, TeamsClient, card_text


async def test_other_tenants_are_ignored_and_ours_served(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    connector: FakeConnector,
    http: aiohttp.ClientSession,
) -> None:
    ours_only = make_settings(database_url, allowed_tenant_ids=frozenset({TENANT_ID.upper()}))
    server = await BotServer(ours_only).start()
    try:
        stranger = TeamsClient(bot_url=server.url, connector=connector, http=http)
        foreign = stranger.activity(text="status alloy")
        foreign["channelData"]["tenant"]["id"] = "0000dead-0000-4000-8000-000000000000"
        reply = await stranger.post(foreign)
        assert reply.sent == []
        async with sessions() as session:
            assert None is await people.conversation_address(
                session, conversation_id=stranger.conversation_id
            )

        member = TeamsClient(bot_url=server.url, connector=connector, http=http)
        assert "Currently in delivery" in card_text((await member.say("status alloy")).card)
    finally:
        await server.stop()
