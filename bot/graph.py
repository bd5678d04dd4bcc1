"""Microsoft Graph, called as the bot itself (app-only): a person's department, to pre-fill
forms, and installing the Teams app for people, so the bot can message them.

Tokens come from the bot's Identity (MSAL caches them and renews them before they expire).
Calls go over one pooled aiohttp session, each with a timeout; throttling (429) and a busy
service (502/503/504) are retried a bounded number of times, honouring Retry-After.

The application permissions used, each needing an administrator's consent:
- User.Read.All: a person's department (GET /users/{id}?$select=department);
- AppCatalog.Read.All: the app's id in the organisation's catalogue;
- TeamsAppInstallation.ReadWriteSelfForUser.All: install this app for a user, and find the
  1:1 chat of someone who already has it.

Users are addressed by their Entra ID object id when the bot knows it, else by the roster's
email, which Graph matches against the user principal name (UPN).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from botbuilder.schema import ChannelAccount, ConversationAccount, ConversationReference
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.connector import answer_json, error_code, retry_after_seconds
from bot.identity import Identity, IdentityError, resource_of
from storage import audit, people
from storage.db import transaction

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


class GraphRefused(GraphError):
    """Graph refused (403) this one request for a reason other than a missing permission,
    e.g. the person has no Teams licence: it concerns that person only."""


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
        # App-only tokens are asked for the whole resource: https://graph.microsoft.com/.default
        self.scope = f"{resource_of(self._base_url)}/.default"
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

    async def personal_chat_id(self, user: str, catalog_app_id: str) -> str | None:
        """The id of the 1:1 chat between `user` and the app installed for them, or None if
        the app is not installed for them (any more)."""
        escaped = catalog_app_id.replace("'", "''")
        installations = f"/users/{quote(user, safe='@')}/teamwork/installedApps"
        status, body = await self._call(
            INSTALL_FOR_USER,
            "GET",
            installations,
            params={"$expand": "teamsApp", "$filter": f"teamsApp/id eq '{escaped}'"},
        )
        if status == 404:
            return None
        _expect(status, (200,), "installed apps")
        found = body.get("value") if isinstance(body, dict) else None
        installation = next(
            (
                item["id"]
                for item in (found if isinstance(found, list) else [])
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            ),
            None,
        )
        if installation is None:
            return None
        status, body = await self._call(
            INSTALL_FOR_USER, "GET", f"{installations}/{quote(installation, safe='')}/chat"
        )
        if status == 404:
            return None
        _expect(status, (200,), "chat")
        chat_id = body.get("id") if isinstance(body, dict) else None
        return chat_id if isinstance(chat_id, str) and chat_id else None

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
        """(status, parsed JSON body) of the call; raises GraphPermissionMissing on a 403
        that says a permission is missing, GraphRefused on any other 403, and
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
                    body = await answer_json(response)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as error:
                failure = type(error).__name__
            else:
                if status == 401 and not renewed:
                    # The token was revoked or expired early: one fresh token, one more try.
                    renewed = True
                    attempt -= 1
                    self._identity.forget(self.scope)
                    continue
                if status == 403:
                    if _says_permission_missing(body):
                        raise GraphPermissionMissing(permission)
                    raise GraphRefused(f"Graph refused the request: {_error_summary(body)}")
                if status not in RETRYABLE:
                    if status >= 500 or status == 401:
                        raise GraphUnavailable(
                            f"Graph answered {status} ({error_code(body) or 'no error code'})"
                        )
                    return status, body
                failure = f"HTTP {status}"
            delay = retry_after_seconds(retry_after)
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


# What Graph says when the app lacks a permission: Entra ID's "Insufficient privileges to
# complete the operation." (code Authorization_RequestDenied), or Teams' "Missing role
# permissions on the request. API requires one of '...'. Roles on the request '...'."
# (code Forbidden). A 403 for one person (e.g. "Failed to get license information for the
# user.") says nothing of roles or privileges.
_PERMISSION_CODES = frozenset({"authorization_requestdenied", "forbidden", "accessdenied"})
_PERMISSION_MESSAGE = re.compile(
    r"missing role|insufficient privileges|roles on the request|requires one of|"
    r"required (?:scopes|permissions|roles)|permissions? (?:is|are) missing",
    re.IGNORECASE,
)
# An email address or a GUID in an error message: a person's, not to be logged.
_PERSONAL = re.compile(
    r"[^\s'\"]+@[^\s'\"]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.IGNORECASE,
)


def _error_of(body: Any) -> tuple[str, str]:
    """(code, message) of a Graph error body; empty strings when it has none."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else "", message if isinstance(message, str) else "")


def _says_permission_missing(body: Any) -> bool:
    code, message = _error_of(body)
    if code.lower() == "authorization_requestdenied":
        return True
    return code.lower() in _PERMISSION_CODES and bool(_PERMISSION_MESSAGE.search(message))


def _error_summary(body: Any) -> str:
    """The error's code and message, without any email or id it quotes, for the log."""
    code, message = _error_of(body)
    message = _PERSONAL.sub("...", message)[:200].strip()
    return f"{code or 'no error code'}: {message}" if message else (code or "no error code")


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
    already: int = 0  # had it; their chat is now stored, so the bot can reach them
    already_unreachable: int = 0  # had it, but no Teams address of the tenant is known yet
    not_found: int = 0
    failed: int = 0  # Graph stayed unavailable, or refused for them: a later run tries again

    @property
    def asked(self) -> int:
        return (
            self.installed + self.already + self.already_unreachable + self.not_found + self.failed
        )

    def summary(self) -> str:
        if not self.asked:
            return "Every Change Maker on the roster can already be reached: nothing to install."
        parts = [f"Installed for {self.installed}"]
        if self.already or not self.already_unreachable:
            parts.append(
                f"{self.already} already had it" + (" (now reachable)" if self.already else "")
            )
        if self.already_unreachable:
            parts.append(
                f"{self.already_unreachable} already had it but can't be reached until they "
                "open the app (I haven't heard from anyone in your organisation yet)"
            )
        parts.append(f"{self.not_found} not found in the directory")
        if self.failed:
            parts.append(f"{self.failed} could not be done now (try again later)")
        return "; ".join(parts) + "."


async def install_for_change_makers(
    graph: GraphClient,
    sessions: async_sessionmaker[AsyncSession],
    *,
    teams_app_id: str,
    tenant_id: str | None,
    concurrency: int = INSTALL_CONCURRENCY,
    actor: str = "system",
    actor_id: int | None = None,
) -> InstallReport:
    """Install the Teams app for every roster Change Maker the bot has no 1:1 chat with.
    Teams then sends the bot an installationUpdate for each, which stores the chat, so
    reminders reach them. Teams sends nothing for someone who already had the app: their
    chat is asked of Graph and stored here, addressed like the tenant's other conversations.

    Raises GraphPermissionMissing (nothing more is tried) and AppNotInCatalogue, and
    IdentityError (no token); a person Graph stays unavailable for, or refuses, is counted
    as failed. The run is written to the audit trail as it starts, by `actor`."""
    async with transaction(sessions) as session:
        waiting = await people.change_makers_without_chat(session)
        address = await people.latest_address(session, tenant_id=tenant_id) if tenant_id else None
        await audit.record(
            session,
            action="app.install",
            actor_id=actor_id,
            actor=actor,
            detail={"change_makers_without_chat": len(waiting)},
        )
    report = InstallReport()
    if not waiting:
        return report
    catalog_app_id = await graph.catalog_app_id(teams_app_id)
    if catalog_app_id is None:
        raise AppNotInCatalogue(teams_app_id)
    queue = iter(waiting)

    async def reach(person: people.Unreachable) -> bool:
        """Store the 1:1 chat of someone who already had the app. False if it cannot be."""
        if address is None or tenant_id is None:
            return False
        chat_id = await graph.personal_chat_id(person.directory_id, catalog_app_id)
        if chat_id is None:
            return False
        service_url, template = address
        async with transaction(sessions) as session:
            await people.save_conversation_reference(
                session,
                conversation_id=chat_id,
                conversation_type="personal",
                tenant_id=tenant_id,
                service_url=service_url,
                reference=personal_reference(
                    template,
                    chat_id=chat_id,
                    service_url=service_url,
                    tenant_id=tenant_id,
                    aad_object_id=person.aad_object_id,
                ),
                person_id=person.person_id,
            )
        return True

    async def install_next() -> None:
        # The iterator is shared: each worker takes the next person until none is left.
        for person in queue:
            try:
                outcome = await graph.install_for(person.directory_id, catalog_app_id)
                reachable = outcome == "already" and await reach(person)
            except GraphPermissionMissing:
                raise  # the same for everyone: stop
            except GraphError as error:
                logger.warning("Could not install the app for one person: %s", error)
                report.failed += 1
                continue
            if outcome == "installed":
                report.installed += 1
            elif outcome == "already" and reachable:
                report.already += 1
            elif outcome == "already":
                report.already_unreachable += 1
            else:
                report.not_found += 1

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(waiting))):
                group.create_task(install_next())
    except* (GraphPermissionMissing, IdentityError) as refused:
        # One worker's refusal ends the others; the caller gets that refusal itself.
        raise refused.exceptions[0] from None
    logger.info(
        "Installed the app for Change Makers: %d installed, %d already (%d now reachable), "
        "%d not found, %d failed",
        report.installed,
        report.already + report.already_unreachable,
        report.already,
        report.not_found,
        report.failed,
    )
    return report


def personal_reference(
    template: dict[str, Any],
    *,
    chat_id: str,
    service_url: str,
    tenant_id: str,
    aad_object_id: str | None,
) -> dict[str, Any]:
    """A stored conversation reference for a 1:1 chat Graph named: the bot's account and
    channel come from another conversation of the tenant (`template`); Teams needs only the
    chat's id and the service URL to deliver there."""
    known = ConversationReference().deserialize(template)
    reference = ConversationReference(
        bot=known.bot,
        user=ChannelAccount(id=aad_object_id, aad_object_id=aad_object_id)
        if aad_object_id
        else None,
        conversation=ConversationAccount(
            id=chat_id, conversation_type="personal", tenant_id=tenant_id
        ),
        channel_id=known.channel_id or "msteams",
        service_url=service_url,
    )
    serialized: dict[str, Any] = reference.serialize()
    return serialized
