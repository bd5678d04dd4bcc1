"""A database that goes away: a friendly reply, /readyz 503, and recovery without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from bot.replies import UNAVAILABLE_TEXT
from storage import migrate
from storage.db import create_engine, session_factory
from storage.seed import seed_programme
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
        search = await client.invoke(
            "composeExtension/query", {"parameters": [{"name": "searchText", "value": "orch"}]}
        )
        assert search.status == 503

        await proxy.open()
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 200
        assert "Currently in delivery" in card_text((await client.say("status alloy")).card)
    finally:
        await server.stop()
        await proxy.cut()


async def test_a_missing_sqlite_file_is_explained_and_recovered_from(
    tmp_path: Path, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    folder = tmp_path / "not-yet"
    url = f"sqlite+aiosqlite:///{folder / 'ourcambridge.db'}"
    server = await BotServer(make_settings(url)).start()
    client = TeamsClient(bot_url=server.url, connector=connector, http=http)
    try:
        reply = await client.say("status alloy")
        assert reply.texts == [UNAVAILABLE_TEXT]
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 503

        folder.mkdir()
        await asyncio.to_thread(migrate.upgrade, url)
        engine = create_engine(url)
        await seed_programme(session_factory(engine))
        await engine.dispose()
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 200
        assert "Currently in delivery" in card_text((await client.say("status alloy")).card)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "change", [{"database": "ourcambridge_no_such_db"}, {"username": "no_such_role"}]
)
async def test_a_missing_database_or_refused_login_is_explained(
    database_url: str,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    change: dict[str, str],
) -> None:
    """Misconfiguration or a database still being created: the same friendly reply and a
    503 from /readyz, not "something went wrong" and a 500."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL server that refuses the database or the login")
    broken = make_url(database_url).set(**change).render_as_string(hide_password=False)
    server = await BotServer(make_settings(broken)).start()
    client = TeamsClient(bot_url=server.url, connector=connector, http=http)
    try:
        reply = await client.say("status alloy")
        assert reply.status == 201
        assert reply.texts == [UNAVAILABLE_TEXT]
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 503
    finally:
        await server.stop()
