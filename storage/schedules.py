"""When scheduled things are due: cron expressions read in the council's time zone.

Pure time arithmetic (croniter); bot/scheduler.py and bot/digests.py use it.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo

from croniter import croniter

# A run found more than this late (every replica was down) is skipped, not made.
MISSED_GRACE = timedelta(days=1)


def weekly_cron(weekday: int, at: str) -> str:
    """The cron expression of a weekly time: weekday 0 is Monday, `at` is "HH:MM"."""
    hour, minute = (int(part) for part in at.split(":"))
    return f"{minute} {hour} * * {(weekday + 1) % 7}"  # cron counts from Sunday


def daily_cron(at: time) -> str:
    return f"{at.minute} {at.hour} * * *"


def last_due(cron: str, *, now: datetime, zone: tzinfo) -> datetime:
    """The latest time at or before `now` that `cron`, read in `zone`, names (UTC).

    A local time the spring change skips (01:30 on the last Sunday of March in London)
    falls on the first minute after the gap; one the autumn change repeats is due at its
    first occurrence, and the second finds the run made already.
    """
    local_now = now.astimezone(zone)
    # croniter's get_prev excludes `now` itself; a minute's precision is all a cron has.
    moment = croniter(cron, local_now + timedelta(seconds=1)).get_prev(datetime)
    return moment.astimezone(UTC)


def iso_week(moment: datetime, zone: tzinfo) -> str:
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def is_missed(due: datetime, now: datetime) -> bool:
    return now - due > MISSED_GRACE
