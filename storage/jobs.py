"""Scheduled jobs shared by replicas: one run per job and period, whoever gets there first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JobRun


async def claim_run(session: AsyncSession, *, job: str, period: str, now: datetime) -> bool:
    """True if this caller is the first to run `job` for `period` (a day, a week).

    The row is the record that the run happened: after a restart or on another replica the
    same period is not run again. Commit the claim before doing the work; the work itself
    must be safe to repeat (the outbox's dedupe keys make sending so), because a process
    can stop between claiming and finishing.
    """
    values = {"job": job, "period": period, "started_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(JobRun).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(JobRun).values(values)
    else:
        raise NotImplementedError(f"No race-safe claim for the {dialect!r} dialect")
    result = await session.exec(statement.on_conflict_do_nothing(index_elements=["job", "period"]))
    return bool(result.rowcount)


async def release_run(session: AsyncSession, *, job: str, period: str) -> None:
    """Give a claimed run back (the work failed), so a later check runs it again."""
    await session.exec(delete(JobRun).where(col(JobRun.job) == job, col(JobRun.period) == period))
