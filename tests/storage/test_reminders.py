"""Which reminders are due on a day, and their keys: the day after a session (catching up a
week at most), once a week for nothing scheduled and for overdue actions, none for people who
said `stop reminders`, and the keys repeat within their period so the outbox sends once."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import mir, outbox
from storage.db import transaction
from storage.mir import LogSubmission, PersonActivity, ScheduleSubmission
from storage.models import Person, utcnow
from storage.reminders import DueReminder, due_reminders, reminders_for
from tests.support.people import add_person

WEDNESDAY = date(2022, 6, 15)  # ISO week 2022-W24
THURSDAY = WEDNESDAY + timedelta(days=1)
A_WEEK_LATER = THURSDAY + timedelta(days=7)  # 2022-W25


async def _person(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    *,
    role: str = "change_maker",
    leader_id: int | None = None,
    reachable: bool = True,
    reminders_enabled: bool = True,
) -> int:
    """A reachable Change Maker unless told otherwise."""
    return await add_person(
        sessions,
        name,
        role=role,
        leader_id=leader_id,
        reachable=reachable,
        reminders_enabled=reminders_enabled,
    )


async def _schedule(sessions: async_sessionmaker[AsyncSession], person_id: int, day: date) -> int:
    async with transaction(sessions) as session:
        view, _ = await mir.schedule_session(
            session,
            change_maker_id=person_id,
            submission=ScheduleSubmission(
                session_date=day, start_time=time(10), team="Revenues", expected_attendees=8
            ),
            form_id=uuid.uuid4().hex,
        )
    return view.id


async def _log(
    sessions: async_sessionmaker[AsyncSession],
    person_id: int,
    day: date,
    changes: tuple[str, ...] = (),
) -> list[int]:
    async with transaction(sessions) as session:
        _, actions, _ = await mir.log_session(
            session,
            change_maker_id=person_id,
            submission=LogSubmission(
                scheduled_session_id=None,
                held_on=day,
                team="Benefits",
                attendees=6,
                themes="Paperwork",
                changes=changes,
                went_well=None,
                to_change=None,
                rating=4,
            ),
            form_id=uuid.uuid4().hex,
        )
    return [action.id for action in actions]


async def _due(
    sessions: async_sessionmaker[AsyncSession], day: date, people: Collection[int]
) -> list[DueReminder]:
    """The day's reminders for these people only (the shared database holds others)."""
    async with sessions() as session:
        return [r for r in await due_reminders(session, today=day) if r.person_id in people]


@dataclass
class Story:
    """One Change Leader and three Change Makers: Ahmed schedules a session for Wednesday,
    Bea logged Monday's session with three changes (one due Wednesday, one done), Cal does
    nothing and never opened the app."""

    leader: int
    ahmed: int
    bea: int
    cal: int
    ahmeds_session: int
    beas_actions: list[int]

    @property
    def people(self) -> set[int]:
        return {self.leader, self.ahmed, self.bea, self.cal}


@pytest.fixture
async def story(sessions: async_sessionmaker[AsyncSession]) -> Story:
    leader = await _person(sessions, "Lena Leader", role="change_leader")
    ahmed = await _person(sessions, "Ahmed Maker", leader_id=leader)
    bea = await _person(sessions, "Bea Maker", leader_id=leader)
    cal = await _person(sessions, "Cal Maker", leader_id=leader, reachable=False)
    ahmeds_session = await _schedule(sessions, ahmed, WEDNESDAY)
    actions = await _log(sessions, bea, WEDNESDAY - timedelta(days=2), ("Scan", "Log", "Call"))
    async with transaction(sessions) as session:
        await mir.set_action_details(
            session,
            change_maker_id=bea,
            details={actions[0]: ("Sam", WEDNESDAY)},
            today=WEDNESDAY,
        )
        await mir.set_action_status(
            session,
            action_id=actions[1],
            change_maker_id=bea,
            status="done",
            reason=None,
            today=WEDNESDAY,
        )
    return Story(leader, ahmed, bea, cal, ahmeds_session, actions)


def _summary(reminders: list[DueReminder]) -> list[tuple[str, int, str]]:
    return [(r.kind, r.person_id, r.dedupe_key) for r in reminders]


async def test_reminders_on_two_days_in_a_row_and_a_week_later(
    sessions: async_sessionmaker[AsyncSession], story: Story
) -> None:
    # Wednesday: Ahmed's session is today and Bea's action is due today, so neither is late;
    # Cal, who has nothing scheduled, is reminded (though the bot cannot reach him yet).
    wednesday = await _due(sessions, WEDNESDAY, story.people)
    assert _summary(wednesday) == [
        ("nothing_scheduled", story.cal, f"mir-nothing-scheduled:{story.cal}:2022-W24"),
    ]

    # Thursday: "how did it go?" to Ahmed; Bea's action is now overdue; Cal's weekly reminder
    # has the same key as Wednesday's, so the outbox will not send it again.
    thursday = await _due(sessions, THURSDAY, story.people)
    assert _summary(thursday) == [
        ("log_session", story.ahmed, f"mir-log:{story.ahmeds_session}"),
        ("overdue_actions", story.bea, f"mir-overdue:{story.bea}:2022-W24"),
        ("nothing_scheduled", story.cal, f"mir-nothing-scheduled:{story.cal}:2022-W24"),
    ]
    log_reminder, overdue_reminder, _ = thursday
    assert log_reminder.session is not None
    assert (log_reminder.session.id, log_reminder.session.status) == (
        story.ahmeds_session,
        "scheduled",
    )
    assert log_reminder.session.change_maker_name == "Ahmed Maker"
    assert log_reminder.actions == ()
    assert [(a.id, a.text, a.overdue) for a in overdue_reminder.actions] == [
        (story.beas_actions[0], "Scan", True)
    ]
    assert overdue_reminder.session is None

    # A week later: Ahmed's session was never logged, but the catch-up week is over; the
    # weekly reminders come again, under the new week's keys.
    later = await _due(sessions, A_WEEK_LATER, story.people)
    assert _summary(later) == [
        ("overdue_actions", story.bea, f"mir-overdue:{story.bea}:2022-W25"),
        ("nothing_scheduled", story.cal, f"mir-nothing-scheduled:{story.cal}:2022-W25"),
    ]


async def test_running_twice_a_day_and_on_the_next_day_queues_each_reminder_once(
    sessions: async_sessionmaker[AsyncSession], story: Story
) -> None:
    queued: list[str] = []
    for day in (WEDNESDAY, WEDNESDAY, THURSDAY, THURSDAY):
        async with transaction(sessions) as session:
            for reminder in await due_reminders(session, today=day):
                if reminder.person_id not in story.people:
                    continue
                if await outbox.enqueue(
                    session,
                    dedupe_key=reminder.dedupe_key,
                    conversation_id=f"a:test-{reminder.person_id}",
                    payload={"type": "message", "text": reminder.kind},
                    now=utcnow(),
                ):
                    queued.append(reminder.dedupe_key)
    assert queued == [
        f"mir-nothing-scheduled:{story.cal}:2022-W24",
        f"mir-log:{story.ahmeds_session}",
        f"mir-overdue:{story.bea}:2022-W24",
    ]


async def test_a_session_is_reminded_about_from_the_day_after_for_a_week(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await _person(sessions, "Ahmed Maker")
    session_id = await _schedule(sessions, maker, WEDNESDAY)
    expected = ("log_session", maker, f"mir-log:{session_id}")
    for offset, reminded in ((-1, False), (0, False), (1, True), (7, True), (8, False)):
        due = await _due(sessions, WEDNESDAY + timedelta(days=offset), {maker})
        assert (_summary(due) == [expected]) == reminded, offset
        assert all(r.kind == "log_session" for r in due), "a scheduled session is something"

    # Logged: nothing more to remind about.
    async with transaction(sessions) as session:
        await mir.log_session(
            session,
            change_maker_id=maker,
            submission=LogSubmission(
                scheduled_session_id=session_id,
                held_on=WEDNESDAY,
                team="Revenues",
                attendees=5,
                themes="Queues",
                changes=(),
                went_well=None,
                to_change=None,
                rating=3,
            ),
            form_id=uuid.uuid4().hex,
        )
    assert await _due(sessions, THURSDAY, {maker}) == []


async def test_a_cancelled_session_leaves_nothing_scheduled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await _person(sessions, "Cal Maker")
    session_id = await _schedule(sessions, maker, WEDNESDAY)
    assert await _due(sessions, WEDNESDAY, {maker}) == []
    async with transaction(sessions) as session:
        await mir.cancel_session(session, session_id=session_id, change_maker_id=maker)
    assert _summary(await _due(sessions, THURSDAY, {maker})) == [
        ("nothing_scheduled", maker, f"mir-nothing-scheduled:{maker}:2022-W24")
    ]


async def test_stop_reminders_stops_all_three_kinds(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    idle = await _person(sessions, "Dee Idle", reminders_enabled=False)
    busy = await _person(sessions, "Eve Busy", reminders_enabled=False)
    await _schedule(sessions, busy, WEDNESDAY)
    (action,) = await _log(sessions, busy, WEDNESDAY, ("Late one",))
    async with transaction(sessions) as session:
        await mir.set_action_due(
            session, action_id=action, change_maker_id=busy, due=WEDNESDAY, today=WEDNESDAY
        )
    assert await _due(sessions, THURSDAY, {idle, busy}) == []

    # Turned back on, each is due again.
    async with transaction(sessions) as session:
        for person_id in (idle, busy):
            person = await session.get(Person, person_id)
            assert person is not None
            person.reminders_enabled = True
            session.add(person)
    assert sorted((r.person_id, r.kind) for r in await _due(sessions, THURSDAY, {idle, busy})) == (
        sorted([(idle, "nothing_scheduled"), (busy, "log_session"), (busy, "overdue_actions")])
    )


async def test_only_change_makers_are_reminded(sessions: async_sessionmaker[AsyncSession]) -> None:
    leader = await _person(sessions, "Lena Leader", role="change_leader")
    admin = await _person(sessions, "Ada Admin", role="admin")
    assert await _due(sessions, THURSDAY, {leader, admin}) == []


@pytest.mark.parametrize(
    ("day", "week"),
    [
        (date(2021, 1, 3), "2020-W53"),  # a Sunday: still the last ISO week of 2020
        (date(2021, 1, 4), "2021-W01"),
        (date(2024, 12, 30), "2025-W01"),  # a Monday: the first ISO week of 2025
    ],
)
def test_weekly_keys_use_the_iso_year_and_week(day: date, week: str) -> None:
    idle = PersonActivity(
        person=Person(id=41, name="Cal Maker", roles=["change_maker"], in_roster=True),
        sessions=(),
        actions=(),
        reachable=False,
    )
    assert _summary(reminders_for(idle, today=day)) == [
        ("nothing_scheduled", 41, f"mir-nothing-scheduled:41:{week}")
    ]
