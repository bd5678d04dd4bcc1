"""A database that goes away: a friendly reply, /readyz 503, and recovery without a restart."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from bot.replies import UNAVAILABLE_TEXT
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.tcp_proxy import TcpProxy
from tests.support.teams import TeamsClient, card_text


async def test_outage_is_explained_and_the_bot_recovers(
    database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("an outage of a networked database; SQLite is a local file")
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.open()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = await BotServer(make_settings(proxied)).start()
    client = TeamsClient(bot_url=server.url, connector=connector, http=http)
    try:
        assert "Currently in delivery" in card_text((await client.say("status alloy")).card)

        await proxy.cut()
        reply = await client.say("status alloy")
        assert reply.status == 201
        assert reply.texts == [UNAVAILABLE_TEXT]
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 503

        await proxy.open()
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 200
        assert "Currently in delivery" in card_text((await client.say("status alloy")).card)
    finally:
        await server.stop()
        await proxy.cut()
