"""The schedules: due times in London across the clock changes, a missed digest sent once if
less than a day late, never twice; the daily and weekly jobs claimed once per period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import scheduler
from bot.digests import queue_digests_now, queue_due_digests
from storage import audit, retention
from storage.db import transaction
from storage.models import BotState, DigestSubscription, JobRun, OutboxMessage
from storage.retention import RetentionPolicy
from storage.schedules import last_due, weekly_cron

LONDON = ZoneInfo("Europe/London")
MINUTE = timedelta(minutes=1)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- due times ---------------------------------------------------------------------


def test_monday_nine_stays_nine_in_london_in_winter_and_summer() -> None:
    cron = weekly_cron(0, "09:00")
    assert last_due(cron, now=_utc(2026, 11, 30, 12), zone=LONDON) == _utc(2026, 11, 30, 9)
    assert last_due(cron, now=_utc(2026, 6, 1, 12), zone=LONDON) == _utc(2026, 6, 1, 8)
    # The Monday after each change.
    assert last_due(cron, now=_utc(2026, 3, 30, 12), zone=LONDON) == _utc(2026, 3, 30, 8)
    assert last_due(cron, now=_utc(2026, 10, 26, 12), zone=LONDON) == _utc(2026, 10, 26, 9)


def test_a_time_due_exactly_now_is_due() -> None:
    cron = weekly_cron(0, "09:00")
    assert last_due(cron, now=_utc(2026, 11, 30, 9), zone=LONDON) == _utc(2026, 11, 30, 9)
    assert last_due(cron, now=_utc(2026, 11, 30, 8, 59), zone=LONDON) == _utc(2026, 11, 23, 9)


def test_weekday_numbers_start_on_monday() -> None:
    assert weekly_cron(0, "09:00") == "0 9 * * 1"
    assert weekly_cron(6, "17:45") == "45 17 * * 0"


# --- digests: due, missed, never twice --------------------------------------------


async def _subscribe(
    sessions: async_sessionmaker[AsyncSession],
    *,
    weekday: int = 0,
    at: str = "09:00",
    since: datetime = LONG_AGO,
) -> DigestSubscription:
    subscription = DigestSubscription(
        conversation_id=f"19:{uuid.uuid4().hex}@thread.tacv2",
        team_id="19:team@thread.tacv2",
        weekday=weekday,
        send_time=at,
        schedule_changed_at=since,
    )
    async with transaction(sessions) as session:
        session.add(subscription)
    return subscription


async def _digests(sessions: async_sessionmaker[AsyncSession], conversation_id: str) -> list[str]:
    async with sessions() as session:
        found = await session.exec(
            select(OutboxMessage.dedupe_key)
            .where(col(OutboxMessage.conversation_id) == conversation_id)
            .order_by(col(OutboxMessage.id))
        )
        return list(found.all())


async def _check_every_minute(
    sessions: async_sessionmaker[AsyncSession],
    start: datetime,
    end: datetime,
    *,
    down: tuple[datetime, datetime] | None = None,
) -> None:
    """Run the digest check once a minute from start to end, except while `down`."""
    moment = start
    while moment <= end:
        if down is None or not down[0] <= moment < down[1]:
            await queue_due_digests(sessions, now=moment, zone=LONDON)
        moment += MINUTE


async def test_a_digest_is_queued_once_at_its_time(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions)
    # Monday 30 November 2026, 08:55 to 09:10 GMT.
    await _check_every_minute(fresh_sessions, _utc(2026, 11, 30, 8, 55), _utc(2026, 11, 30, 9, 10))
    assert await _digests(fresh_sessions, subscription.conversation_id) == [
        f"digest:{subscription.id}:2026-W49"
    ]


async def test_after_downtime_a_missed_digest_is_sent_once_if_less_than_a_day_late(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    late = await _subscribe(fresh_sessions)
    # Every replica down from Monday 08:30 to 10:00: the digest goes at 10:00, once.
    await _check_every_minute(
        fresh_sessions,
        _utc(2026, 11, 30, 8, 0),
        _utc(2026, 11, 30, 10, 30),
        down=(_utc(2026, 11, 30, 8, 30), _utc(2026, 11, 30, 10, 0)),
    )
    assert await _digests(fresh_sessions, late.conversation_id) == [f"digest:{late.id}:2026-W49"]
    # Back for good: the rest of the week's checks add nothing.
    for hours in range(1, 24 * 6, 7):
        await queue_due_digests(
            fresh_sessions, now=_utc(2026, 11, 30, 10) + timedelta(hours=hours), zone=LONDON
        )
    assert len(await _digests(fresh_sessions, late.conversation_id)) == 1


async def test_a_digest_more_than_a_day_late_is_skipped(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions)
    # Down from before Monday 09:00 until Tuesday 09:01: more than a day late.
    run = await queue_due_digests(fresh_sessions, now=_utc(2026, 12, 1, 9, 1), zone=LONDON)
    assert run.missed == 1
    assert await _digests(fresh_sessions, subscription.conversation_id) == []
    # The next Monday's goes as usual.
    await queue_due_digests(fresh_sessions, now=_utc(2026, 12, 7, 9, 0), zone=LONDON)
    assert await _digests(fresh_sessions, subscription.conversation_id) == [
        f"digest:{subscription.id}:2026-W50"
    ]


async def test_subscribing_after_this_weeks_time_waits_for_next_week(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions, since=_utc(2026, 11, 30, 9, 30))
    await queue_due_digests(fresh_sessions, now=_utc(2026, 11, 30, 9, 31), zone=LONDON)
    assert await _digests(fresh_sessions, subscription.conversation_id) == []


async def test_sunday_half_past_one_is_sent_once_across_both_clock_changes(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions, weekday=6, at="01:30")
    # 25 October 2026: 01:30 happens twice in London (BST, then GMT).
    await _check_every_minute(fresh_sessions, _utc(2026, 10, 24, 23, 0), _utc(2026, 10, 25, 3, 0))
    # 29 March 2026: 01:30 never happens in London (01:00 GMT becomes 02:00 BST).
    await _check_every_minute(fresh_sessions, _utc(2026, 3, 29, 0, 0), _utc(2026, 3, 29, 3, 0))
    assert sorted(await _digests(fresh_sessions, subscription.conversation_id)) == [
        f"digest:{subscription.id}:2026-W13",
        f"digest:{subscription.id}:2026-W43",
    ]


async def test_digest_send_now_queues_this_weeks_once(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions, weekday=4, at="16:00")
    now = _utc(2026, 12, 1, 10)  # a Tuesday: not the subscription's day
    first = await queue_digests_now(fresh_sessions, now=now, zone=LONDON)
    second = await queue_digests_now(fresh_sessions, now=now + timedelta(hours=1), zone=LONDON)
    assert (first.queued, second.queued, second.already_queued) == (1, 0, 1)
    # Nor does Friday's scheduled time send a second one that week.
    await queue_due_digests(fresh_sessions, now=_utc(2026, 12, 4, 16, 1), zone=LONDON)
    assert await _digests(fresh_sessions, subscription.conversation_id) == [
        f"digest:{subscription.id}:2026-W49"
    ]


async def test_the_digest_card_is_what_is_queued(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    subscription = await _subscribe(fresh_sessions)
    await queue_due_digests(fresh_sessions, now=_utc(2026, 11, 30, 9, 0), zone=LONDON)
    async with fresh_sessions() as session:
        message = (
            await session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.conversation_id == subscription.conversation_id
                )
            )
        ).one()
    card = message.payload["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert "This week in Our Cambridge" in str(card)
    assert "Mon 23 November 2026" in str(card), "the seven days to the send time"


# --- the daily and weekly jobs -------------------------------------------------------


async def _runs(sessions: async_sessionmaker[AsyncSession], job: str) -> list[str]:
    async with sessions() as session:
        rows = (await session.exec(select(JobRun.period).where(JobRun.job == job))).all()
    return sorted(rows)


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Record what the jobs would do (each test has a database of its own: `fresh_sessions`)."""
    done: dict[str, list[Any]] = {"reminders": [], "ideas": []}

    async def reminders(_sessions: Any, *, today: Any) -> Any:
        done["reminders"].append(today)
        return type("Run", (), {"due": 0, "queued": 0, "already_queued": 0, "unreachable": []})

    async def ideas(_sessions: Any, *, today: Any, zone: Any) -> bool:
        done["ideas"].append(today)
        return False

    monkeypatch.setattr(scheduler, "queue_reminders", reminders)
    monkeypatch.setattr(scheduler, "queue_stale_ideas", ideas)
    return done


async def test_reminders_run_once_a_day_after_their_hour_in_local_time(
    fresh_sessions: async_sessionmaker[AsyncSession], jobs: dict[str, list[Any]]
) -> None:
    # 07:30 UTC on 29 March 2026 is 08:30 in London (summer time began that night).
    before = _utc(2026, 3, 29, 6, 30)  # 07:30 London
    after = _utc(2026, 3, 29, 7, 30)
    clock = {"now": before}
    schedules = scheduler.Scheduler(
        fresh_sessions, zone=LONDON, reminders_at=time(8), clock=lambda: clock["now"]
    )
    # The day before's run is due at 07:30 too; only count what is claimed from now on.
    await schedules.check()
    jobs["reminders"].clear()
    for _ in range(3):  # every check that day, on any replica
        clock["now"] = after
        await schedules.check()
    assert [d.isoformat() for d in jobs["reminders"]] == ["2026-03-29"]
    assert "2026-03-29" in await _runs(fresh_sessions, scheduler.REMINDER_JOB)


async def test_the_ideas_call_out_runs_once_a_week_on_monday_morning(
    fresh_sessions: async_sessionmaker[AsyncSession], jobs: dict[str, list[Any]]
) -> None:
    clock = {"now": _utc(2026, 11, 28, 12)}  # Saturday: last Monday's is due (5 days ago)...
    schedules = scheduler.Scheduler(
        fresh_sessions, zone=LONDON, reminders_at=None, clock=lambda: clock["now"]
    )
    await schedules.check()
    assert jobs["ideas"] == [], "...but more than a day late: skipped"
    for hours in (0, 1, 5, 30):
        clock["now"] = _utc(2026, 11, 30, 9) + timedelta(hours=hours)
        await schedules.check()
    assert [d.isoformat() for d in jobs["ideas"]] == ["2026-11-30"]


async def test_a_failed_run_gives_its_period_back(
    fresh_sessions: async_sessionmaker[AsyncSession],
    jobs: dict[str, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database blip")

    monkeypatch.setattr(scheduler, "queue_reminders", failing)
    schedules = scheduler.Scheduler(
        fresh_sessions, zone=LONDON, reminders_at=time(8), clock=lambda: _utc(2026, 11, 30, 9)
    )
    with pytest.raises(RuntimeError):
        await schedules.check()
    assert await _runs(fresh_sessions, scheduler.REMINDER_JOB) == [], "the next check runs it again"


# --- the nightly retention purge ----------------------------------------------------------------

PURGE_POLICY = RetentionPolicy(
    outbox=timedelta(days=30),
    dialog_state=timedelta(days=30),
    session_notes_months=24,
    idea_people_years=2,
    idle_staff=timedelta(days=365),
    audit_years=6,
)


async def _purge_entries(sessions: async_sessionmaker[AsyncSession]) -> list[datetime]:
    async with sessions() as session:
        entries = await audit.list_entries(session, action=retention.AUDIT_ACTION)
    return sorted(entry.at for entry in entries)


async def test_the_retention_purge_runs_once_a_night_at_its_local_time(
    fresh_sessions: async_sessionmaker[AsyncSession], jobs: dict[str, list[Any]]
) -> None:
    async with transaction(fresh_sessions) as session:
        session.add(BotState(key="stale", document="{}", etag="1", updated_at=_utc(2026, 5, 1)))
    clock = {"now": _utc(2026, 6, 1, 3, 0)}  # 04:00 in London (summer time)
    replicas = [
        scheduler.Scheduler(
            fresh_sessions,
            zone=LONDON,
            reminders_at=None,
            purge_at=time(3, 30),
            retention_policy=PURGE_POLICY,
            clock=lambda: clock["now"],
        )
        for _ in range(2)
    ]
    assert [(await replica.check()).purge_run for replica in replicas] == [True, False]
    async with fresh_sessions() as session:
        assert await session.get(BotState, "stale") is None, "the purge itself ran"
    # Every later check, on either replica, up to 03:29 the next night runs nothing more...
    for moment in (_utc(2026, 6, 1, 3, 1), _utc(2026, 6, 1, 12), _utc(2026, 6, 2, 2, 29)):
        clock["now"] = moment
        for replica in replicas:
            assert not (await replica.check()).purge_run
    # ...and at 03:30 the next night one of them runs it again.
    clock["now"] = _utc(2026, 6, 2, 2, 30)
    assert [(await replica.check()).purge_run for replica in reversed(replicas)] == [True, False]
    assert await _runs(fresh_sessions, scheduler.PURGE_JOB) == ["2026-06-01", "2026-06-02"]
    assert await _purge_entries(fresh_sessions) == [
        _utc(2026, 6, 1, 3, 0),
        _utc(2026, 6, 2, 2, 30),
    ]


async def test_the_purge_can_be_turned_off(
    fresh_sessions: async_sessionmaker[AsyncSession], jobs: dict[str, list[Any]]
) -> None:
    schedules = scheduler.Scheduler(
        fresh_sessions,
        zone=LONDON,
        reminders_at=None,
        purge_at=None,
        retention_policy=PURGE_POLICY,
        clock=lambda: _utc(2026, 6, 1, 12),
    )
    assert not (await schedules.check()).purge_run
    assert await _purge_entries(fresh_sessions) == []
