"""The bot's schedules: each channel's weekly digest, the morning reminders, the weekly
call-out of ideas waiting for triage and the nightly retention purge.

Every replica runs the same loop. Nothing is kept in memory between checks: a check works
out, from the database and the clock, the latest time each job was due (croniter, in the
council's time zone, so 09:00 stays 09:00 across the clock changes), and queues what that
run owes unless it was queued already. Digests are deduplicated by their outbox key (one per
channel per week), the other jobs by a claim per period (storage/jobs.py), so a run happens
once however many replicas check, and a run missed while every replica was down is made
once when one comes back, if it is less than a day late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, tzinfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.background import guarded
from bot.digests import queue_due_digests
from bot.reminders import queue_reminders, queue_stale_ideas
from storage import jobs, retention
from storage.db import transaction
from storage.models import utcnow
from storage.retention import RetentionPolicy
from storage.schedules import daily_cron, is_missed, last_due

logger = logging.getLogger(__name__)

CHECK_SECONDS = 60.0
REMINDER_JOB = "mir-reminders"
IDEAS_CALLOUT_JOB = "ideas-stale"
# Monday 09:00: the ideas left in "new" for over five working days, called out in the
# triage channel at the start of the working week.
IDEAS_CALLOUT_CRON = "0 9 * * 1"
PURGE_JOB = "retention-purge"


@dataclass
class SchedulerRun:
    digests_queued: int = 0
    reminders_run: bool = False
    ideas_callout_run: bool = False
    purge_run: bool = False


class Scheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        zone: tzinfo,
        reminders_at: time | None,
        purge_at: time | None = None,
        retention_policy: RetentionPolicy | None = None,
        queued: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._zone = zone
        self._reminders_at = reminders_at
        # The purge runs only with both a time and a policy.
        self._purge_at = purge_at if retention_policy is not None else None
        self._retention_policy = retention_policy
        self._queued = queued  # told when something was put in the outbox
        self._clock = clock

    async def run_forever(self, *, check_seconds: float = CHECK_SECONDS) -> None:
        while True:
            await guarded("Scheduled jobs", self.check)
            await asyncio.sleep(check_seconds)

    async def check(self) -> SchedulerRun:
        """Queue whatever is due now and was not queued yet."""
        now = self._clock()
        run = SchedulerRun()
        run.digests_queued = (
            await queue_due_digests(self._sessions, now=now, zone=self._zone)
        ).queued
        if self._reminders_at is not None:
            run.reminders_run = await self._once(
                REMINDER_JOB, daily_cron(self._reminders_at), now, self._reminders
            )
        run.ideas_callout_run = await self._once(
            IDEAS_CALLOUT_JOB, IDEAS_CALLOUT_CRON, now, self._ideas_callout
        )
        if self._purge_at is not None:
            run.purge_run = await self._once(
                PURGE_JOB, daily_cron(self._purge_at), now, self._purge
            )
        if run.digests_queued or run.reminders_run or run.ideas_callout_run:
            self._queued()
        return run

    async def _once(
        self,
        job: str,
        cron: str,
        now: datetime,
        work: Callable[[datetime], Awaitable[None]],
    ) -> bool:
        """Run `work` for the latest time `cron` was due, if no replica has yet."""
        due = last_due(cron, now=now, zone=self._zone)
        if is_missed(due, now):
            return False
        period = due.astimezone(self._zone).date().isoformat()
        async with transaction(self._sessions) as session:
            if not await jobs.claim_run(session, job=job, period=period, now=now):
                return False
        try:
            await work(due)
        except Exception:
            # Give the period back so the next check (here or on another replica) tries
            # again; what was queued before the failure is not sent twice (outbox keys).
            async with transaction(self._sessions) as session:
                await jobs.release_run(session, job=job, period=period)
            raise
        return True

    async def _reminders(self, due: datetime) -> None:
        run = await queue_reminders(self._sessions, today=due.astimezone(self._zone).date())
        logger.info(
            "Morning reminders: %d due, %d queued, %d already queued, %d unreachable",
            run.due,
            run.queued,
            run.already_queued,
            len(run.unreachable),
        )

    async def _ideas_callout(self, due: datetime) -> None:
        await queue_stale_ideas(
            self._sessions, today=due.astimezone(self._zone).date(), zone=self._zone
        )

    async def _purge(self, _due: datetime) -> None:
        assert self._retention_policy is not None
        async with transaction(self._sessions) as session:
            report = await retention.purge(
                session, policy=self._retention_policy, now=self._clock(), dry_run=False
            )
        logger.info(
            "Retention purge: %d records deleted or anonymised (%s)",
            report.total,
            ", ".join(f"{kind} {count}" for kind, count in report.counts.items() if count),
        )
