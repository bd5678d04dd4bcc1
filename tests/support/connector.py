"""A local Bot Connector service: the `serviceUrl` the bot replies to, recording every call."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class SentActivity:
    method: str
    conversation_id: str
    reply_to_id: str | None
    activity: dict[str, Any]


@dataclass
class FakeConnector:
    sent: list[SentActivity] = field(default_factory=list)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    server: TestServer | None = None
    # Seconds to wait before answering a sent activity (given its JSON): lets a test hold one
    # turn's reply back while another turn of the same conversation runs.
    delay: Callable[[dict[str, Any]], float] | None = None

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
        return app

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def to(self, conversation_id: str) -> list[dict[str, Any]]:
        return [s.activity for s in self.sent if s.conversation_id == conversation_id]

    async def _send(self, request: web.Request) -> web.Response:
        activity = await request.json()
        if self.delay is not None:
            await asyncio.sleep(self.delay(activity))
        self.sent.append(
            SentActivity(
                method=request.method,
                conversation_id=request.match_info["conversation"],
                reply_to_id=request.match_info.get("reply_to"),
                activity=activity,
            )
        )
        return web.json_response({"id": f"reply-{next(self._ids)}"})

    async def _member(self, request: web.Request) -> web.Response:
        member = self.members.get(request.match_info["member"])
        if member is None:
            return web.json_response(
                {"error": {"code": "MemberNotFoundInConversation", "message": "not found"}},
                status=404,
            )
        return web.json_response(member)
