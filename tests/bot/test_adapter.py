"""The adapter's fast paths (bot/adapter.py): replies over the pooled aiohttp session reach
the activity they answer, signed with a token fetched per request, and the SDK's msrest clients
are built once per service URL rather than on every turn."""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from botbuilder.core import CardFactory, MessageFactory
from botbuilder.schema import Attachment, HeroCard
from botframework.connector.auth import (
    AppCredentials,
    _connector_factory_impl,
    _user_token_client_impl,
)

from bot.adapter import serialize_activity
from bot.app import create_app
from dialogs.common import card_message
from tests.bot.conftest import make_settings, secured_bot
from tests.support.connector import FakeConnector
from tests.support.openid import OpenIdServer
from tests.support.teams import TeamsClient, card_text

APP_ID = "c0ffee00-0000-4000-8000-0000000000a7"


class _CountingCredentials(AppCredentials):
    """A new token on every request, as a cache that renews would give over time."""

    def __init__(self, counter: itertools.count[int]) -> None:
        super().__init__(app_id=APP_ID)
        self._counter = counter

    def get_access_token(self, force_refresh: bool = False) -> str:
        return f"token-{next(self._counter)}"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The msrest clients botbuilder constructs: base URLs of connector clients, and one
    entry per user-token client."""
    made: dict[str, list[str]] = {"connector": [], "user_token": []}
    connector_client = _connector_factory_impl.ConnectorClient
    token_client = _user_token_client_impl.TokenApiClient

    def count_connector(credentials: Any, base_url: str, **kwargs: Any) -> Any:
        made["connector"].append(base_url)
        return connector_client(credentials, base_url=base_url, **kwargs)

    def count_token_client(*args: Any, **kwargs: Any) -> Any:
        made["user_token"].append("built")
        return token_client(*args, **kwargs)

    monkeypatch.setattr(_connector_factory_impl, "ConnectorClient", count_connector)
    monkeypatch.setattr(_user_token_client_impl, "TokenApiClient", count_token_client)
    return made


@pytest.fixture
async def secured(
    database_url: str, openid: OpenIdServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> AsyncIterator[TeamsClient]:
    async with secured_bot(
        database_url,
        openid,
        connector,
        http,
        app_id=APP_ID,
        credentials=functools.partial(_CountingCredentials, itertools.count(1)),
    ) as client:
        yield client


async def _say(client: TeamsClient, openid: OpenIdServer, text: str) -> tuple[str, list[Any]]:
    token = openid.token(audience=APP_ID, service_url=client.connector.url)
    body = client.activity(text=text)
    reply = await client.post(body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 201
    answers = [s for s in client.connector.sent if s.activity.get("replyToId") == body["id"]]
    assert answers, "the bot did not reply"
    return body["id"], answers


async def test_replies_answer_their_activity_with_a_fresh_token(
    secured: TeamsClient, openid: OpenIdServer
) -> None:
    first_id, first = await _say(secured, openid, "status alloy")
    second_id, second = await _say(secured, openid, "projects")
    for activity_id, answers in ((first_id, first), (second_id, second)):
        for sent in answers:
            # POST /v3/conversations/{conversation}/activities/{replyToId}, as msrest posts.
            assert sent.method == "POST"
            assert sent.conversation_id == secured.conversation_id
            assert sent.reply_to_id == activity_id
            assert sent.activity["conversation"]["id"] == secured.conversation_id
            assert sent.activity["from"]["id"], "the reply is addressed from the bot"
    assert "Currently in delivery" in card_text(first[0].activity["attachments"][0]["content"])
    tokens = [sent.authorization for sent in first + second]
    assert all(token and token.startswith("Bearer token-") for token in tokens)
    # The connector client is reused across turns, but asks for the token on every request.
    assert len(set(tokens)) == len(tokens)


async def test_msrest_clients_are_built_once_per_service_url(
    built: dict[str, list[str]],
    database_url: str,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
) -> None:
    server = TestServer(create_app(make_settings(database_url)))
    await server.start_server()
    other = FakeConnector()
    await other.start()
    try:
        bot_url = str(server.make_url("")).rstrip("/")
        for _ in range(2):  # two conversations, two turns each, one service URL
            client = TeamsClient(bot_url=bot_url, connector=connector, http=http)
            assert (await client.say("status alloy")).sent
            assert (await client.say("projects")).sent
        assert built["connector"] == [connector.url]
        assert len(built["user_token"]) == 1
        # Another service URL (another region) has a client of its own, also kept.
        elsewhere = TeamsClient(bot_url=bot_url, connector=other, http=http)
        assert (await elsewhere.say("status alloy")).sent
        assert (await elsewhere.say("projects")).sent
        assert built["connector"] == [connector.url, other.url]
        assert len(built["user_token"]) == 1
    finally:
        await other.close()
        await server.close()


def test_replies_are_serialised_as_msrest_would_with_plain_card_json_put_in_as_it_is() -> None:
    card = card_message("help", is_admin=True, in_channel=False)
    hero = CardFactory.hero_card(HeroCard(title="A hero card", text="msrest serialises it"))
    reply = MessageFactory.carousel([card.attachments[0], hero, Attachment(content_type="x")])
    reply.text = "Some text"
    before = [attachment.content for attachment in reply.attachments]

    assert serialize_activity(reply) == reply.serialize()
    assert [attachment.content for attachment in reply.attachments] == before
