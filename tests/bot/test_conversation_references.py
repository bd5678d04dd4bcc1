"""Where the bot can write later: stored on first contact, with the tenant beside it, and
refreshed when Teams moves the conversation to another service URL."""

from __future__ import annotations

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ConversationReference, Person
from tests.bot.conftest import BotServer
from tests.support.connector import FakeConnector
from tests.support.teams import TENANT_ID, TeamsClient


async def _stored(
    sessions: async_sessionmaker[AsyncSession], conversation_id: str
) -> ConversationReference:
    async with sessions() as session:
        rows = (
            await session.exec(
                select(ConversationReference).where(
                    ConversationReference.conversation_id == conversation_id
                )
            )
        ).all()
    assert len(rows) == 1
    return rows[0]


async def test_first_contact_stores_the_reference_with_its_tenant(
    client: TeamsClient, connector: FakeConnector, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await client.say("help")
    stored = await _stored(sessions, client.conversation_id)
    assert stored.tenant_id == TENANT_ID
    assert stored.service_url == connector.url
    assert stored.conversation_type == "personal"
    assert stored.reference["conversation"]["id"] == client.conversation_id
    async with sessions() as session:
        person = await session.get(Person, stored.person_id)
    assert person is not None and person.aad_object_id == client.user.aad_object_id


async def test_a_new_service_url_replaces_the_stored_one(
    bot_server: BotServer,
    client: TeamsClient,
    http: aiohttp.ClientSession,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.say("help")
    moved = FakeConnector()
    await moved.start()
    try:
        elsewhere = TeamsClient(
            bot_url=bot_server.url,
            connector=moved,
            http=http,
            conversation_id=client.conversation_id,
            user=client.user,
        )
        reply = await elsewhere.say("help")
        assert len(reply.sent) == 1, "the reply went to the new service URL"
        stored = await _stored(sessions, client.conversation_id)
        assert stored.service_url == moved.url
        assert stored.reference["serviceUrl"] == moved.url
        assert stored.tenant_id == TENANT_ID
    finally:
        await moved.close()
