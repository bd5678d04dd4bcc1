"""Keeping the outbox within Teams' rate limits, on one server or several.

Every request the outbox worker makes to the Bot Connector is first logged here
(`delivery_attempt`), and only if the log says the limits allow it now. The log is in the
database every replica shares, and logging is serialised (an advisory lock on PostgreSQL,
the single writer lock on SQLite), so replicas together keep within the limits, not each
on its own.

Each limit is a sliding window: at most `limit` requests in any `seconds`. A request reaches
Teams a little after it is logged, and not always after the same delay, so every window is
counted `guard` seconds longer than Teams' own: the limit then holds at Teams' end too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import hold_transaction_lock
from storage.models import DeliveryAttempt, aware, utcnow

# An advisory lock key, beside storage.db's (PostgreSQL only).
RATE_LOCK = 0x0C4B_0004
# How long the log is kept: much longer than any window, so that a worker which died after
# logging a request is still on record when its claim runs out and another worker retries
# (outbox.claim_due counts that as an unknown outcome), even after a long outage.
KEEP = timedelta(hours=6)


@dataclass(frozen=True)
class Window:
    seconds: float
    limit: int


@dataclass(frozen=True)
class RateLimits:
    per_bot: tuple[Window, ...]
    per_conversation: tuple[Window, ...]
    # Seconds added to every window (see the module's docstring). 0.1 s was not enough: on
    # a busy 2-core machine a request now and then reached the connector more than 0.1 s
    # after another logged before it, and 51 arrived within one second (CI, 2026-11-29).
    # 0.2 s costs a little speed: the steady ceiling is limit / 1.2 a second.
    guard: float = 0.2


# Teams' limits for a bot, from "Optimize your bot with rate limiting in Teams"
# (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit, read
# 2026-11): per bot per thread (a 1:1 chat, group chat or channel), "send to conversation"
# at most 7 in 1 s, 8 in 2 s, 60 in 30 s and 1,800 in 3,600 s; and a global limit per app
# per tenant of 50 requests per second. The bot serves one tenant (ALLOWED_TENANT_IDS), so
# the per-tenant limit is applied to the whole bot, which is never looser.
TEAMS_LIMITS = RateLimits(
    per_bot=(Window(1, 50),),
    per_conversation=(Window(1, 7), Window(2, 8), Window(30, 60), Window(3600, 1800)),
)


@dataclass(frozen=True)
class Logged:
    """The request is logged: make it now. `clock` is time.monotonic() from just before its
    time was read (once the log was held), so the sender can tell how late the request
    would be by the time it is made: every query after that moment, and the commit, count
    towards it."""

    clock: float


async def reserve(
    session: AsyncSession,
    *,
    limits: RateLimits,
    outbox_id: int,
    attempt: int,
    conversation_id: str,
    now: datetime | None = None,
) -> Logged | datetime:
    """Log the request `attempt` of outbox message `outbox_id` to `conversation_id`, if the
    limits allow it now. Logged: send it now. Otherwise nothing is logged and the answer is
    the earliest time the limits would allow it. Commit before sending.

    `now` is read after the lock is held (tests may fix it): a time read before waiting for
    the lock would log the request earlier than it is really made."""
    await hold_transaction_lock(session, RATE_LOCK)
    if now is None:
        clock, now = await _locked_now(session)
    else:
        clock = time.monotonic()
    # Writing first keeps the log short (and on SQLite holds the writer lock, if a time
    # given by a test skipped _locked_now), so what is counted below cannot change before
    # this transaction commits.
    await session.exec(delete(DeliveryAttempt).where(col(DeliveryAttempt.at) < now - KEEP))

    allowed_at = now
    for window in limits.per_bot:
        allowed_at = max(allowed_at, await _free_from(session, window, limits.guard, now, None))
    for window in limits.per_conversation:
        allowed_at = max(
            allowed_at, await _free_from(session, window, limits.guard, now, conversation_id)
        )
    if allowed_at > now:
        return allowed_at
    session.add(
        DeliveryAttempt(
            outbox_id=outbox_id, attempt=attempt, conversation_id=conversation_id, at=now
        )
    )
    await session.flush()
    return Logged(clock)


async def _locked_now(session: AsyncSession) -> tuple[float, datetime]:
    """The clock once this transaction holds the log: time.monotonic() (for the sender's
    lateness check) read just before the time that is logged. On SQLite (one machine) the
    writer lock is taken by the first write, so take it (a write that changes nothing)
    first: the wait for it must not count as lateness."""
    if session.get_bind().dialect.name == "postgresql":
        clock = time.monotonic()
        # The database's clock, not this server's: replicas whose clocks disagree by more
        # than the guard would otherwise each see the others' requests in the wrong place.
        moment = (await session.exec(select(func.clock_timestamp()))).one()
        return clock, aware(moment)
    await session.exec(delete(DeliveryAttempt).where(col(DeliveryAttempt.id) == -1))
    return time.monotonic(), utcnow()


async def _free_from(
    session: AsyncSession,
    window: Window,
    guard: float,
    now: datetime,
    conversation_id: str | None,
) -> datetime:
    """`now` if one more request fits in the window ending now; else when it will."""
    span = timedelta(seconds=window.seconds + guard)
    conditions = [col(DeliveryAttempt.at) > now - span]
    if conversation_id is not None:
        conditions.append(col(DeliveryAttempt.conversation_id) == conversation_id)
    count = (await session.exec(select(func.count()).where(*conditions))).one()
    if count < window.limit:
        return now
    # The window has room again once enough of its oldest requests have left it.
    oldest_to_leave = (
        await session.exec(
            select(DeliveryAttempt.at)
            .where(*conditions)
            .order_by(col(DeliveryAttempt.at))
            .offset(count - window.limit)
            .limit(1)
        )
    ).one()
    return aware(oldest_to_leave) + span


async def withdraw(session: AsyncSession, *, outbox_id: int, attempt: int) -> None:
    """Take a logged request out of the log: it was not made after all."""
    await session.exec(
        delete(DeliveryAttempt).where(
            col(DeliveryAttempt.outbox_id) == outbox_id, col(DeliveryAttempt.attempt) == attempt
        )
    )


async def started_attempts(session: AsyncSession, *, outbox_id: int) -> set[int]:
    """The attempt numbers of this message whose request was logged (was about to be made)."""
    found = await session.exec(
        select(DeliveryAttempt.attempt).where(col(DeliveryAttempt.outbox_id) == outbox_id)
    )
    return set(found.all())
