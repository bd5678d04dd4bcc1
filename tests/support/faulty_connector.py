"""A fake Bot Connector for fan-out tests: real TCP on 127.0.0.1, every request recorded
with the moment it arrived, and faults injected by a fixed plan.

It models what Teams does with a "send to conversation" request. A request that is
answered 2xx was posted, and so is one whose answer is only slow or held back (Teams posts
first and answers after), so a sender that gives up on it, or dies waiting, and sends again
makes a duplicate. A refusal (429, 503...) or a hang (no answer within the client's timeout)
was not posted.

It serves from an event loop of its own, in a thread, and is reached over TCP: like Teams,
it notes when a request arrives however busy the sender's loop is (on the sender's loop, a
busy moment would delay the note and bunch the times up). Bot processes started by a test
send to it just as an in-process worker does. Every request is recorded, refused or not,
because Teams counts every request against its rate limits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from storage.ratelimit import RateLimits

WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Fault:
    """What the connector does with one request instead of posting it and answering at
    once."""

    status: int | None = None  # refuse it with this status (429, 503...): not posted
    retry_after: float | None = None  # with this Retry-After header, in seconds
    hang: bool = False  # never answer while the client waits: not posted
    late: float | None = None  # post it, but answer only after this many seconds

    def __str__(self) -> str:
        if self.hang:
            return "hang"
        if self.late is not None:
            return f"posted, answered after {self.late:g} s"
        return f"HTTP {self.status}"


HANG = Fault(hang=True)


def refuse(status: int, retry_after: float | None = None) -> Fault:
    return Fault(status=status, retry_after=retry_after)


def late(seconds: float) -> Fault:
    return Fault(late=seconds)


@dataclass
class Arrival:
    """One request as the connector saw it."""

    seq: int
    at: float  # time.monotonic() when it arrived: for rate windows
    wall: float  # time.time(), to compare with the bot's own (UTC) log
    conversation_id: str
    outcome: str  # "posted", "refused" or "hung"
    status: int | None  # the status answered; None for a hang
    epoch: int  # which phase of the test sent it (see FaultyConnector.epoch)
    peer_port: int | None  # the sender's TCP port: tells two sending processes apart
    activity: dict[str, Any] | None = None  # the posted activity
    answered_at: float | None = None  # when it was answered (None: not, or never)

    @property
    def posted(self) -> bool:
        return self.outcome == "posted"


@dataclass
class FaultyConnector:
    # Faults for the first requests to each conversation, in order (None: post that one);
    # later requests are posted. Keyed by conversation, the plan does not depend on timing.
    plan: Mapping[str, Sequence[Fault | None]] = field(default_factory=dict)
    # Seconds before answering a posted message (Teams takes a few hundred milliseconds).
    latency: float = 0.0
    # Once this many messages are posted, the answers to later ones are held until
    # release_held() (or close): they are posted, and the sender does not know yet.
    hold_after: int | None = None
    # A hang lasts this long at most (or until close): longer than any client waits.
    hang_seconds: float = 120.0
    # Set by the test between phases (e.g. before and after a restart) and recorded with
    # each arrival.
    epoch: int = 1
    arrivals: list[Arrival] = field(default_factory=list)
    _requests: Counter[str] = field(default_factory=Counter)  # per conversation, so far
    _posted: int = 0
    server: TestServer | None = None
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Both used on the connector's own loop only.
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/") + "/"

    async def start(self) -> FaultyConnector:
        return await asyncio.to_thread(self.start_thread)

    async def close(self) -> None:
        await asyncio.to_thread(self.stop_thread)

    def start_thread(self) -> FaultyConnector:
        """Serve from a thread of its own (for callers without a running loop)."""
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faulty-connector", daemon=True
        )
        self._thread.start()
        self.call(self._serve())
        return self

    def stop_thread(self) -> None:
        if self._thread is None:
            return
        self.call(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        self._loop.close()

    def call(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run `work` on the connector's loop and wait for it (blocking)."""
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def _shut_down(self) -> None:
        # Held and hung requests end now, so the server's shutdown does not wait for them.
        self._closing.set()
        self._release.set()
        if self.server is not None:
            await self.server.close()

    def forget(self) -> None:
        """Start counting afresh (between the runs of a benchmark)."""
        self.arrivals.clear()
        self._requests.clear()
        self._posted = 0

    def release_held(self) -> None:
        """Answer every held request now, and hold no more."""
        self.hold_after = None
        self._loop.call_soon_threadsafe(self._release.set)

    # --- what arrived ---------------------------------------------------------------------

    def posted(self, *, epoch: int | None = None) -> list[Arrival]:
        return [a for a in self.arrivals if a.posted and (epoch is None or a.epoch == epoch)]

    def held(self) -> list[Arrival]:
        """Posted messages whose answer has not been given (yet)."""
        return [a for a in self.posted() if a.answered_at is None]

    def posted_per_conversation(self) -> Counter[str]:
        return Counter(a.conversation_id for a in self.posted())

    def duplicates(self) -> dict[str, int]:
        """Conversations that got a message more than once, and how many times."""
        return {c: n for c, n in self.posted_per_conversation().items() if n > 1}

    def requests_per_conversation(self) -> Counter[str]:
        return Counter(a.conversation_id for a in self.arrivals)

    def max_in_window(self, seconds: float, *, conversation_id: str | None = None) -> int:
        """The most requests (posted or not) that arrived within any `seconds` long
        stretch of time, overall or to one conversation."""
        return _max_in_window(
            [
                a.at
                for a in self.arrivals
                if conversation_id is None or a.conversation_id == conversation_id
            ],
            seconds,
        )

    def max_per_conversation_in_window(self, seconds: float) -> int:
        by_conversation: dict[str, list[float]] = {}
        for arrival in self.arrivals:
            by_conversation.setdefault(arrival.conversation_id, []).append(arrival.at)
        return max(
            (_max_in_window(times, seconds) for times in by_conversation.values()), default=0
        )

    def breaches(self, limits: RateLimits) -> list[str]:
        """Every limit (Teams' own windows, without the sender's guard) that the requests
        that arrived went over, as text for an assertion message; empty if none."""
        found = []
        for window in limits.per_bot:
            most = self.max_in_window(window.seconds)
            if most > window.limit:
                found.append(f"{most} requests in {window.seconds:g} s (bot limit {window.limit})")
        for window in limits.per_conversation:
            most = self.max_per_conversation_in_window(window.seconds)
            if most > window.limit:
                found.append(
                    f"{most} requests to one conversation in {window.seconds:g} s "
                    f"(limit {window.limit})"
                )
        return found

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = WAIT_SECONDS, what: str = ""
    ) -> None:
        """Return once `condition()` holds, checked at every arrival and answer."""
        changed = asyncio.Event()
        waiter = (asyncio.get_running_loop(), changed)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                while not condition():
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"not within {within:g} s: {what or 'condition'}; "
                f"{len(self.posted())} posted of {len(self.arrivals)} requests"
            ) from None
        finally:
            self._waiters.remove(waiter)

    def _changed(self) -> None:
        # Wakes the waiters, whose loops are not the connector's.
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)

    # --- the service ----------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        # The moment of arrival is taken before anything else: it is what the limits count.
        at, wall = time.monotonic(), time.time()
        conversation_id = request.match_info["conversation"]
        activity = await request.json()
        fault = self._fault_for(conversation_id)
        status: int | None
        # A late answer is still a post: Teams posts first and answers after.
        outcome, status = "posted", 201
        if fault is not None and fault.hang:
            outcome, status = "hung", None
        elif fault is not None and fault.late is None:
            outcome, status = "refused", fault.status
        peer = request.transport.get_extra_info("peername") if request.transport else None
        arrival = Arrival(
            seq=next(self._seq),
            at=at,
            wall=wall,
            conversation_id=conversation_id,
            outcome=outcome,
            status=status,
            epoch=self.epoch,
            peer_port=peer[1] if peer else None,
            activity=activity if outcome == "posted" else None,
        )
        self._requests[conversation_id] += 1
        if arrival.posted:
            self._posted += 1
        if fault is None and not self._holding() and not self.latency:
            # Answered at once: the test (another thread) must never see it unanswered.
            arrival.answered_at = time.monotonic()
        self.arrivals.append(arrival)
        self._changed()
        # If the sender goes away first (it was killed, or gave up), aiohttp cancels this
        # handler: the answer was never given, and answered_at stays None.
        response = await self._answer(arrival, fault)
        arrival.answered_at = time.monotonic()
        self._changed()
        return response

    def _holding(self) -> bool:
        return self.hold_after is not None and self._posted > self.hold_after

    def _fault_for(self, conversation_id: str) -> Fault | None:
        planned = self.plan.get(conversation_id, ())
        earlier = self._requests[conversation_id]  # this one is not counted yet
        return planned[earlier] if earlier < len(planned) else None

    async def _answer(self, arrival: Arrival, fault: Fault | None) -> web.Response:
        if fault is not None and fault.hang:
            # The client gives up first; the request was never posted.
            await _wait(self._closing, self.hang_seconds)
            return web.json_response({"error": {"code": "Hung"}}, status=504)
        if fault is not None and fault.late is not None:
            await _wait(self._closing, fault.late)
            return web.json_response({"id": f"posted-{arrival.seq}"}, status=201)
        if fault is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
            return web.json_response(
                {"error": {"code": "Refused", "message": f"refused by the plan: {fault}"}},
                status=fault.status or 503,
                headers=headers,
            )
        if self._holding():
            await _wait(self._release, self.hang_seconds)
        elif self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response({"id": f"posted-{arrival.seq}"}, status=201)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set, `seconds` at most."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


def _max_in_window(times: list[float], seconds: float) -> int:
    # A busiest window can always be moved to start at a request, so it is enough to count,
    # for each request, the requests in the `seconds` from it (two pointers over the sorted
    # times).
    ordered = sorted(times)
    best, end = 0, 0
    for start, moment in enumerate(ordered):
        while end < len(ordered) and ordered[end] < moment + seconds:
            end += 1
        best = max(best, end - start)
    return best
