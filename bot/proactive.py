"""Delivering the outbox: every message the bot sends on its own (digests, reminders,
nudges, idea notifications).

Each message was written to the outbox first (storage/outbox.py); this worker claims due
rows, waits for room within Teams' rate limits (storage/ratelimit.py, shared by replicas),
sends each through the Bot Connector with the stored conversation reference, and records
the outcome. Failures Teams asks us to retry (429, 412, 502, 503, 504, or no answer) are
tried again later with exponential backoff and jitter, honouring Retry-After, up to a
bounded number of attempts; a 403 or 404 (the app was removed, the person blocked it) fails
the message for good and forgets the conversation.

Delivery is at least once. A message can reach Teams twice only when an attempt's outcome
is unknown: its worker died (or lost the database) after sending and before recording, or
no answer came (a timeout) though Teams may have posted it. Each such attempt is counted in
`outbox.unknown_outcomes`, which `ourcambridge outbox status` reports.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botbuilder.schema import Activity, ConversationReference
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.connector import BotConnector, SendResult
from storage import outbox, ratelimit
from storage.db import transaction
from storage.models import utcnow
from storage.ratelimit import TEAMS_LIMITS, RateLimits

logger = logging.getLogger(__name__)

# Teams asks bots to retry these ("Optimize your bot with rate limiting in Teams",
# https://learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit): throttled,
# precondition failed, and the gateway's transient errors. No answer at all (a timeout, a
# dropped connection) is retried too.
RETRIABLE_STATUSES = frozenset({412, 429, 502, 503, 504})
# The bot was removed from the conversation, or the person blocked it.
GONE_STATUSES = frozenset({403, 404})
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class DeliveryPolicy:
    limits: RateLimits = TEAMS_LIMITS
    # Sends in flight at once, per worker. Enough to reach the per-bot limit (50 a second)
    # when Teams takes a few hundred milliseconds to answer each.
    concurrency: int = 16
    # A send that takes longer is abandoned and retried; the connector's own timeout is
    # about 100 s, far longer than a claim should wait.
    send_timeout: float = 30.0
    # How long a claim lasts: longer than the longest wait for a rate-limit slot plus a send,
    # so a claim only runs out when its worker died.
    lease: timedelta = timedelta(minutes=15)
    max_attempts: int = MAX_ATTEMPTS
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=1)
    # A message whose conversation is at its limit for longer than this goes back to the
    # queue until then, instead of holding one of the worker's places.
    max_wait: float = 5.0

    def __post_init__(self) -> None:
        if self.lease.total_seconds() <= self.send_timeout + self.max_wait:
            raise ValueError("the lease must outlast a send and a wait for a rate-limit slot")


# (dedupe key, conversation id, activity id) of a message just sent.
SentHook = Callable[[str, str, str], Awaitable[None]]
# Told of a conversation the bot can no longer write to (in the transaction recording it).
GoneHook = Callable[[AsyncSession, str], Awaitable[None]]


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0  # failed, to be tried again later
    failed: int = 0  # failed for good
    deferred: int = 0  # back in the queue unsent: its conversation was at its rate limit
    released: int = 0  # back in the queue unsent: the worker is stopping
    late: int = 0  # logged requests not made: they would have reached Teams too late

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred
        self.released += other.released
        self.late += other.late

    @property
    def anything(self) -> bool:
        return bool(self.sent or self.retried or self.failed or self.deferred or self.released)


class OutboxWorker:
    def __init__(
        self,
        *,
        connector: BotConnector,
        sessions: async_sessionmaker[AsyncSession],
        policy: DeliveryPolicy | None = None,
        on_sent: SentHook | None = None,
        on_gone: GoneHook | None = None,
    ) -> None:
        self._connector = connector
        self._sessions = sessions
        self.policy = policy or DeliveryPolicy()
        # Told of each message sent, e.g. to remember where a card was posted so that it can
        # be updated in place.
        self._on_sent = on_sent
        self._on_gone = on_gone
        self._stopping = False
        # Half the guard: the other half is left for the request's way to Teams.
        self._late_after = self.policy.limits.guard / 2

    async def close(self) -> None:
        await self._connector.close()

    def stop(self) -> None:
        """Finish the sends in flight, give back what is claimed but not yet sent, claim no
        more: another replica (or this one, restarted) delivers the rest without waiting for
        the claims to run out."""
        self._stopping = True

    async def deliver_due(self, *, now: datetime | None = None) -> DeliveryReport:
        """Send what is due (at `now`, default the clock's now) until nothing more is,
        keeping up to `policy.concurrency` sends in flight. Returns what happened."""
        report = DeliveryReport()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                room = self.policy.concurrency - len(in_flight)
                claimed: list[outbox.Delivery] = []
                # Before claiming: the lease runs from the claim's `now`, not from its commit.
                claimed_at = time.monotonic()
                if room > 0:
                    async with transaction(self._sessions) as session:
                        claimed = await outbox.claim_due(
                            session, now=now or utcnow(), limit=room, lease=self.policy.lease
                        )
                for delivery in claimed:
                    in_flight.add(asyncio.create_task(self._deliver(delivery, claimed_at, report)))
                if not in_flight:
                    break
                if len(claimed) < room or room == 0:
                    # Nothing more due now, or no room: wait for a send to finish first.
                    _, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
        finally:
            # Sends in flight are finished and recorded, even when this is cancelled: a send
            # abandoned half-way is one whose outcome nobody knows.
            if in_flight:
                await asyncio.shield(asyncio.gather(*in_flight, return_exceptions=True))
        return report

    async def _deliver(
        self, delivery: outbox.Delivery, claimed_at: float, report: DeliveryReport
    ) -> None:
        try:
            if delivery.reference is None:
                # Forgotten after a 403/404 or the app's removal: nothing is sent there.
                await self._record(delivery, SendResult(status=None, error="unreachable"), report)
                return
            reference = restore_reference(delivery.reference, delivery.tenant_id)
            prepared = await self._connector.prepare(
                reference, Activity().deserialize(delivery.payload)
            )
            if isinstance(prepared, SendResult):  # no token: nothing was sent
                await self._record(delivery, prepared, report)
                return
            for may_withdraw in (True, False):
                logged = await self._reserve(delivery, claimed_at, report)
                if logged is None:
                    return
                # The request counts from when it was logged, and must reach Teams within
                # the limits' guard of that; late requests bunch up at Teams' end. A slow
                # commit or a busy moment can make it late: then it is not made but taken
                # out of the log and logged again, once (a database that is always that
                # slow must not stop the outbox).
                if not may_withdraw or time.monotonic() - logged <= self._late_after:
                    break
                report.late += 1
                async with transaction(self._sessions) as session:
                    await ratelimit.withdraw(
                        session, outbox_id=delivery.id, attempt=delivery.attempts
                    )
            result = await self._connector.post(prepared)
            await self._record(delivery, result, report)
        except Exception as error:
            # Most likely the database went away. The claim runs out and the message is
            # tried again then; nothing is lost.
            logger.warning(
                "Outbox message %d: delivery interrupted (%s); it will be retried when its "
                "claim runs out",
                delivery.id,
                type(error).__name__,
            )

    async def _reserve(
        self, delivery: outbox.Delivery, claimed_at: float, report: DeliveryReport
    ) -> float | None:
        """Wait for room within the rate limits and log the request; the moment its logged
        time was read (time.monotonic()). None if the message went back to the queue."""
        lease = self.policy.lease.total_seconds()
        while True:
            if time.monotonic() - claimed_at + self.policy.send_timeout >= lease:
                # The claim would run out before the send could finish: another worker may
                # then take the message and send it too. Give it back instead.
                async with transaction(self._sessions) as session:
                    await outbox.release(session, delivery=delivery, at=utcnow())
                report.deferred += 1
                return None
            if self._stopping:
                async with transaction(self._sessions) as session:
                    await outbox.release(session, delivery=delivery, at=utcnow())
                report.released += 1
                return None
            async with transaction(self._sessions) as session:
                free_at = await ratelimit.reserve(
                    session,
                    limits=self.policy.limits,
                    outbox_id=delivery.id,
                    attempt=delivery.attempts,
                    conversation_id=delivery.conversation_id,
                )
            if isinstance(free_at, ratelimit.Logged):
                return free_at.clock
            wait = (free_at - utcnow()).total_seconds()
            if wait > self.policy.max_wait or (
                time.monotonic() - claimed_at + wait + self.policy.send_timeout >= lease
            ):
                async with transaction(self._sessions) as session:
                    await outbox.release(session, delivery=delivery, at=free_at)
                report.deferred += 1
                return None
            # A little jitter, so the sends waiting for the same moment do not all ask at once.
            await asyncio.sleep(max(wait, 0.0) + random.uniform(0.0, 0.01))

    async def _record(
        self, delivery: outbox.Delivery, result: SendResult, report: DeliveryReport
    ) -> None:
        retry_at = None if result.ok else self._retry_at(delivery.attempts, result, utcnow())
        gone = result.status in GONE_STATUSES or result.error == "unreachable"
        async with transaction(self._sessions) as session:
            if result.ok:
                recorded = await outbox.mark_sent(session, delivery=delivery, now=utcnow())
            else:
                recorded = await outbox.mark_failed(
                    session,
                    delivery=delivery,
                    error=result.error,
                    retry_at=retry_at,
                    maybe_posted=result.maybe_posted,
                )
                if gone:
                    # Removed or blocked (or forgotten for that already): stop writing
                    # there; a person now shows as unreachable in the leader and programme
                    # views, a channel's digest subscription ends.
                    await outbox.forget_conversation(
                        session, conversation_id=delivery.conversation_id
                    )
                    if self._on_gone is not None:
                        await self._on_gone(session, delivery.conversation_id)
        if not recorded:
            # The row id, not the key: a key can name a person (an idea's submitter).
            logger.warning(
                "Outbox message %d: the claim ran out before its outcome was recorded",
                delivery.id,
            )
        if result.ok:
            report.sent += 1
            if self._on_sent is not None and result.activity_id:
                try:
                    await self._on_sent(
                        delivery.dedupe_key, delivery.conversation_id, result.activity_id
                    )
                except Exception:
                    logger.warning("Recording a sent message failed", exc_info=True)
        elif retry_at is None:
            report.failed += 1
            logger.warning(
                "Gave up on outbox message %d after %d attempt(s): %s",
                delivery.id,
                delivery.attempts,
                result.error,
            )
        else:
            report.retried += 1

    def _retry_at(self, attempts: int, result: SendResult, now: datetime) -> datetime | None:
        """When to try again, or None to give up: not retriable, or attempts used up."""
        retriable = (
            result.status in RETRIABLE_STATUSES
            if result.status is not None
            else result.error != "unreachable"
        )
        if not retriable or attempts >= self.policy.max_attempts:
            return None
        backoff = min(self.policy.first_backoff * (2 ** (attempts - 1)), self.policy.max_backoff)
        # Jitter spreads the retries of many messages throttled at once.
        delay = timedelta(seconds=random.uniform(0.5, 1.0) * backoff.total_seconds())
        if result.retry_after is not None:
            delay = max(delay, timedelta(seconds=result.retry_after))
        return now + delay


def restore_reference(stored: dict[str, Any], tenant_id: str | None) -> ConversationReference:
    """A stored conversation reference, with the tenant id put back: botbuilder drops it when
    it serialises one (see storage.models.ConversationReference), and Teams needs it."""
    reference = ConversationReference().deserialize(stored)
    if tenant_id and reference.conversation is not None:
        reference.conversation.tenant_id = tenant_id
    return reference
