"""Microsoft Graph, called as the bot itself (app-only): a person's department, to pre-fill
forms, and installing the Teams app for people, so the bot can message them.

Tokens come from the bot's Identity (MSAL caches them and renews them before they expire).
Calls go over one pooled aiohttp session, each with a timeout; throttling (429) and a busy
service (502/503/504) are retried a bounded number of times, honouring Retry-After.

The application permissions used, each needing an administrator's consent:
- User.Read.All: a person's department (GET /users/{id}?$select=department);
- AppCatalog.Read.All: the app's id in the organisation's catalogue;
- TeamsAppInstallation.ReadWriteSelfForUser.All: install this app for a user.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.identity import Identity, IdentityError
from storage import people

logger = logging.getLogger(__name__)

USER_READ = "User.Read.All"
CATALOG_READ = "AppCatalog.Read.All"
INSTALL_FOR_USER = "TeamsAppInstallation.ReadWriteSelfForUser.All"
PERMISSIONS = (USER_READ, CATALOG_READ, INSTALL_FOR_USER)

# Graph asks clients to back off on these; anything else is an answer.
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 3
MAX_WAIT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0
# A form is not held up for long by a department lookup: after this it opens without one.
DEPARTMENT_TIMEOUT_SECONDS = 2.0
INSTALL_CONCURRENCY = 4

Installation = Literal["installed", "already", "not_found"]


class GraphError(Exception):
    """Microsoft Graph did not give an answer the bot can use."""


class GraphUnavailable(GraphError):
    """Graph could not be reached, timed out, or stayed busy or throttled after retries."""


class GraphPermissionMissing(GraphError):
    """Graph refused (403): the bot's app registration lacks an application permission."""

    def __init__(self, permission: str) -> None:
        super().__init__(
            f"Microsoft Graph refused the request: the bot's app registration needs the "
            f"application permission {permission}, granted with admin consent "
            "(see docs/deploy.md)."
        )
        self.permission = permission


class AppNotInCatalogue(GraphError):
    """The Teams app is not in the organisation's app catalogue, so it cannot be installed."""

    def __init__(self, teams_app_id: str) -> None:
        super().__init__(
            f"The Teams app {teams_app_id} is not in your organisation's app catalogue: upload "
            "the app package in the Teams admin centre first (see docs/deploy.md)."
        )


class GraphClient:
    def __init__(
        self,
        identity: Identity,
        *,
        base_url: str,
        http: aiohttp.ClientSession | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._identity = identity
        self._base_url = base_url.rstrip("/")
        parts = urlsplit(self._base_url)
        # App-only tokens are asked for the whole resource: https://graph.microsoft.com/.default
        self.scope = f"{parts.scheme}://{parts.netloc}/.default"
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._max_wait = max_wait

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    # --- what the bot asks ------------------------------------------------------------------

    async def department(self, aad_object_id: str) -> str | None:
        """The person's department in the directory, or None if none is recorded (or the
        directory does not know them)."""
        status, body = await self._call(
            USER_READ,
            "GET",
            f"/users/{quote(aad_object_id, safe='')}",
            params={"$select": "department"},
        )
        if status == 404:
            return None
        _expect(status, (200,), "department")
        department = body.get("department") if isinstance(body, dict) else None
        if not isinstance(department, str) or not department.strip():
            return None
        return department.strip()

    async def catalog_app_id(self, teams_app_id: str) -> str | None:
        """The catalogue's id of the Teams app whose manifest id is `teams_app_id`, or None
        when the organisation's catalogue does not have it."""
        escaped = teams_app_id.replace("'", "''")  # OData quotes a quote by doubling it
        status, body = await self._call(
            CATALOG_READ,
            "GET",
            "/appCatalogs/teamsApps",
            params={"$filter": f"externalId eq '{escaped}'"},
        )
        _expect(status, (200,), "catalogue")
        apps = body.get("value") if isinstance(body, dict) else None
        for app in apps if isinstance(apps, list) else []:
            if isinstance(app, dict) and isinstance(app.get("id"), str):
                return app["id"]
        return None

    async def install_for(self, user: str, catalog_app_id: str) -> Installation:
        """Install the app in `user`'s personal scope (an email, UPN or object id). Teams
        then tells the bot (installationUpdate), and the bot can message them."""
        status, _ = await self._call(
            INSTALL_FOR_USER,
            "POST",
            f"/users/{quote(user, safe='@')}/teamwork/installedApps",
            json={
                "teamsApp@odata.bind": (
                    f"{self._base_url}/appCatalogs/teamsApps/{quote(catalog_app_id, safe='')}"
                )
            },
        )
        if status == 409:
            return "already"
        if status == 404:
            return "not_found"
        _expect(status, (200, 201, 204), "install")
        return "installed"

    # --- one call, with its retries -----------------------------------------------------------

    async def _call(
        self,
        permission: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) of the call; raises GraphPermissionMissing on 403 and
        GraphUnavailable when Graph cannot be reached or stays busy. No URL is logged: it
        can hold a person's id or email."""
        attempt, waited, renewed = 0, 0.0, False
        while True:
            attempt += 1
            token = await self._identity.token_async(self.scope)
            retry_after: str | None = None
            try:
                async with self._session().request(
                    method,
                    self._base_url + path,
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self._timeout,
                ) as response:
                    status = response.status
                    body = await _json_of(response)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as error:
                failure = type(error).__name__
            else:
                if status == 401 and not renewed:
                    # The token was revoked or expired early: one fresh token, one more try.
                    renewed = True
                    attempt -= 1
                    self._identity.forget()
                    continue
                if status == 403:
                    raise GraphPermissionMissing(permission)
                if status not in RETRYABLE:
                    if status >= 500 or status == 401:
                        raise GraphUnavailable(f"Graph answered {status} ({_error_code(body)})")
                    return status, body
                failure = f"HTTP {status}"
            delay = _seconds(retry_after)
            if delay is None:
                # Exponential backoff with jitter, when Graph does not say how long.
                delay = min(0.5 * 2 ** (attempt - 1), 4.0) * random.uniform(0.5, 1.0)
            if attempt >= self._max_attempts or waited + delay > self._max_wait:
                raise GraphUnavailable(f"Graph: {failure} after {attempt} attempt(s)")
            logger.info(
                "Graph: %s; trying again in %.1f s (attempt %d of %d)",
                failure,
                delay,
                attempt + 1,
                self._max_attempts,
            )
            await asyncio.sleep(delay)
            waited += delay

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use, on the running loop (aiohttp ties a session to its loop).
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http


def _expect(status: int, wanted: tuple[int, ...], operation: str) -> None:
    if status not in wanted:
        raise GraphError(f"Graph answered {status} to the {operation} request")


async def _json_of(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


def _error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else "no error code"


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After as seconds to wait: a number of seconds or an HTTP date."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


# --- wiring ---------------------------------------------------------------------------------


def build_graph(settings: Settings, identity: Identity | None) -> GraphClient | None:
    """The Graph client, or None (said once, at INFO) when Graph is not set up."""
    if not settings.graph_available or identity is None:
        logger.info(
            "Microsoft Graph is off (needs GRAPH_ENABLED=true and MicrosoftAppId): forms are "
            "not pre-filled and `install app` is unavailable"
        )
        return None
    logger.info("Microsoft Graph is on, as the bot's own identity")
    return GraphClient(identity, base_url=settings.graph_url)


def department_lookup(
    graph: GraphClient | None, *, timeout: float = DEPARTMENT_TIMEOUT_SECONDS
) -> Callable[[str], Awaitable[str | None]] | None:
    """What a form asks for a person's department: their directory department, or None on
    any failure (the form then opens as it would without Graph). None without Graph."""
    if graph is None:
        return None

    async def department_of(aad_object_id: str) -> str | None:
        try:
            async with asyncio.timeout(timeout):
                return await graph.department(aad_object_id)
        except GraphPermissionMissing as error:
            logger.error("No department for a form: %s", error)
        except (GraphError, IdentityError, TimeoutError) as error:
            logger.warning(
                "No department for a form from Microsoft Graph (%s); it opens without one",
                type(error).__name__,
            )
        return None

    return department_of


# --- installing the app for Change Makers --------------------------------------------------


@dataclass
class InstallReport:
    installed: int = 0
    already: int = 0
    not_found: int = 0
    failed: int = 0  # Graph stayed unavailable for them: a later run tries again

    @property
    def asked(self) -> int:
        return self.installed + self.already + self.not_found + self.failed

    def summary(self) -> str:
        if not self.asked:
            return "Every Change Maker on the roster can already be reached: nothing to install."
        text = (
            f"Installed for {self.installed}; {self.already} already had it; "
            f"{self.not_found} not found in the directory"
        )
        if self.failed:
            text += f"; {self.failed} could not be done now (try again later)"
        return text + "."


async def install_for_change_makers(
    graph: GraphClient,
    sessions: async_sessionmaker[AsyncSession],
    *,
    teams_app_id: str,
    concurrency: int = INSTALL_CONCURRENCY,
) -> InstallReport:
    """Install the Teams app for every roster Change Maker the bot has no 1:1 chat with.
    Teams then sends the bot an installationUpdate for each, which stores the chat, so
    reminders reach them. Raises GraphPermissionMissing (nothing more is tried) and
    AppNotInCatalogue, and IdentityError (no token); a person Graph stays unavailable for
    is counted as failed."""
    async with sessions() as session:
        emails = await people.change_makers_without_chat(session)
    report = InstallReport()
    if not emails:
        return report
    catalog_app_id = await graph.catalog_app_id(teams_app_id)
    if catalog_app_id is None:
        raise AppNotInCatalogue(teams_app_id)
    waiting = iter(emails)

    async def install_next() -> None:
        # The iterator is shared: each worker takes the next person until none is left.
        for email_address in waiting:
            try:
                outcome = await graph.install_for(email_address, catalog_app_id)
            except GraphPermissionMissing:
                raise  # the same for everyone: stop
            except GraphError as error:
                logger.warning("Could not install the app for one person: %s", error)
                report.failed += 1
                continue
            if outcome == "installed":
                report.installed += 1
            elif outcome == "already":
                report.already += 1
            else:
                report.not_found += 1

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(emails))):
                group.create_task(install_next())
    except* (GraphPermissionMissing, IdentityError) as refused:
        # One worker's refusal ends the others; the caller gets that refusal itself.
        raise refused.exceptions[0] from None
    logger.info(
        "Installed the app for Change Makers: %d installed, %d already, %d not found, %d failed",
        report.installed,
        report.already,
        report.not_found,
        report.failed,
    )
    return report
