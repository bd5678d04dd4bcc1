"""A small asynchronous Bot Connector client for the outbox: one pooled aiohttp session,
timeouts that really abandon a request, and the status and Retry-After of every answer.

botbuilder's own client (msrest) sends through `requests` in the default thread pool (six
threads on a two-core machine, see PLATFORM-NOTES), cannot abandon a request that hangs (the
thread carries on after a timeout), and reports a refusal as one of several exception
types. The outbox needs many sends in flight, real timeouts and exact statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference

# Answers with the bearer token for the Bot Connector, or None when authentication is off.
TokenSource = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class SendResult:
    status: int | None  # None: no answer (timed out, connection failed)
    activity_id: str | None = None  # the id Teams gave the message
    retry_after: float | None = None  # seconds, from a Retry-After header
    error: str = ""
    # No answer, but the request may have reached Teams (it timed out, or the connection
    # broke after it was sent): Teams may have posted it.
    maybe_posted: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class PreparedSend:
    """A request ready to go: where, what, and the token."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]


class BotConnector:
    def __init__(self, *, token: TokenSource | None, timeout: float) -> None:
        self._token = token
        self._timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def send(self, reference: ConversationReference, activity: Activity) -> SendResult:
        """Post `activity` as a new message in the referenced conversation (a new thread in
        a channel). Never raises for what the connector or the network does."""
        prepared = await self.prepare(reference, activity)
        if isinstance(prepared, SendResult):
            return prepared
        return await self.post(prepared)

    async def prepare(
        self, reference: ConversationReference, activity: Activity
    ) -> PreparedSend | SendResult:
        """Everything before the request itself: the body, the address and the token (a
        SendResult if no token could be had: then nothing was sent). The outbox prepares
        before it takes its place within the rate limits, so that the request goes out the
        moment it has one."""
        # The same addressing botbuilder applies for a proactive message: from the bot, to
        # the conversation (with its tenant), on the stored channel and service URL.
        outgoing = TurnContext.apply_conversation_reference(activity, reference)
        outgoing.reply_to_id = None
        conversation_id = reference.conversation.id
        url = (
            f"{reference.service_url.rstrip('/')}/v3/conversations/"
            f"{quote(conversation_id, safe='')}/activities"
        )
        headers = {}
        try:
            # Apart from the send's timeout: a token that cannot be had means nothing left.
            async with asyncio.timeout(self._timeout):
                token = await self._token() if self._token is not None else None
        except Exception as error:
            return SendResult(status=None, error=f"no token: {type(error).__name__}")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return PreparedSend(url=url, body=outgoing.serialize(), headers=headers)

    async def post(self, prepared: PreparedSend) -> SendResult:
        """Make the request. Never raises for what the connector or the network does."""
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session().post(
                    prepared.url, json=prepared.body, headers=prepared.headers
                ) as response:
                    answer = await answer_json(response)
                    if 200 <= response.status < 300:
                        return SendResult(status=response.status, activity_id=answer.get("id"))
                    return SendResult(
                        status=response.status,
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                        error=f"HTTP {response.status} {error_code(answer)}".strip(),
                    )
        except TimeoutError:
            return SendResult(status=None, error="timed out", maybe_posted=True)
        except aiohttp.ClientConnectorError as error:  # never connected: nothing was sent
            return SendResult(status=None, error=f"{type(error).__name__}")
        except aiohttp.ClientError as error:
            return SendResult(status=None, error=f"{type(error).__name__}", maybe_posted=True)
        except Exception as error:  # anything else the client raises, after sending began
            return SendResult(
                status=None, error=f"{type(error).__name__}: {error}"[:300], maybe_posted=True
            )

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop; one pool of connections for every
        # send, so a fan-out reuses connections instead of opening one per message.
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                headers={"User-Agent": "OurCambridgeBot (aiohttp)"},
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def answer_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON object of an answer; {} if it has none."""
    with contextlib.suppress(Exception):
        answer = await response.json(content_type=None)
        if isinstance(answer, dict):
            return answer
    return {}


def error_code(answer: dict[str, Any]) -> str:
    """The Bot Connector's (or Graph's) `error.code` of an answer, or ""."""
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:100] if code else ""


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header as seconds to wait: a number of seconds or an HTTP date."""
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
