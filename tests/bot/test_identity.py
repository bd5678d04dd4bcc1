"""The two kinds of Azure Bot that can be registered today, end to end: a SingleTenant bot
(client secret, tokens from the council's tenant) and a UserAssignedMSI bot (managed identity,
no secret). Each serves a Teams turn with a signed token and sends its replies, and the
outbox's proactive messages, with a token MSAL fetched from a local Entra ID."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import identity as identity_module
from bot.app import IDENTITY, OUTBOX, SETTINGS, create_app
from bot.config import Settings
from bot.identity import Identity, IdentityError
from storage import outbox
from storage.db import transaction
from storage.models import utcnow
from tests.bot.conftest import make_settings
from tests.support.connector import FakeConnector
from tests.support.entra import FakeEntra
from tests.support.openid import OpenIdServer
from tests.support.teams import TeamsClient

APP_ID = "5e1f0c2a-0000-4000-8000-0000000000b7"
TENANT = "72f988bf-0000-4000-8000-00000000cafe"
SECRET = "suite-client-secret"
CONNECTOR_SCOPE = "https://api.botframework.com"


@pytest.fixture
def entra() -> Iterator[FakeEntra]:
    server = FakeEntra(client_id=APP_ID, secret=SECRET).start()
    yield server
    server.stop()


def _settings(database_url: str, kind: str, openid: OpenIdServer) -> Settings:
    return make_settings(
        database_url,
        microsoft_app_id=APP_ID,
        microsoft_app_type=kind,
        microsoft_app_password=SECRET if kind == "SingleTenant" else "",
        microsoft_app_tenant_id=TENANT,
        openid_metadata_url=openid.url + "/openid",
    )


@dataclass
class SecuredBot:
    client: TeamsClient
    app: web.Application
    openid: OpenIdServer

    async def say(self, text: str) -> list[str | None]:
        """Say `text` with a valid token; the Authorization headers of the replies."""
        token = self.openid.token(audience=APP_ID, service_url=self.client.connector.url)
        reply = await self.client.post(
            self.client.activity(text=text), headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status == 201
        assert reply.sent, "the bot did not reply"
        connector = self.client.connector
        return [s.authorization for s in connector.sent if s.activity in reply.sent]


@pytest.fixture(params=["SingleTenant", "UserAssignedMSI"])
async def secured(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    openid: OpenIdServer,
    entra: FakeEntra,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
) -> AsyncIterator[SecuredBot]:
    kind = request.param
    if kind == "UserAssignedMSI":
        # What App Service and Container Apps give a process with a managed identity.
        for name, value in entra.msi_env().items():
            monkeypatch.setenv(name, value)
    app = create_app(_settings(database_url, kind, openid), msal_http_client=entra.http_client())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = TeamsClient(
        bot_url=str(server.make_url("")).rstrip("/"), connector=connector, http=http
    )
    yield SecuredBot(client=client, app=app, openid=openid)
    await server.close()


async def test_replies_carry_a_token_from_the_bots_own_identity(
    secured: SecuredBot, entra: FakeEntra
) -> None:
    authorizations = await secured.say("status alloy")
    kind = "secret" if secured.app[SETTINGS].microsoft_app_type == "SingleTenant" else "msi"
    asked = entra.token_requests(kind)
    assert asked, "no token was fetched from Entra ID"
    assert {r.client_id for r in asked} == {APP_ID}
    if kind == "secret":
        # Single tenant: signed in at the council's tenant, for the Bot Connector's scope.
        assert {(r.tenant, r.scope) for r in asked} == {(TENANT, CONNECTOR_SCOPE + "/.default")}
    else:
        assert {r.scope for r in asked} == {CONNECTOR_SCOPE}
    assert authorizations == [f"Bearer {entra.issued[asked[-1].scope]}"] * len(authorizations)


async def test_the_token_is_fetched_before_serving_and_cached_across_turns(
    secured: SecuredBot, entra: FakeEntra
) -> None:
    assert len(entra.token_requests()) == 1  # at start-up, so no turn waits for Entra ID
    await secured.say("status alloy")
    await secured.say("projects")
    assert len(entra.token_requests()) == 1


async def test_proactive_messages_use_the_same_identity(
    secured: SecuredBot, entra: FakeEntra, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await secured.say("help")  # the bot now knows the conversation
    conversation_id = secured.client.conversation_id
    async with transaction(sessions) as session:
        await outbox.enqueue(
            session,
            dedupe_key=f"test:{uuid.uuid4().hex}",
            conversation_id=conversation_id,
            payload={"type": "message", "text": "A message the bot sends on its own"},
            now=utcnow() - timedelta(days=3000),
        )
    secured.app[OUTBOX].kick()
    connector = secured.client.connector
    await connector.wait_for(conversation_id, count=2)
    proactive = [
        s
        for s in connector.sent
        if s.conversation_id == conversation_id
        and s.activity.get("text") == "A message the bot sends on its own"
    ]
    assert len(proactive) == 1
    token = next(iter(entra.issued.values()))
    assert proactive[0].authorization == f"Bearer {token}"
    # The app's one identity served the turn and the outbox: one token in all.
    assert len(entra.token_requests()) == 1


async def test_a_refused_identity_fails_the_reply_not_the_request(
    secured: SecuredBot, entra: FakeEntra
) -> None:
    entra.refuse = "unauthorized_client"
    secured.app[IDENTITY].forget()  # as if the token had run out
    token = secured.openid.token(audience=APP_ID, service_url=secured.client.connector.url)
    reply = await secured.client.post(
        secured.client.activity(text="status alloy"), headers={"Authorization": f"Bearer {token}"}
    )
    # Teams is answered (a 5xx would make it redeliver); the reply could not be sent.
    assert reply.status == 201
    assert reply.sent == []


def test_an_msal_error_is_an_identity_error_with_its_code(
    database_url: str, openid: OpenIdServer, entra: FakeEntra
) -> None:
    wrong = _settings(database_url, "SingleTenant", openid).model_copy(
        update={"microsoft_app_password": "not-the-secret"}
    )
    with pytest.raises(IdentityError) as refused:
        Identity(wrong, http_client=entra.http_client()).token(CONNECTOR_SCOPE)
    assert refused.value.code == "invalid_client"
    assert "not-the-secret" not in str(refused.value)


def test_tokens_close_to_expiry_are_renewed(
    database_url: str, openid: OpenIdServer, entra: FakeEntra
) -> None:
    identity = Identity(
        _settings(database_url, "SingleTenant", openid), http_client=entra.http_client()
    )
    first = identity.token(CONNECTOR_SCOPE)
    assert identity.token(CONNECTOR_SCOPE) == first  # cached
    identity.forget()
    entra.expires_in = 120  # under MSAL's five minutes: never handed out twice
    renewed = identity.token(CONNECTOR_SCOPE)
    assert renewed != first
    assert identity.token(CONNECTOR_SCOPE) != renewed


def test_a_token_is_renewed_ahead_of_expiry_and_only_then(
    database_url: str, openid: OpenIdServer, entra: FakeEntra
) -> None:
    identity = Identity(
        _settings(database_url, "SingleTenant", openid), http_client=entra.http_client()
    )
    entra.expires_in = 3600
    assert identity.renew_if_due(CONNECTOR_SCOPE)  # nothing cached yet: fetched
    first = identity.token(CONNECTOR_SCOPE)
    assert not identity.renew_if_due(CONNECTOR_SCOPE)  # an hour left: kept
    assert identity.token(CONNECTOR_SCOPE) == first

    identity.forget()
    entra.expires_in = 400  # MSAL would still hand this out for 100 s; we renew it now
    identity.token(CONNECTOR_SCOPE)
    assert identity.renew_if_due(CONNECTOR_SCOPE)
    assert len(entra.token_requests()) == 3


def test_forgetting_one_scope_keeps_the_others(
    database_url: str, openid: OpenIdServer, entra: FakeEntra
) -> None:
    identity = Identity(
        _settings(database_url, "SingleTenant", openid), http_client=entra.http_client()
    )
    graph = "https://graph.microsoft.com/.default"
    connector_token, graph_token = identity.token(CONNECTOR_SCOPE), identity.token(graph)
    identity.forget(graph)
    assert identity.token(CONNECTOR_SCOPE) == connector_token
    assert identity.token(graph) != graph_token


def test_a_hung_identity_endpoint_is_an_error_after_the_timeout_not_a_hang(
    database_url: str, openid: OpenIdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}/")
        monkeypatch.setenv("IDENTITY_HEADER", "x")
        monkeypatch.setattr(identity_module, "HTTP_TIMEOUT_SECONDS", 0.5)
        identity = Identity(_settings(database_url, "UserAssignedMSI", openid))
        started = time.monotonic()
        with pytest.raises(IdentityError) as unreachable:
            identity.token(CONNECTOR_SCOPE)
        assert unreachable.value.code == "unreachable"
        assert time.monotonic() - started < 5
    finally:
        silent.close()
