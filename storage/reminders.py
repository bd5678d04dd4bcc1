"""Which Making It Real reminders are due on a given day, and the key each is sent under.

This only works them out: the caller (bot/reminders.py) puts each in the outbox, whose unique
dedupe key makes a second run on the same day (or in the same week) send nothing more. The
keys carry the rule's period: a session is reminded about once ever, "nothing scheduled" and
"overdue actions" once per ISO week. Reminders for people the bot cannot reach are returned
too, so the caller can report them rather than skip them silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.mir import PersonActivity, action_order, action_view, people_activity, session_view
from storage.views import ActionView, SessionView

KINDS = ("log_session", "nothing_scheduled", "overdue_actions")

# "How did it go?" is asked from the day after a session; a run that was missed (a holiday,
# the server down) catches up for at most a week, after which the session just awaits its
# log in `my sessions` and the leader's view.
LOG_REMINDER_DAYS = 7


@dataclass(frozen=True)
class DueReminder:
    kind: str  # "log_session" | "nothing_scheduled" | "overdue_actions"
    person_id: int
    dedupe_key: str
    session: SessionView | None = None  # log_session: the session to log
    actions: tuple[ActionView, ...] = ()  # overdue_actions: the overdue ones, most overdue first


async def due_reminders(session: AsyncSession, *, today: date) -> list[DueReminder]:
    """Today's reminders, person by person (in name order): the sessions to log (earliest
    first), then "nothing scheduled", then overdue actions. Change Makers who turned
    reminders off (`stop reminders`) get none of them."""
    due: list[DueReminder] = []
    for activity in await people_activity(session):
        if activity.person.reminders_enabled:
            due.extend(reminders_for(activity, today=today))
    return due


def reminders_for(activity: PersonActivity, *, today: date) -> list[DueReminder]:
    person_id = activity.person.id or 0
    week = _iso_week(today)
    due = [
        DueReminder(
            kind="log_session",
            person_id=person_id,
            dedupe_key=f"mir-log:{mir_session.id}",
            session=session_view(mir_session, activity.person),
        )
        for mir_session in activity.awaiting_log(today)
        if mir_session.session_date >= today - timedelta(days=LOG_REMINDER_DAYS)
    ]
    if activity.has_nothing_scheduled():
        due.append(
            DueReminder(
                kind="nothing_scheduled",
                person_id=person_id,
                dedupe_key=f"mir-nothing-scheduled:{person_id}:{week}",
            )
        )
    sessions = {s.id: s for s in activity.sessions}
    overdue = sorted(
        (
            action_view(a, sessions[a.session_id], today=today)
            for a in activity.overdue_actions(today)
        ),
        key=action_order,
    )
    if overdue:
        due.append(
            DueReminder(
                kind="overdue_actions",
                person_id=person_id,
                dedupe_key=f"mir-overdue:{person_id}:{week}",
                actions=tuple(overdue),
            )
        )
    return due


def _iso_week(day: date) -> str:
    """The ISO year and week, as in 2022-W24 (a week's first days may be in the year before)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
