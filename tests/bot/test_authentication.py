"""With MicrosoftAppId set, only requests bearing a valid Bot Framework token are served."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest

from tests.bot.conftest import secured_bot
from tests.support.connector import FakeConnector
from tests.support.openid import OpenIdServer, new_key
from tests.support.teams import TeamsClient, card_text

APP_ID = "a1b2c3d4-0000-4000-8000-0000000000aa"


@pytest.fixture
async def secured(
    database_url: str, openid: OpenIdServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> AsyncIterator[TeamsClient]:
    async with secured_bot(database_url, openid, connector, http, app_id=APP_ID) as client:
        yield client


async def _post(client: TeamsClient, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    reply = await client.post(client.activity(text="status alloy"), headers=headers)
    assert reply.sent == [] or reply.status == 201
    return reply.status


async def test_a_valid_token_is_served(secured: TeamsClient, openid: OpenIdServer) -> None:
    token = openid.token(audience=APP_ID, service_url=secured.connector.url)
    reply = await secured.post(
        secured.activity(text="status alloy"), headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status == 201
    assert "Currently in delivery" in card_text(reply.card)


async def test_bad_tokens_are_refused_with_401(secured: TeamsClient, openid: OpenIdServer) -> None:
    service_url = secured.connector.url
    unsigned = jwt.encode(
        {"iss": "https://api.botframework.com", "aud": APP_ID, "serviceurl": service_url},
        key=None,
        algorithm="none",
    )
    bad = {
        "missing": None,
        "not a jwt": "garbage",
        "expired": openid.token(audience=APP_ID, service_url=service_url, expires_in=-3600),
        "wrong audience": openid.token(audience="someone-else", service_url=service_url),
        "wrong issuer": openid.token(
            audience=APP_ID, service_url=service_url, issuer="https://evil.example"
        ),
        "wrong serviceurl": openid.token(audience=APP_ID, service_url="https://elsewhere/"),
        "unknown key": openid.token(
            audience=APP_ID, service_url=service_url, key=new_key(), key_id="stranger"
        ),
        "signed by another key": openid.token(
            audience=APP_ID, service_url=service_url, key=new_key()
        ),
        "unsigned": unsigned,
    }
    statuses = {name: await _post(secured, token) for name, token in bad.items()}
    assert statuses == dict.fromkeys(bad, 401)


async def test_without_allowed_tenant_ids_a_secured_bot_serves_its_own_tenant_only(
    secured: TeamsClient, openid: OpenIdServer
) -> None:
    # ALLOWED_TENANT_IDS is empty here: a single-tenant bot then allows MicrosoftAppTenantId.
    token = openid.token(audience=APP_ID, service_url=secured.connector.url)
    headers = {"Authorization": f"Bearer {token}"}
    foreign = secured.activity(text="status alloy")
    foreign["channelData"]["tenant"]["id"] = "0000dead-0000-4000-8000-000000000000"
    assert (await secured.post(foreign, headers=headers)).sent == []
    ours = await secured.post(secured.activity(text="status alloy"), headers=headers)
    assert "Currently in delivery" in card_text(ours.card)
