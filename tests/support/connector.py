"""A local Bot Connector service: the `serviceUrl` the bot replies to, recording every call."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WAIT_SECONDS = 5.0


@dataclass
class SentActivity:
    method: str
    conversation_id: str
    reply_to_id: str | None
    activity: dict[str, Any]
    authorization: str | None = None  # the request's Authorization header, as sent


@dataclass
class FakeConnector:
    sent: list[SentActivity] = field(default_factory=list)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # conversations opened
    # Each team's channels ({"id", "name"}), as GET /v3/teams/{team}/conversations lists them.
    team_channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on every send
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    server: TestServer | None = None
    # Seconds to wait before answering a sent activity (given its JSON): lets a test hold one
    # turn's reply back while another turn of the same conversation runs.
    delay: Callable[[dict[str, Any]], float] | None = None
    # Awaited before answering a sent activity (given its JSON): holds a reply until the test
    # says so (another turn has finished, say), whatever the machine's speed.
    hold: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    # An HTTP status (and Retry-After seconds) to answer instead of accepting the activity.
    refuse: Callable[[dict[str, Any]], tuple[int, float | None] | None] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/") + "/"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", self._send)
        app.router.add_put("/v3/conversations/{conversation}/activities/{reply_to}", self._send)
        app.router.add_get("/v3/conversations/{conversation}/members/{member}", self._member)
        app.router.add_post("/v3/conversations", self._create_conversation)
        app.router.add_get("/v3/teams/{team}/conversations", self._team_channels)
        return app

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def know(self, *users: Any) -> None:
        """Let TeamsInfo.get_member find these test users (tests.support.teams.TeamsUser)."""
        for user in users:
            self.members[user.id] = user.member

    async def wait_for(self, conversation_id: str, count: int = 1) -> list[dict[str, Any]]:
        """The activities sent to a conversation, once at least `count` have arrived (the
        outbox is delivered in the background); fails after WAIT_SECONDS."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while len(self.to(conversation_id)) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(self.to(conversation_id))} of {count} activities reached "
                f"{conversation_id} within {WAIT_SECONDS}s"
            ) from None
        return self.to(conversation_id)

    def to(self, conversation_id: str) -> list[dict[str, Any]]:
        return [s.activity for s in self.sent if s.conversation_id == conversation_id]

    async def _send(self, request: web.Request) -> web.Response:
        activity = await request.json()
        if self.delay is not None:
            await asyncio.sleep(self.delay(activity))
        if self.hold is not None:
            await self.hold(activity)
        refusal = self.refuse(activity) if self.refuse is not None else None
        if refusal is not None:
            status, retry_after = refusal
            self.refused.append(activity)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.json_response(
                {"error": {"code": "Refused", "message": "refused by the test"}},
                status=status,
                headers=headers,
            )
        self.sent.append(
            SentActivity(
                method=request.method,
                conversation_id=request.match_info["conversation"],
                reply_to_id=request.match_info.get("reply_to"),
                activity=activity,
                authorization=request.headers.get("Authorization"),
            )
        )
        self._arrived.set()
        return web.json_response({"id": f"reply-{next(self._ids)}"})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        """A new 1:1 chat (ConversationParameters): Teams answers with its id."""
        parameters = await request.json()
        self.created.append(parameters)
        return web.json_response({"id": f"a:created-{next(self._ids)}", "serviceUrl": self.url})

    async def _member(self, request: web.Request) -> web.Response:
        member = self.members.get(request.match_info["member"])
        if member is None:
            return web.json_response(
                {"error": {"code": "MemberNotFoundInConversation", "message": "not found"}},
                status=404,
            )
        return web.json_response(member)

    async def _team_channels(self, request: web.Request) -> web.Response:
        """The channels of a team (TeamsInfo.get_team_channels); 404 for a team not set up."""
        channels = self.team_channels.get(request.match_info["team"])
        if channels is None:
            return web.json_response(
                {"error": {"code": "NotFound", "message": "no such team"}}, status=404
            )
        return web.json_response({"conversations": channels})
