"""Work each bot process does besides answering turns: delivering the outbox, and the
morning reminder run. Both are safe with several replicas: outbox rows are claimed one
worker at a time, and the morning run is claimed per day in the database (storage/jobs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.proactive import OutboxWorker
from bot.reminders import run_reminders
from storage import jobs
from storage.db import is_unavailable, transaction
from storage.models import utcnow

logger = logging.getLogger(__name__)

# The outbox is checked this often even when nothing was enqueued here: another replica, the
# CLI or a retry coming due may have added work.
OUTBOX_POLL_SECONDS = 10.0
SCHEDULE_CHECK_SECONDS = 300.0
REMINDER_JOB = "mir-reminders"


class OutboxLoop:
    """Delivers the outbox in the background; `kick()` after enqueueing sends at once."""

    def __init__(self, worker: OutboxWorker, *, poll_seconds: float = OUTBOX_POLL_SECONDS) -> None:
        self._worker = worker
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            await _guarded("Outbox delivery", self._drain)

    async def _drain(self) -> None:
        while True:
            report = await self._worker.deliver_due()
            if not (report.sent or report.retried or report.failed):
                return


async def morning_reminders_forever(
    sessions: async_sessionmaker[AsyncSession],
    worker: OutboxWorker,
    zone: ZoneInfo,
    at: time,
    *,
    check_seconds: float = SCHEDULE_CHECK_SECONDS,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Every few minutes: once it is past `at` in the council's time zone, the first replica
    to claim today's run sends the reminders. Local wall-clock time, so the run stays at the
    same hour across the clock changes."""
    while True:
        await _guarded("Morning reminders", lambda: _maybe_run(sessions, worker, zone, at, clock))
        await asyncio.sleep(check_seconds)


async def _maybe_run(
    sessions: async_sessionmaker[AsyncSession],
    worker: OutboxWorker,
    zone: ZoneInfo,
    at: time,
    clock: Callable[[], datetime],
) -> None:
    local = clock().astimezone(zone)
    if local.time() < at:
        return
    period = local.date().isoformat()
    async with transaction(sessions) as session:
        claimed = await jobs.claim_run(session, job=REMINDER_JOB, period=period, now=clock())
    if not claimed:
        return
    try:
        await run_reminders(sessions, worker, today=local.date(), zone=zone)
    except Exception:
        # Give the day back so the next check (here or on another replica) tries again;
        # what was queued before the failure is not sent twice (the outbox's keys).
        async with transaction(sessions) as session:
            await jobs.release_run(session, job=REMINDER_JOB, period=period)
        raise


async def _guarded(what: str, work: Callable[[], Awaitable[None]]) -> None:
    """A failing round is logged and the loop carries on (the database may be back soon)."""
    try:
        await work()
    except Exception as error:
        if is_unavailable(error):
            logger.warning("%s skipped: database unavailable", what)
        else:
            logger.exception("%s failed", what)


@contextlib.asynccontextmanager
async def running(*coroutines: Awaitable[None]) -> AsyncIterator[None]:
    """Run background coroutines for the lifetime of the block, then cancel them."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
