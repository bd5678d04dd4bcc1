"""The bot served over real HTTP on loopback, with a fake connector as its serviceUrl."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from botframework.connector.auth import (
    AppCredentials,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
)

from bot.app import create_app
from bot.config import Settings
from tests.support.connector import FakeConnector
from tests.support.openid import OpenIdServer, new_key
from tests.support.teams import ADMIN_AAD_ID, OFFICER, TENANT_ID, TeamsClient


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "microsoft_app_id": "",
        "admin_aad_ids": frozenset({ADMIN_AAD_ID}),
        "allowed_tenant_ids": frozenset(),
        # Tests run the reminder job and the schedules themselves, at the time they choose.
        "reminders_at": "off",
        "scheduler_enabled": False,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


class BotServer:
    """One bot process: start it, stop it, start another on the same database."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> BotServer:
        self.server = TestServer(create_app(self.settings), host="127.0.0.1")
        await self.server.start_server()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None


@pytest.fixture(scope="session")
async def connector() -> AsyncIterator[FakeConnector]:
    fake = FakeConnector()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
async def bot_server(database_url: str) -> AsyncIterator[BotServer]:
    server = await BotServer(make_settings(database_url)).start()
    yield server
    await server.stop()


@pytest.fixture
def client(
    bot_server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> TeamsClient:
    """A member of staff in a new 1:1 chat with the bot."""
    return TeamsClient(bot_url=bot_server.url, connector=connector, http=http)


@pytest.fixture
def officer(
    bot_server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> TeamsClient:
    """A programme officer (listed in ADMIN_AAD_IDS) in a new 1:1 chat with the bot."""
    return TeamsClient(bot_url=bot_server.url, connector=connector, http=http, user=OFFICER)


@pytest.fixture(scope="session")
def openid() -> Iterator[OpenIdServer]:
    """The Bot Framework's token signing keys, served locally (BOT_OPENID_METADATA_URL)."""
    server = OpenIdServer(new_key()).start()
    yield server
    server.stop()


class _TestCredentials(ServiceClientCredentialsFactory):
    """Outgoing tokens from `credentials()`: tests cannot reach Entra ID."""

    def __init__(self, app_id: str, credentials: Callable[[], AppCredentials]) -> None:
        self._app_id = app_id
        self._credentials = credentials

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> AppCredentials:
        return self._credentials()


@contextlib.asynccontextmanager
async def secured_bot(
    database_url: str,
    openid: OpenIdServer,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    *,
    app_id: str,
    credentials: Callable[[], AppCredentials] = lambda: MicrosoftAppCredentials("", ""),
) -> AsyncIterator[TeamsClient]:
    """A bot with authentication on (a single-tenant app of TENANT_ID whose incoming tokens
    `openid` signs), its outgoing tokens from `credentials` (by default, none)."""
    settings = make_settings(
        database_url,
        microsoft_app_id=app_id,
        microsoft_app_password="not-used-by-these-tests",
        microsoft_app_tenant_id=TENANT_ID,
        openid_metadata_url=openid.url + "/openid",
    )
    factory = _TestCredentials(app_id, credentials)
    server = TestServer(create_app(settings, credentials_factory=factory))
    await server.start_server()
    try:
        yield TeamsClient(
            bot_url=str(server.make_url("")).rstrip("/"), connector=connector, http=http
        )
    finally:
        await server.close()
