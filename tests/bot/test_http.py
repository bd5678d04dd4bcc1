"""The HTTP surface: bad requests get a clear 4xx, health and readiness answer."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.bot.conftest import BotServer
from tests.support.teams import TeamsClient, card_text


async def test_healthz_and_readyz(bot_server: BotServer, http: aiohttp.ClientSession) -> None:
    async with http.get(bot_server.url + "/healthz") as response:
        assert response.status == 200
    async with http.get(bot_server.url + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["database"] == "ok"


async def test_non_json_body_is_400(bot_server: BotServer, http: aiohttp.ClientSession) -> None:
    async with http.post(
        bot_server.url + "/api/messages",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert "JSON" in (await response.json())["detail"]


@pytest.mark.parametrize(
    ("charset", "body"),
    [("utf-8", b'{"type": "\xff"}'), ("idna", b"xn--{}")],  # found in review: idna was a 500
)
async def test_a_body_its_charset_cannot_decode_is_400(
    bot_server: BotServer, http: aiohttp.ClientSession, charset: str, body: bytes
) -> None:
    async with http.post(
        bot_server.url + "/api/messages",
        data=body,
        headers={"Content-Type": f"application/json; charset={charset}"},
    ) as response:
        assert response.status == 400


async def test_missing_content_type_is_415(
    bot_server: BotServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(bot_server.url + "/api/messages", data=b'{"type": "message"}') as response:
        assert response.status == 415


async def test_activity_without_type_is_400(client: TeamsClient) -> None:
    body = client.activity(text="help")
    del body["type"]
    reply = await client.post(body)
    assert reply.status == 400
    assert "type" in reply.body["detail"]
    assert reply.sent == []


async def test_json_that_is_not_an_object_is_400(
    bot_server: BotServer, http: aiohttp.ClientSession
) -> None:
    for body in (b"[1, 2]", b'"message"', b"null", b"7", b'{"type": 3}', b'{"type": ""}'):
        async with http.post(
            bot_server.url + "/api/messages",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 400, body


async def test_wrongly_typed_fields_are_400_not_500(client: TeamsClient) -> None:
    reply = await client.post(client.activity(text="help", conversation="not an object"))
    assert reply.status == 400
    reply = await client.post(client.activity(text="help", serviceUrl=None))
    assert reply.status == 400


async def test_an_activity_without_a_recipient_or_channel_is_400_and_nothing_is_sent(
    client: TeamsClient,
) -> None:
    # Found by the fuzz (tests/fuzz): botbuilder read the missing field and failed the turn.
    for recipient in (None, {"name": "Our Cambridge"}):
        reply = await client.post(client.activity(text="help", recipient=recipient))
        assert reply.status == 400
        assert reply.sent == []
    for channel_id in (None, ""):
        reply = await client.post(client.activity(text="help", channelId=channel_id))
        assert reply.status == 400
        assert reply.sent == []


async def test_a_conversation_id_with_control_characters_is_400(client: TeamsClient) -> None:
    # Found by the fuzz: the id goes into a header of the reply, where aiohttp refuses it.
    for conversation_id in ("a:chat\r\nX-Injected: 1", "19:x\t@thread.tacv2", "a:\x13"):
        activity = client.activity(text="help")
        activity["conversation"] = activity["conversation"] | {"id": conversation_id}
        reply = await client.post(activity)
        assert reply.status == 400
        assert reply.sent == []


async def test_unknown_invoke_is_501(client: TeamsClient) -> None:
    reply = await client.invoke("someExtension/unknownThing", {"x": 1})
    assert reply.status == 501
    assert reply.sent == []


@pytest.mark.parametrize(
    "value",
    [
        "orchard",
        ["searchText"],
        42,
        {"parameters": "not a list"},
        {"queryOptions": "fifty"},
        None,  # found by the fuzz: the SDK handed the handler no query at all
    ],
)
async def test_malformed_search_invoke_is_4xx_not_5xx(client: TeamsClient, value: Any) -> None:
    reply = await client.invoke("composeExtension/query", value)
    assert reply.status == 400, reply
    assert reply.sent == []


async def test_search_with_a_non_text_query_is_an_empty_search(client: TeamsClient) -> None:
    value = {"parameters": [{"name": "searchText", "value": {"nested": ["junk"]}}]}
    reply = await client.invoke("composeExtension/query", value)
    assert reply.status == 200
    assert reply.body["composeExtension"]["type"] == "result"


async def test_repeated_delivery_is_processed_once(client: TeamsClient) -> None:
    activity = client.activity(text="help")
    first = await client.post(activity)
    second = await client.post(activity)
    assert first.status == second.status == 201
    assert len(first.sent) == 1
    assert second.sent == []


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"action": "x"},
        {"action": {"type": "Action.Submit", "verb": "idea_status", "data": {}}},
        {"action": {"type": "Action.Execute", "verb": "idea_status", "data": None}},
    ],
)
async def test_malformed_universal_actions_are_4xx_or_refused_never_5xx(
    client: TeamsClient, value: Any
) -> None:
    reply = await client.invoke("adaptiveCard/action", value)
    assert reply.status in (200, 400), reply
    assert reply.sent == []


async def test_nul_characters_are_dropped_not_fatal(officer: TeamsClient) -> None:
    """PostgreSQL text cannot hold NUL: an update typed with one is stored without it."""
    form = (await officer.say("post update tascomi")).card
    reply = await officer.press(form, "Post update", text="Go-live\u0000 agreed.", rag="green")
    assert reply.status == 201
    seen = card_text(reply.card)
    assert "Update posted" in seen and "Go-live agreed." in seen
