"""The Bot Framework adapter, without the per-turn waste of botbuilder's defaults.

Measured on this kind of machine (PLATFORM-NOTES, last section), a stock CloudAdapter turn
spends about 15 ms of CPU building two msrest clients it throws away (each one's retry policy
builds a 999 x 501 list), and sends every reply through blocking `requests` in the default
executor (six threads here: about 27 replies/s whatever the CPU does when the connector takes
200 ms). Here:
- the connector and user-token clients are built once per (app id, service URL, audience) and
  reused; their credentials still ask the bot's Identity for the token on every request;
- turn replies and card updates go out over one pooled aiohttp session, with the same URL,
  headers, body, answer handling and retries as msrest's ConnectorClient.
Everything else (TeamsInfo, proactive turns, create_conversation) is botbuilder's own code.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import requests
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse
from botframework.connector import Channels, ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    AuthenticationConstants,
    ClaimsIdentity,
    ConnectorFactory,
    UserTokenClient,
)
from botframework.connector.auth._connector_factory_impl import USER_AGENT
from botframework.connector.auth.jwt_token_extractor import JwtTokenExtractor, _OpenIdMetadata

from bot.connector import answer_json, error_code, retry_after_seconds

logger = logging.getLogger(__name__)

# Service URLs are a handful per cloud region; the bound only matters if authentication is
# off and anyone may name one.
MAX_CACHED_CLIENTS = 64
# How long one reply (or card update) to the Bot Connector may take, connecting included.
# Not msrest's 100 s to connect and 100 s to read: Teams stops waiting for the bot's answer
# to an activity after 15 s, and a connector that hangs must not hold the turn (and the HTTP
# request Teams made) open longer than that.
REPLY_TIMEOUT_SECONDS = 10.0
# msrest (urllib3 2.x) retries a request that never connected 3 times, waiting 0, 1.6 and
# 3.2 s; a PUT also on 408 and 5xx but 501/505 (honouring a 503's Retry-After). A POST is not
# retried once sent: a reply is not posted twice.
RETRY_WAITS = (0.0, 1.6, 3.2)
# How long the OpenID metadata and its signing keys may take to download.
OPENID_TIMEOUT_SECONDS = 10.0


class ReplyFailed(Exception):
    """The Bot Connector refused a reply or update (msrest raises ErrorResponseException),
    or gave no answer: `status` None, and `code` says what happened instead."""

    def __init__(self, status: int | None, code: str = "") -> None:
        super().__init__(
            f"Operation returned an invalid status code {status} {code}".strip()
            if status is not None
            else f"The Bot Connector gave no answer: {code}"
        )
        self.status = status
        self.code = code


def _app_id(claims_identity: ClaimsIdentity) -> str | None:
    # As botbuilder's _BuiltinBotFrameworkAuthentication.get_app_id: the audience claim for
    # the channel's requests, the appid claim for the emulator's.
    value = claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
    if value is None:
        value = claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
    return value


class _ClientCache:
    """Clients by key, most recently used last, at most MAX_CACHED_CLIENTS."""

    def __init__(self) -> None:
        self._clients: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.built = 0  # how many clients were constructed (tests count them)

    def get(self, key: tuple[Any, ...]) -> Any | None:
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
        return client

    def put(self, key: tuple[Any, ...], client: Any) -> Any:
        self.built += 1
        self._clients[key] = client
        while len(self._clients) > MAX_CACHED_CLIENTS:
            self._clients.popitem(last=False)
        return client


class _CachingConnectorFactory(ConnectorFactory):
    """botbuilder's connector factory, remembering the clients it built. A ConnectorClient is
    safe to share between turns: its credentials fetch the token per request."""

    def __init__(self, inner: ConnectorFactory, app_id: str | None, cache: _ClientCache) -> None:
        self._inner = inner
        self._app_id = app_id
        self._cache = cache

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        key = ("connector", self._app_id, service_url, audience)
        client = self._cache.get(key)
        if client is None:
            # Two turns may both miss and build one; the second simply replaces the first.
            client = self._cache.put(key, await self._inner.create(service_url, audience))
        return client


class CachingBotFrameworkAuthentication(ConfigurationBotFrameworkAuthentication):
    """The configured authentication, handing out cached clients instead of new ones."""

    def __init__(self, configuration: Any, **kwargs: Any) -> None:
        super().__init__(configuration, **kwargs)
        self.clients = _ClientCache()
        fetch_openid_metadata_off_the_loop(
            getattr(configuration, "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL", None)
            or AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL,
            getattr(configuration, "TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL", None)
            or AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL,
        )

    async def authenticate_request(
        self, activity: Activity, auth_header: str
    ) -> AuthenticateRequestResult:
        result = await super().authenticate_request(activity, auth_header)
        if result.connector_factory is not None:
            result.connector_factory = _CachingConnectorFactory(
                result.connector_factory, _app_id(result.claims_identity), self.clients
            )
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return _CachingConnectorFactory(
            super().create_connector_factory(claims_identity),
            _app_id(claims_identity),
            self.clients,
        )

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        # The bot never signs users in, but every turn gets one (another msrest client).
        key = ("user-token", _app_id(claims_identity))
        client = self.clients.get(key)
        if client is None:
            client = self.clients.put(key, await super().create_user_token_client(claims_identity))
        return client


class FastCloudAdapter(CloudAdapter):
    """CloudAdapter whose turn replies and updates go over a pooled aiohttp session rather
    than msrest's `requests` in the six-thread default executor."""

    def __init__(
        self,
        authentication: CachingBotFrameworkAuthentication,
        *,
        reply_timeout: float = REPLY_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(authentication)
        self._http: aiohttp.ClientSession | None = None
        self.reply_timeout = reply_timeout

    async def send_activities(
        self, context: TurnContext, activities: list[Activity]
    ) -> list[ResourceResponse]:
        # CloudAdapterBase.send_activities, with the connector call replaced.
        if not context:
            raise TypeError("Expected TurnContext but got None instead")
        if activities is None:
            raise TypeError("Expected Activities list but got None instead")
        if len(activities) == 0:
            raise TypeError("Expecting one or more activities, but the list was empty.")
        responses = []
        for activity in activities:
            activity.id = None
            response: ResourceResponse | None = ResourceResponse()
            if activity.type == "delay":
                await asyncio.sleep(int((activity.value or 1000) / 1000))
            elif activity.type == ActivityTypes.invoke_response:
                context.turn_state[self._INVOKE_RESPONSE_KEY] = activity
            elif activity.type == ActivityTypes.trace and activity.channel_id != Channels.emulator:
                pass
            else:
                client = self._connector_client(context)
                path = f"v3/conversations/{quote(activity.conversation.id, safe='')}/activities"
                if activity.reply_to_id:
                    path += "/" + quote(activity.reply_to_id, safe="")
                response = await self._request("POST", client, path, activity)
            responses.append(response or ResourceResponse(id=activity.id or ""))
        return responses

    async def update_activity(
        self, context: TurnContext, activity: Activity
    ) -> ResourceResponse | None:
        if not context:
            raise TypeError("Expected TurnContext but got None instead")
        if activity is None:
            raise TypeError("Expected Activity but got None instead")
        client = self._connector_client(context)
        path = (
            f"v3/conversations/{quote(activity.conversation.id, safe='')}"
            f"/activities/{quote(activity.id, safe='')}"
        )
        response = await self._request("PUT", client, path, activity)
        return ResourceResponse(id=response.id) if response and response.id else None

    def _connector_client(self, context: TurnContext) -> ConnectorClient:
        client = context.turn_state.get(self.BOT_CONNECTOR_CLIENT_KEY)
        if not client:
            raise RuntimeError("Unable to extract ConnectorClient from turn context.")
        return client

    async def _request(
        self, method: str, client: ConnectorClient, path: str, activity: Activity
    ) -> ResourceResponse | None:
        """The ConnectorClient's request, made with aiohttp: its base URL and credentials,
        the headers and body msrest would send; raises ReplyFailed for a refusal."""
        url = client.config.base_url.rstrip("/") + "/" + path
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json; charset=utf-8",
            "x-ms-conversation-id": activity.conversation.id,
            "User-Agent": USER_AGENT,
        }
        token = await _token(client.config.credentials)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = serialize_activity(activity)
        for attempt, wait in enumerate((*RETRY_WAITS, None)):
            retry_after = None
            try:
                async with self._session().request(
                    method, url, json=body, headers=headers
                ) as answer:
                    if answer.status in (200, 201, 202):
                        data = await answer_json(answer)
                        return ResourceResponse.deserialize(data) if data else None
                    if wait is None or method != "PUT" or not _retried_status(answer.status):
                        raise ReplyFailed(answer.status, error_code(await answer_json(answer)))
                    if answer.status == 503:
                        retry_after = answer.headers.get("Retry-After")
            except aiohttp.ClientConnectorError as error:  # never connected: nothing was sent
                if wait is None:
                    raise ReplyFailed(
                        None, f"could not connect ({type(error).__name__})"
                    ) from error
            except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors too
                # Not retried: a request that timed out may have been posted. Raised as
                # ReplyFailed, not as a TimeoutError, which would read as the database's.
                raise ReplyFailed(None, f"no answer within {self.reply_timeout:g} s") from error
            except aiohttp.ClientError as error:  # the connection dropped after sending
                raise ReplyFailed(None, type(error).__name__) from error
            logger.info("Retrying a %s to the Bot Connector (attempt %d)", method, attempt + 2)
            delay = retry_after_seconds(retry_after)
            await asyncio.sleep(wait if delay is None else delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop: one pool of kept-alive connections
        # for every reply instead of a connection per turn.
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                timeout=aiohttp.ClientTimeout(total=self.reply_timeout),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def _token(credentials: AppCredentials | None) -> str | None:
    """The bearer token msrest's signed_session would add (none when the bot has no app id).
    In a thread: a token due for renewal makes MSAL call Entra ID with a blocking client."""
    if credentials is None or not credentials._should_set_token(None):
        return None
    return await asyncio.to_thread(credentials.get_access_token)


def serialize_activity(activity: Activity) -> dict[str, Any]:
    """activity.serialize(), but an attachment whose content is plain JSON (an Adaptive Card
    as the cards package renders it) is put in as it is: msrest would walk every node of it,
    about a millisecond a card, to produce the same thing."""
    attachments = activity.attachments or []
    contents = [attachment.content for attachment in attachments]
    plain = [content is not None and _is_plain_json(content) for content in contents]
    try:
        for attachment, is_plain in zip(attachments, plain, strict=True):
            if is_plain:
                attachment.content = None
        body: dict[str, Any] = activity.serialize()
    finally:
        for attachment, content in zip(attachments, contents, strict=True):
            attachment.content = content
    for serialized, content, is_plain in zip(
        body.get("attachments", []), contents, plain, strict=True
    ):
        if is_plain:
            serialized["content"] = content
    return body


def _is_plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


def _retried_status(status: int) -> bool:
    return status == 408 or (status >= 500 and status not in (501, 505))


class _OffLoopOpenIdMetadata(_OpenIdMetadata):
    """botbuilder's cache of the channel's token-signing keys (refreshed when a day old, or
    at most hourly when a token names an unknown key), fetched in a thread with a timeout:
    the SDK downloads them with blocking `requests`, no timeout, on the event loop, and
    stalls every turn in the process while it does."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._refreshing = asyncio.Lock()

    async def _refresh(self) -> None:
        before = self.last_updated
        async with self._refreshing:  # one download at a time; the others use its keys
            if self.last_updated == before:
                await asyncio.to_thread(self._download)

    def _download(self) -> None:
        response = requests.get(self.url, timeout=OPENID_TIMEOUT_SECONDS)
        response.raise_for_status()
        keys = requests.get(response.json()["jwks_uri"], timeout=OPENID_TIMEOUT_SECONDS)
        keys.raise_for_status()
        self.keys = keys.json()["keys"]
        self.last_updated = datetime.now()

    def _find(self, key_id: str) -> Any:
        # The SDK's raises IndexError for an unknown key, so its refresh on an unknown key
        # never happens; None lets it (the token is then refused all the same).
        if not any(key.get("kid") == key_id for key in self.keys or []):
            return None
        return super()._find(key_id)


def fetch_openid_metadata_off_the_loop(*urls: str) -> None:
    """Make botbuilder's token validation use _OffLoopOpenIdMetadata for these metadata
    URLs (its cache is process-wide, keyed by URL)."""
    for url in urls:
        if not isinstance(JwtTokenExtractor.metadataCache.get(url), _OffLoopOpenIdMetadata):
            JwtTokenExtractor.metadataCache[url] = _OffLoopOpenIdMetadata(url)
