"""The shared log keeps sends within Teams' limits: per conversation and for the whole bot."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import ratelimit
from storage.db import transaction
from storage.models import utcnow
from storage.ratelimit import TEAMS_LIMITS, RateLimits, Window

_ids = itertools.count(1)


async def _reserve(
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    now: datetime,
    limits: RateLimits = TEAMS_LIMITS,
) -> datetime | None:
    """None if the request was logged, else when it may be."""
    async with transaction(sessions) as session:
        answer = await ratelimit.reserve(
            session,
            limits=limits,
            outbox_id=next(_ids),
            attempt=1,
            conversation_id=conversation_id,
            now=now,
        )
    return None if isinstance(answer, ratelimit.Logged) else answer


async def test_a_conversation_gets_seven_a_second_then_waits(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = utcnow()
    answers = [await _reserve(fresh_sessions, "19:one", start) for _ in range(8)]
    assert answers[:7] == [None] * 7
    # The eighth waits until the first leaves the one-second window (counted `guard` longer).
    assert answers[7] == start + timedelta(seconds=1 + TEAMS_LIMITS.guard)
    assert await _reserve(fresh_sessions, "19:other", start) is None, "another conversation is free"


async def test_eight_in_two_seconds_holds_when_spread_out(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = utcnow()
    for step in range(8):  # 4 a second: within 7 a second, but 8 in 2 s is the limit
        assert (
            await _reserve(fresh_sessions, "19:spread", start + timedelta(seconds=step * 0.25))
            is None
        )
    ninth = start + timedelta(seconds=2.0)
    assert await _reserve(fresh_sessions, "19:spread", ninth) == start + timedelta(
        seconds=2 + TEAMS_LIMITS.guard
    )


async def test_the_whole_bot_keeps_to_its_limit_across_conversations(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    limits = RateLimits(per_bot=(Window(1, 5),), per_conversation=TEAMS_LIMITS.per_conversation)
    start = utcnow()
    answers = [await _reserve(fresh_sessions, f"19:c{n}", start, limits) for n in range(6)]
    assert answers[:5] == [None] * 5
    assert answers[5] == start + timedelta(seconds=1 + limits.guard)
    later = start + timedelta(seconds=1 + limits.guard + 0.1)
    assert await _reserve(fresh_sessions, "19:c6", later, limits) is None, "the window moved on"


async def test_attempts_are_logged_only_when_allowed(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = utcnow()
    for _ in range(7):
        await _reserve(fresh_sessions, "19:log", start)
    async with transaction(fresh_sessions) as session:
        refused = await ratelimit.reserve(
            session,
            limits=TEAMS_LIMITS,
            outbox_id=999_999,
            attempt=1,
            conversation_id="19:log",
            now=start,
        )
        assert refused == start + timedelta(seconds=1 + TEAMS_LIMITS.guard)
        assert await ratelimit.started_attempts(session, outbox_id=999_999) == set()
