"""The morning reminder run: claimed per day in the database, given back if it fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import background
from storage.models import JobRun

LONDON = ZoneInfo("Europe/London")


async def _runs(sessions: async_sessionmaker[AsyncSession], job: str) -> list[str]:
    async with sessions() as session:
        rows = (await session.exec(select(JobRun.period).where(JobRun.job == job))).all()
    return sorted(rows)


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> str:
    """A job name of this test's own, so the shared database's other runs do not count."""
    name = f"test-reminders-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(background, "REMINDER_JOB", name)
    return name


async def test_runs_once_a_day_after_the_hour_in_local_time(
    sessions: async_sessionmaker[AsyncSession], job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    days: list[Any] = []

    async def fake_run(_sessions: Any, _worker: Any, *, today: Any, **_: Any) -> None:
        days.append(today)

    monkeypatch.setattr(background, "run_reminders", fake_run)
    # 07:30 UTC on 29 March 2026 is 08:30 in London (summer time began that night).
    after_change = datetime(2026, 3, 29, 7, 30, tzinfo=UTC)
    before_hour = datetime(2026, 3, 29, 6, 30, tzinfo=UTC)  # 07:30 London
    await background._maybe_run(sessions, None, LONDON, time(8), lambda: before_hour)  # type: ignore[arg-type]
    assert days == []
    for _ in range(3):  # every check that day, on any replica
        await background._maybe_run(sessions, None, LONDON, time(8), lambda: after_change)  # type: ignore[arg-type]
    assert [d.isoformat() for d in days] == ["2026-03-29"]
    assert await _runs(sessions, job) == ["2026-03-29"]


async def test_a_failed_run_gives_the_day_back(
    sessions: async_sessionmaker[AsyncSession], job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_run(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database blip")

    monkeypatch.setattr(background, "run_reminders", failing_run)
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        await background._maybe_run(sessions, None, LONDON, time(8), lambda: now)  # type: ignore[arg-type]
    assert await _runs(sessions, job) == [], "the next check runs the day again"
