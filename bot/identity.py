"""The bot's own Entra ID identity, through MSAL: the tokens it sends to the Bot Connector and
to Microsoft Graph.

Two kinds of Azure Bot can be registered today (new multi-tenant bots cannot):
- SingleTenant: an app registration with a client secret, tokens from the council's tenant;
- UserAssignedMSI: a user-assigned managed identity (MicrosoftAppId is its client id), tokens
  from the hosting platform's identity endpoint, no secret anywhere.

We build the MSAL clients ourselves rather than through botbuilder's credential factories so
that one token cache serves every scope and MSAL's HTTP client hook (`http_client`) can be
pointed at a local fake Entra ID in tests: MSAL's real code path runs there, not a stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from botframework.connector.auth import AppCredentials, ServiceClientCredentialsFactory

from bot.config import Settings

logger = logging.getLogger(__name__)

# How long Entra ID or the identity endpoint may take to answer one request.
HTTP_TIMEOUT_SECONDS = 10.0
# Tokens are renewed in the background once they have less than this left, so that a turn
# (whose replies botbuilder signs on the event loop) finds a valid token in the cache. MSAL
# itself stops handing out a token five minutes before it expires.
RENEW_AHEAD_SECONDS = 600


class IdentityError(Exception):
    """No token: Entra ID or the managed identity endpoint refused or could not be reached.
    `code` is MSAL's error code (e.g. "invalid_client"); neither carries a secret."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code


def resource_of(url: str) -> str:
    """The resource a scope or URL belongs to: https://graph.microsoft.com/v1.0 and
    https://graph.microsoft.com/.default both give https://graph.microsoft.com."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Identity:
    """App-only tokens for the bot. MSAL caches them and fetches a new one before the old
    expires (it never hands out a token with under five minutes left)."""

    def __init__(self, settings: Settings, *, http_client: Any | None = None) -> None:
        self._settings = settings
        self._http_client = http_client
        self._cache = msal.TokenCache()
        self._client: msal.ConfidentialClientApplication | msal.ManagedIdentityClient | None = None
        # MSAL's clients are thread-safe once built; building one fetches the tenant's metadata,
        # so it happens on first use, once.
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self._settings.microsoft_app_type

    def token(self, scope: str) -> str:
        """A bearer token for `scope` (a resource URL, with or without /.default). Blocking:
        call token_async on the event loop."""
        resource = resource_of(scope)
        try:
            client = self._msal_client()
            if isinstance(client, msal.ManagedIdentityClient):
                result = client.acquire_token_for_client(resource=resource)
            else:
                result = client.acquire_token_for_client(scopes=[f"{resource}/.default"])
        except (requests.RequestException, ValueError, msal.exceptions.MsalError) as error:
            # Unreachable endpoint, or MSAL refusing the answer it got.
            raise IdentityError("unreachable", type(error).__name__) from error
        if "access_token" not in result:
            code = str(result.get("error") or "no_token")
            raise IdentityError(code, str(result.get("error_description") or "")[:300])
        return str(result["access_token"])

    async def token_async(self, scope: str) -> str:
        # MSAL's HTTP client blocks; a renewal must not stall every other turn.
        return await asyncio.to_thread(self.token, scope)

    def forget(self, scope: str | None = None) -> None:
        """Drop the cached tokens for `scope` (all when None), e.g. after a resource answered
        401 to one."""
        for entry in self._cached(scope):
            self._cache.remove_at(entry)

    def renew_if_due(self, scope: str, *, ahead: float = RENEW_AHEAD_SECONDS) -> bool:
        """Fetch a new token for `scope` if the cached one expires within `ahead` seconds (or
        there is none). Blocking: run it in a thread. True if a token was fetched."""
        now = time.time()
        cached = self._cached(scope)
        if any(float(entry.get("expires_on", 0)) - now > ahead for entry in cached):
            return False
        for entry in cached:
            self._cache.remove_at(entry)
        self.token(scope)
        return True

    def _cached(self, scope: str | None) -> list[dict[str, Any]]:
        # list(): search() is a generator over the cache that remove_at() would change.
        entries = list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN))
        if scope is None:
            return entries
        resource = resource_of(scope)
        return [e for e in entries if resource_of(str(e.get("target", ""))) == resource]

    def _msal_client(self) -> msal.ConfidentialClientApplication | msal.ManagedIdentityClient:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> msal.ConfidentialClientApplication | msal.ManagedIdentityClient:
        settings = self._settings
        http_client = self._http_client or _TimeoutSession(HTTP_TIMEOUT_SECONDS)
        if settings.microsoft_app_type == "UserAssignedMSI":
            return msal.ManagedIdentityClient(
                msal.UserAssignedManagedIdentity(client_id=settings.microsoft_app_id),
                http_client=http_client,
                token_cache=self._cache,
            )
        # SingleTenant signs in at the council's tenant; the legacy MultiTenant, as botbuilder
        # does, at botframework.com, Bot Framework's own tenant.
        tenant = (
            "botframework.com"
            if settings.microsoft_app_type == "MultiTenant"
            else settings.microsoft_app_tenant_id
        )
        return msal.ConfidentialClientApplication(
            settings.microsoft_app_id,
            client_credential=settings.microsoft_app_password,
            authority=f"{settings.authority_host.rstrip('/')}/{tenant}",
            http_client=http_client,
            token_cache=self._cache,
        )


class _TimeoutSession(requests.Session):
    """MSAL's HTTP client: a session whose every request has a timeout (MSAL sets none on a
    session it is given, and a hung identity endpoint would otherwise hang the caller)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def build_identity(settings: Settings, *, http_client: Any | None = None) -> Identity | None:
    """The bot's identity, or None when authentication is off (no MicrosoftAppId)."""
    if not settings.authentication_enabled:
        return None
    return Identity(settings, http_client=http_client)


class _IdentityCredentials(AppCredentials):
    """botbuilder's view of one scope's token (it calls get_access_token per request)."""

    def __init__(self, identity: Identity, app_id: str, oauth_scope: str) -> None:
        super().__init__(app_id=app_id, oauth_scope=oauth_scope)
        self._identity = identity

    def get_access_token(self, force_refresh: bool = False) -> str:
        # botbuilder calls this on the event loop for every reply; the app renews the
        # token ahead of expiry in the background (bot/app.py), so this reads the cache.
        if force_refresh:
            self._identity.forget(self.oauth_scope)
        return self._identity.token(self.oauth_scope)


class IdentityCredentialsFactory(ServiceClientCredentialsFactory):
    """Hands botbuilder credentials backed by the bot's Identity (replies within a turn)."""

    def __init__(self, identity: Identity, app_id: str) -> None:
        self._identity = identity
        self._app_id = app_id

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> AppCredentials:
        if app_id != self._app_id:
            raise IdentityError("invalid_app_id", "credentials asked for another app")
        return _IdentityCredentials(self._identity, app_id, oauth_scope)
