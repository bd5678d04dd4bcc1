"""A local Microsoft Graph with the few endpoints the bot calls: a user's department, the org
app catalogue, installing an app in a user's personal scope, and finding an installation and
its 1:1 chat. It records every request with its bearer token, and has knobs for what the
real service does on a bad day: throttling (429 with Retry-After), a refused permission
(403), a refusal for one user (403 without a licence), a token it no longer accepts (401),
and slowness.

It runs on the test's event loop (aiohttp): the bot calls Graph with aiohttp too, never with a
blocking client, and a CLI run in a subprocess reaches it while the test awaits that process
in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

VERSION = "/v1.0"

USER_READ = "User.Read.All"
CATALOG_READ = "AppCatalog.Read.All"
INSTALL_FOR_USER = "TeamsAppInstallation.ReadWriteSelfForUser.All"


@dataclass
class GraphUser:
    id: str  # the Entra ID object id (Teams' aadObjectId)
    email: str  # mail and userPrincipalName
    department: str | None = None


@dataclass(frozen=True)
class GraphRequest:
    method: str
    path: str  # after /v1.0, e.g. /users/{id}
    query: dict[str, str]
    token: str  # the bearer token sent ("" if none)
    status: int  # what the fake answered


@dataclass
class FakeGraph:
    users: list[GraphUser] = field(default_factory=list)
    catalogue: dict[str, str] = field(default_factory=dict)  # externalId -> catalogue id
    installed: dict[str, set[str]] = field(default_factory=dict)  # user id -> catalogue ids
    requests: list[GraphRequest] = field(default_factory=list)
    # Called (as a task, after answering) for each new installation, as Teams then tells the
    # bot with an installationUpdate.
    on_install: Callable[[GraphUser], Awaitable[None]] | None = None
    # Answer this many requests with `throttle_status` and Retry-After `retry_after` first.
    throttled: int = 0
    throttle_status: int = 429
    retry_after: str | None = "0"
    denied: set[str] = field(default_factory=set)  # permissions the app has not been granted
    delay: float = 0.0  # seconds before answering anything
    # Installs wait until this is set (when given): holds a run of installs half-way.
    install_gate: asyncio.Event | None = None
    unlicensed: set[str] = field(default_factory=set)  # user ids whose installs get a 403
    revoked: set[str] = field(default_factory=set)  # tokens answered with 401
    _revoke_next: bool = False
    _notifications: list[asyncio.Task[None]] = field(default_factory=list)
    server: TestServer | None = None

    # --- running --------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    @property
    def url(self) -> str:
        """What GRAPH_URL is set to: the fake's v1.0 endpoint."""
        return self.origin + VERSION

    async def start(self) -> FakeGraph:
        app = web.Application()
        app.router.add_get(VERSION + "/users/{user}", self._user)
        app.router.add_post(VERSION + "/users/{user}/teamwork/installedApps", self._install)
        app.router.add_get(VERSION + "/users/{user}/teamwork/installedApps", self._installations)
        app.router.add_get(
            VERSION + "/users/{user}/teamwork/installedApps/{installation}/chat", self._chat
        )
        app.router.add_get(VERSION + "/appCatalogs/teamsApps", self._catalogue)
        self.server = TestServer(app, host="127.0.0.1")
        # No access log: Graph's URLs name people (/users/{email}/...), and these lines would
        # be this fake's, not the bot's, in the run's scan for personal data (log_scan.py).
        await self.server.start_server(access_log=None)
        return self

    async def close(self) -> None:
        await self.settled()
        if self.server is not None:
            await self.server.close()

    async def settled(self) -> None:
        """Wait until every installationUpdate the fake sent has been handled by the bot."""
        while self._notifications:
            await self._notifications.pop(0)

    # --- knobs ----------------------------------------------------------------------------

    def add_user(self, id: str, email: str, department: str | None = None) -> GraphUser:
        user = GraphUser(id=id, email=email.lower(), department=department)
        self.users.append(user)
        return user

    def throttle(self, times: int, *, retry_after: str | None = "0", status: int = 429) -> None:
        self.throttled, self.retry_after, self.throttle_status = times, retry_after, status

    def deny(self, permission: str) -> None:
        self.denied.add(permission)

    def revoke_next_token(self) -> None:
        """The next request's token is refused from then on (expired or revoked early)."""
        self._revoke_next = True

    @staticmethod
    def installation_id(user_id: str, catalogue_id: str) -> str:
        return f"inst-{user_id}-{catalogue_id}"

    @staticmethod
    def chat_id(user_id: str) -> str:
        """The 1:1 chat Teams has between a user and the bot once the app is installed."""
        return f"19:{user_id}_28-ourcambridge@unq.gbl.spaces"

    def tokens(self) -> list[str]:
        return [r.token for r in self.requests]

    def find(self, user: str) -> GraphUser | None:
        """A user by object id or by email/UPN (any case), as Graph finds them."""
        wanted = user.lower()
        return next((u for u in self.users if u.id.lower() == wanted or u.email == wanted), None)

    # --- the endpoints --------------------------------------------------------------------

    async def _user(self, request: web.Request) -> web.Response:
        refusal = await self._gate(request, USER_READ)
        if refusal is not None:
            return refusal
        user = self.find(request.match_info["user"])
        if user is None:
            return self._answer(request, 404, _error("Request_ResourceNotFound", "No such user."))
        wanted = request.query.get("$select", "id,mail,department").split(",")
        every = {"id": user.id, "mail": user.email, "userPrincipalName": user.email}
        body = {k: v for k, v in (every | {"department": user.department}).items() if k in wanted}
        return self._answer(request, 200, {"@odata.context": "users/$entity", **body})

    async def _catalogue(self, request: web.Request) -> web.Response:
        refusal = await self._gate(request, CATALOG_READ)
        if refusal is not None:
            return refusal
        wanted = request.query.get("$filter", "")
        prefix, suffix = "externalId eq '", "'"
        if not (wanted.startswith(prefix) and wanted.endswith(suffix)):
            return self._answer(request, 400, _error("BadRequest", "Unsupported filter."))
        external_id = wanted[len(prefix) : -len(suffix)].replace("''", "'")
        found = [
            {"id": catalogue_id, "externalId": external, "distributionMethod": "organization"}
            for external, catalogue_id in self.catalogue.items()
            if external == external_id
        ]
        return self._answer(request, 200, {"value": found})

    async def _install(self, request: web.Request) -> web.Response:
        if self.install_gate is not None:
            await self.install_gate.wait()
        refusal = await self._gate(request, INSTALL_FOR_USER)
        if refusal is not None:
            return refusal
        body = await request.json()
        binding = body.get("teamsApp@odata.bind", "") if isinstance(body, dict) else ""
        prefix = f"{self.url}/appCatalogs/teamsApps/"
        catalogue_id = binding.removeprefix(prefix)
        if not binding.startswith(prefix) or catalogue_id not in self.catalogue.values():
            return self._answer(request, 400, _error("BadRequest", "Unknown teamsApp binding."))
        user = self.find(request.match_info["user"])
        if user is None:
            return self._answer(request, 404, _error("NotFound", "User not found."))
        if user.id in self.unlicensed:
            # What Graph answers for a user without a Teams licence: a 403 that is about them.
            return self._answer(
                request,
                403,
                _error(
                    "Forbidden",
                    "Failed to get license information for the user. Ensure user has a "
                    "valid Office365 license assigned to them.",
                ),
            )
        apps = self.installed.setdefault(user.id, set())
        if catalogue_id in apps:
            return self._answer(request, 409, _error("Conflict", "App is already installed."))
        apps.add(catalogue_id)
        if self.on_install is not None:
            self._notifications.append(asyncio.create_task(self.on_install(user)))
        return self._answer(request, 201, None)

    async def _installations(self, request: web.Request) -> web.Response:
        """The apps installed for a user, filtered by catalogue id (teamsApp/id eq '...')."""
        refusal = await self._gate(request, INSTALL_FOR_USER)
        if refusal is not None:
            return refusal
        user = self.find(request.match_info["user"])
        if user is None:
            return self._answer(request, 404, _error("NotFound", "User not found."))
        wanted = request.query.get("$filter", "")
        prefix, suffix = "teamsApp/id eq '", "'"
        if not (wanted.startswith(prefix) and wanted.endswith(suffix)):
            return self._answer(request, 400, _error("BadRequest", "Unsupported filter."))
        if request.query.get("$expand") != "teamsApp":
            return self._answer(request, 400, _error("BadRequest", "teamsApp not expanded."))
        catalogue_id = wanted[len(prefix) : -len(suffix)].replace("''", "'")
        found = [
            {"id": self.installation_id(user.id, app), "teamsApp": {"id": app}}
            for app in sorted(self.installed.get(user.id, set()))
            if app == catalogue_id
        ]
        return self._answer(request, 200, {"value": found})

    async def _chat(self, request: web.Request) -> web.Response:
        refusal = await self._gate(request, INSTALL_FOR_USER)
        if refusal is not None:
            return refusal
        user = self.find(request.match_info["user"])
        installation = request.match_info["installation"]
        if user is None or not any(
            installation == self.installation_id(user.id, app)
            for app in self.installed.get(user.id, set())
        ):
            return self._answer(request, 404, _error("NotFound", "No such installation."))
        return self._answer(
            request,
            200,
            {"@odata.context": "chats/$entity", "id": self.chat_id(user.id)},
        )

    async def _gate(self, request: web.Request, permission: str) -> web.Response | None:
        """What every endpoint checks first: the token, throttling, the permission."""
        if self.delay:
            await asyncio.sleep(self.delay)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self._revoke_next and token:
            self._revoke_next = False
            self.revoked.add(token)
        if not token or token in self.revoked:
            return self._answer(
                request,
                401,
                _error("InvalidAuthenticationToken", "Access token has expired or is not valid."),
            )
        if self.throttled:
            self.throttled -= 1
            response = self._answer(
                request, self.throttle_status, _error("TooManyRequests", "Too many requests.")
            )
            if self.retry_after is not None:
                response.headers["Retry-After"] = self.retry_after
            return response
        if permission in self.denied:
            if permission == USER_READ:
                return self._answer(
                    request,
                    403,
                    _error(
                        "Authorization_RequestDenied",
                        "Insufficient privileges to complete the operation.",
                    ),
                )
            return self._answer(
                request,
                403,
                _error(
                    "Forbidden",
                    f"Missing role permissions on the request. API requires one of "
                    f"'{permission}'. Roles on the request ''.",
                ),
            )
        return None

    def _answer(self, request: web.Request, status: int, body: Any) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.requests.append(
            GraphRequest(
                method=request.method,
                path=request.path.removeprefix(VERSION),
                query=dict(request.query),
                token=token,
                status=status,
            )
        )
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}
