"""Putting the weekly digests in the outbox.

The scheduler (bot/schedules.py) calls `queue_due_digests` every minute on every replica;
`ourcambridge digest send [--now]` calls the same functions. Each digest's outbox key is
`digest:<subscription id>:<ISO week>`, the week its send was due in: a channel gets one
digest a week however often, and on however many replicas, this runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import card_message
from storage import digest, outbox, schedules, subscriptions
from storage.db import transaction
from storage.models import DigestSubscription, OutboxMessage, aware, utcnow

logger = logging.getLogger(__name__)

WEEK = timedelta(days=7)


@dataclass
class DigestRun:
    due: int = 0  # subscriptions whose digest is due now
    queued: int = 0  # newly put in the outbox
    already_queued: int = 0  # queued before (this week's digest went, or is going, out)
    missed: int = 0  # due more than a day ago: skipped


def digest_key(subscription_id: int, due: datetime, zone: tzinfo) -> str:
    return subscriptions.digest_key(subscription_id, week=schedules.iso_week(due, zone))


async def queue_due_digests(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, zone: tzinfo
) -> DigestRun:
    """Queue the digest of every subscription whose weekly time has come and whose digest
    for that week is not queued yet. A digest missed by more than a day is skipped."""
    run = DigestRun()
    async with sessions() as session:
        active = await subscriptions.active_subscriptions(session)
    due: dict[str, tuple[DigestSubscription, datetime]] = {}
    for subscription in active:
        when = schedules.last_due(
            schedules.weekly_cron(subscription.weekday, subscription.send_time),
            now=now,
            zone=zone,
        )
        if when < aware(subscription.schedule_changed_at):
            continue  # the time was set after it passed: the first digest is next week's
        if schedules.is_missed(when, now):
            run.missed += 1
            continue
        due[digest_key(subscription.id or 0, when, zone)] = (subscription, when)
    run.due = len(due)
    await _queue(sessions, due, zone=zone, run=run)
    return run


async def queue_digests_now(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, zone: tzinfo
) -> DigestRun:
    """Queue this week's digest for every subscription now, whatever its day and time,
    unless this week's has been queued already (then nothing more is sent)."""
    run = DigestRun()
    async with sessions() as session:
        active = await subscriptions.active_subscriptions(session)
    due = {
        digest_key(subscription.id or 0, now, zone): (subscription, now) for subscription in active
    }
    run.due = len(due)
    await _queue(sessions, due, zone=zone, run=run)
    return run


async def digest_card(
    session: AsyncSession, *, start: datetime, end: datetime, zone: tzinfo
) -> dict[str, Any]:
    """The digest of [start, end) as the activity that carries its card."""
    content = await digest.build_digest(session, start=start, end=end, zone=zone)
    return card_message("digest", digest=content).serialize()


async def _queue(
    sessions: async_sessionmaker[AsyncSession],
    due: dict[str, tuple[DigestSubscription, datetime]],
    *,
    zone: tzinfo,
    run: DigestRun,
) -> None:
    if not due:
        return
    async with sessions() as session:
        queued_before = set(
            (
                await session.exec(
                    select(OutboxMessage.dedupe_key).where(
                        col(OutboxMessage.dedupe_key).in_(list(due))
                    )
                )
            ).all()
        )
    run.already_queued += len(queued_before)
    waiting = {key: value for key, value in due.items() if key not in queued_before}
    # Channels due at the same moment get the same card: build it once per moment.
    cards: dict[datetime, dict[str, Any]] = {}
    async with transaction(sessions) as session:
        for key, (subscription, when) in waiting.items():
            if when not in cards:
                cards[when] = await digest_card(session, start=when - WEEK, end=when, zone=zone)
            added = await outbox.enqueue(
                session,
                dedupe_key=key,
                conversation_id=subscription.conversation_id,
                payload=cards[when],
                now=utcnow(),
            )
            if added:
                run.queued += 1
            else:
                run.already_queued += 1  # another replica got there in between
    if run.queued:
        logger.info("Queued %d weekly digest(s)", run.queued)
