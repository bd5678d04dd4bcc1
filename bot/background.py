"""Work each bot process does besides answering turns: delivering the outbox (here) and
the schedules (bot/scheduler.py). Both are safe with several replicas: outbox rows are
claimed one worker at a time, and scheduled runs are deduplicated in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.proactive import OutboxWorker
from storage import outbox
from storage.db import is_unavailable
from storage.models import utcnow

logger = logging.getLogger(__name__)

# The outbox is checked this often even when nothing was enqueued here: another replica, the
# CLI or a retry coming due may have added work.
OUTBOX_POLL_SECONDS = 10.0


class OutboxLoop:
    """Delivers the outbox in the background; `kick()` after enqueueing sends at once."""

    def __init__(
        self,
        worker: OutboxWorker,
        sessions: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float = OUTBOX_POLL_SECONDS,
    ) -> None:
        self._worker = worker
        self._sessions = sessions
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        try:
            while not self._stopping:
                await guarded("Outbox delivery", self._deliver)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=await self._sleep())
                self._wake.clear()
        finally:
            self._stopped.set()

    async def _deliver(self) -> None:
        await self._worker.deliver_due()

    async def stop(self, *, wait_seconds: float) -> None:
        """Let the sends in flight finish (at most `wait_seconds`), give back the rest."""
        self._stopping = True
        self._worker.stop()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=wait_seconds)

    async def _sleep(self) -> float:
        """Until the next message falls due (a retry, a message waiting for its rate
        limit), or the poll interval: another replica or the CLI may add work."""
        try:
            async with self._sessions() as session:
                due = await outbox.next_due(session)
        except Exception:
            return self._poll_seconds
        if due is None:
            return self._poll_seconds
        return min(self._poll_seconds, max((due - utcnow()).total_seconds(), 0.05))


async def guarded(what: str, work: Callable[[], Awaitable[object]]) -> None:
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
