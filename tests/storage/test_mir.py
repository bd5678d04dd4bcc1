"""Making It Real rules: every form check (the reason keyed by its input, what was typed kept),
sessions and actions only ever touched by their own Change Maker, repeated form presses
stored once, and the leader's view and the programme's figures for a small known story."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, time, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import mir
from storage.db import create_engine, session_factory, transaction
from storage.mir import LogSubmission, NotAllowed, ScheduleSubmission
from storage.models import MirAction, Person
from storage.views import ActionView
from tests.support.people import add_person

T = TypeVar("T")

# A Wednesday (ISO week 2022-W24). Nothing reads the clock, so the tests choose the day.
TODAY = date(2022, 6, 15)
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)


# --- checking the schedule form --------------------------------------------------------------

GOOD_SCHEDULE = {"date": "2022-06-20", "time": "10:30", "team": "Revenues", "expected": "8"}


def _schedule_errors(**changed: object) -> dict[str, str]:
    submission, entries, errors = mir.check_schedule_form({**GOOD_SCHEDULE, **changed}, today=TODAY)
    assert (submission is None) == bool(errors)
    return errors


def test_a_good_schedule_form_gives_its_submission() -> None:
    submission, entries, errors = mir.check_schedule_form(
        {**GOOD_SCHEDULE, "team": "  Revenues   and\nBenefits ", "action": "x"}, today=TODAY
    )
    assert errors == {}
    assert submission == ScheduleSubmission(
        session_date=date(2022, 6, 20),
        start_time=time(10, 30),
        team="Revenues and Benefits",
        expected_attendees=8,
    )
    assert entries == {**GOOD_SCHEDULE, "team": "  Revenues   and\nBenefits "}


@pytest.mark.parametrize(
    ("day", "refused"),
    [(YESTERDAY, True), (TODAY - timedelta(days=400), True), (TODAY, False), (TOMORROW, False)],
)
def test_a_session_is_scheduled_today_or_later(day: date, refused: bool) -> None:
    errors = _schedule_errors(date=day.isoformat())
    assert ("date" in errors) == refused
    if refused:
        assert errors["date"] == "The date can't be in the past: choose today or a later date."


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Choose the date of the session."),
        ("   ", "Choose the date of the session."),
        ("2022-02-30", "The date must be a real date written YYYY-MM-DD."),
        ("20/06/2022", "The date must be a real date written YYYY-MM-DD."),
        ("20220620", "The date must be a real date written YYYY-MM-DD."),
        ("next tuesday", "The date must be a real date written YYYY-MM-DD."),
    ],
)
def test_a_schedule_date_must_be_a_date(typed: str, reason: str) -> None:
    assert _schedule_errors(date=typed) == {"date": reason}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("10:30", time(10, 30)), ("9:05", time(9, 5)), ("23:59:00", time(23, 59)), ("00:00", time())],
)
def test_a_start_time_is_hours_and_minutes(typed: str, expected: time) -> None:
    submission, _, errors = mir.check_schedule_form({**GOOD_SCHEDULE, "time": typed}, today=TODAY)
    assert errors == {}
    assert submission is not None and submission.start_time == expected


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Choose the time the session starts."),
        ("24:00", "The start time must be a time written HH:MM, for example 14:30."),
        ("10:60", "The start time must be a time written HH:MM, for example 14:30."),
        ("noon", "The start time must be a time written HH:MM, for example 14:30."),
    ],
)
def test_a_start_time_is_required_and_checked(typed: str, reason: str) -> None:
    assert _schedule_errors(time=typed) == {"time": reason}


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Enter the team or service area (1 to 120 characters)."),
        (" \n ", "Enter the team or service area (1 to 120 characters)."),
        ("x" * 121, "The team or service area must be 120 characters or fewer (this is 121)."),
    ],
)
def test_the_team_is_1_to_120_characters(typed: str, reason: str) -> None:
    assert _schedule_errors(team=typed) == {"team": reason}
    assert _schedule_errors(team="x" * 120) == {}


@pytest.mark.parametrize("typed", ["0", "501", "-1", "2.5", "eight", "", "1e2", True])
def test_expected_attendees_are_a_whole_number_from_1_to_500(typed: object) -> None:
    assert _schedule_errors(expected=typed) == {
        "expected": "Expected attendees must be a whole number from 1 to 500."
    }


@pytest.mark.parametrize(("typed", "count"), [("1", 1), (" 500 ", 500), ("8.0", 8), (8, 8)])
def test_expected_attendees_accept_what_input_number_sends(typed: object, count: int) -> None:
    submission, _, errors = mir.check_schedule_form(
        {**GOOD_SCHEDULE, "expected": typed}, today=TODAY
    )
    assert errors == {}
    assert submission is not None and submission.expected_attendees == count


def test_a_refused_schedule_form_keeps_everything_typed_and_every_reason() -> None:
    typed = {"date": "2022-06-14", "time": "later", "team": "", "expected": "0"}
    submission, entries, errors = mir.check_schedule_form(typed, today=TODAY)
    assert submission is None
    assert entries == typed
    assert set(errors) == {"date", "time", "team", "expected"}


def test_entries_are_strings_whatever_the_card_sent() -> None:
    _, entries, _ = mir.check_schedule_form({"expected": 12, "team": None}, today=TODAY)
    assert entries == {"date": "", "time": "", "team": "", "expected": "12"}


# --- checking the log form -------------------------------------------------------------------

GOOD_LOG = {
    "scheduled": "",
    "date": "2022-06-14",
    "team": "Benefits",
    "attendees": "6",
    "themes": "Paperwork, phone queues",
    "changes": "Scan forms at the counter\n\n  One shared contact log  \n",
    "went_well": "Everyone spoke",
    "to_change": "",
    "rating": "4",
}


def _log_errors(scheduled_ids: frozenset[int] = frozenset(), **changed: object) -> dict[str, str]:
    submission, _, errors = mir.check_log_form(
        {**GOOD_LOG, **changed}, today=TODAY, scheduled_ids=scheduled_ids
    )
    assert (submission is None) == bool(errors)
    return errors


def test_a_good_log_form_gives_its_submission() -> None:
    submission, entries, errors = mir.check_log_form(GOOD_LOG, today=TODAY, scheduled_ids={7})
    assert errors == {}
    assert entries == GOOD_LOG
    assert submission == LogSubmission(
        scheduled_session_id=None,
        held_on=date(2022, 6, 14),
        team="Benefits",
        attendees=6,
        themes="Paperwork, phone queues",
        changes=("Scan forms at the counter", "One shared contact log"),
        went_well="Everyone spoke",
        to_change=None,
        rating=4,
    )


def test_a_scheduled_session_offered_is_taken() -> None:
    submission, _, errors = mir.check_log_form(
        {**GOOD_LOG, "scheduled": "7"}, today=TODAY, scheduled_ids={3, 7}
    )
    assert errors == {}
    assert submission is not None and submission.scheduled_session_id == 7


@pytest.mark.parametrize("typed", ["8", "seven", "-7", "99999999999999", "0"])
def test_a_session_that_is_not_one_of_the_callers_scheduled_ones_is_refused(typed: str) -> None:
    assert _log_errors(frozenset({7}), scheduled=typed) == {
        "scheduled": "That session is not one of your scheduled sessions any more: choose "
        "another, or “Not one I scheduled”."
    }


@pytest.mark.parametrize(
    ("day", "refused"),
    [(TOMORROW, True), (TODAY + timedelta(days=30), True), (TODAY, False), (YESTERDAY, False)],
)
def test_a_session_is_logged_as_held_today_or_before(day: date, refused: bool) -> None:
    errors = _log_errors(date=day.isoformat())
    assert ("date" in errors) == refused
    if refused:
        assert errors["date"] == (
            "The date held can't be in the future: choose today or an earlier date."
        )


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Choose the date the session was held."),
        ("2022-13-01", "The date must be a real date written YYYY-MM-DD."),
    ],
)
def test_the_date_held_must_be_a_date(typed: str, reason: str) -> None:
    assert _log_errors(date=typed) == {"date": reason}


def test_the_logged_team_is_1_to_120_characters() -> None:
    assert _log_errors(team="  ") == {
        "team": "Enter the team or service area (1 to 120 characters)."
    }
    assert set(_log_errors(team="t" * 121)) == {"team"}


@pytest.mark.parametrize("typed", ["0", "-3", "501", "1.5", "", "lots"])
def test_attendees_are_a_whole_number_from_1_to_500(typed: str) -> None:
    assert _log_errors(attendees=typed) == {
        "attendees": "Attendees must be a whole number from 1 to 500."
    }


@pytest.mark.parametrize("typed", ["", "   ", " , ;\n,"])
def test_themes_cannot_be_empty(typed: str) -> None:
    assert _log_errors(themes=typed) == {
        "themes": "Enter the themes discussed (1 to 1,000 characters), separated by commas."
    }


def test_themes_are_at_most_1000_characters() -> None:
    assert _log_errors(themes="t" * 1000) == {}
    assert _log_errors(themes="t" * 1001) == {
        "themes": "Themes must be 1,000 characters or fewer (this is 1,001)."
    }


def test_changes_are_optional_one_per_line_at_most_15() -> None:
    submission, _, errors = mir.check_log_form(
        {**GOOD_LOG, "changes": ""}, today=TODAY, scheduled_ids=()
    )
    assert errors == {} and submission is not None and submission.changes == ()
    fifteen = "\r\n".join(f"Change {n}" for n in range(15))
    submission, _, errors = mir.check_log_form(
        {**GOOD_LOG, "changes": fifteen}, today=TODAY, scheduled_ids=()
    )
    assert submission is not None and len(submission.changes) == 15
    sixteen = fifteen + "\n\nChange 15"
    assert _log_errors(changes=sixteen) == {
        "changes": "List at most 15 changes, one per line (this has 16)."
    }


def test_each_change_is_at_most_300_characters() -> None:
    assert _log_errors(changes="a\n" + "b" * 300) == {}
    assert _log_errors(changes="a\n\n" + "b" * 301) == {
        "changes": "Each change must be 300 characters or fewer: line 3 is longer."
    }
    assert _log_errors(changes="c" * 301 + "\nshort\n" + "d" * 400) == {
        "changes": "Each change must be 300 characters or fewer: lines 1 and 3 are longer."
    }


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("went_well", "What went well must be 1,000 characters or fewer (this is 1,001)."),
        ("to_change", "What to change must be 1,000 characters or fewer (this is 1,001)."),
    ],
)
def test_feedback_is_optional_and_at_most_1000_characters(key: str, reason: str) -> None:
    assert _log_errors(**{key: "f" * 1000}) == {}
    assert _log_errors(**{key: "f" * 1001}) == {key: reason}
    submission, _, _ = mir.check_log_form({**GOOD_LOG, key: "  "}, today=TODAY, scheduled_ids=())
    assert submission is not None and getattr(submission, key) is None


@pytest.mark.parametrize("typed", ["", "0", "6", "4.5", "good", None])
def test_a_rating_from_1_to_5_is_required(typed: object) -> None:
    assert _log_errors(rating=typed) == {
        "rating": "Choose a rating from 1 (poor) to 5 (excellent)."
    }


@pytest.mark.parametrize("rating", ["1", "2", "3", "4", "5", 5])
def test_every_rating_from_1_to_5_is_taken(rating: object) -> None:
    assert _log_errors(rating=rating) == {}


def test_a_refused_log_form_keeps_everything_typed() -> None:
    typed = {
        "scheduled": "12",
        "date": TOMORROW.isoformat(),
        "team": "Planning",
        "attendees": "0",
        "themes": "",
        "changes": "Keep this line\n" + "x" * 301,
        "went_well": "w" * 1001,
        "to_change": "t" * 1001,
        "rating": "",
    }
    submission, entries, errors = mir.check_log_form(typed, today=TODAY, scheduled_ids={5})
    assert submission is None
    assert entries == typed
    assert set(errors) == set(typed) - {"team"}


# --- action details, drop reasons, due dates ---------------------------------------------------


def test_action_details_are_optional_and_blank_clears() -> None:
    details, entries, errors = mir.check_action_details(
        {
            "owner_1": "  Sam   Patel ",
            "due_1": "2022-07-01",
            "owner_2": "",
            "due_2": "",
            "owner_9": "someone else's action",
        },
        action_ids={1, 2, 3},
    )
    assert errors == {}
    assert details == {1: ("Sam Patel", date(2022, 7, 1)), 2: (None, None), 3: (None, None)}
    assert entries == {
        "owner_1": "  Sam   Patel ",
        "due_1": "2022-07-01",
        "owner_2": "",
        "due_2": "",
        "owner_3": "",
        "due_3": "",
    }


def test_action_details_are_checked_per_input() -> None:
    typed = {"owner_1": "o" * 121, "due_1": "2022-07-01", "owner_2": "Sam", "due_2": "1 July"}
    details, entries, errors = mir.check_action_details(typed, action_ids=[1, 2])
    assert details is None
    assert entries == typed
    assert errors == {
        "owner_1": "The owner's name must be 120 characters or fewer (this is 121).",
        "due_2": "The due date must be a real date written YYYY-MM-DD.",
    }
    assert mir.check_action_details({"owner_1": "o" * 120}, action_ids=[1])[2] == {}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("  No budget this year ", ("No budget this year", None)),
        ("r" * 500, ("r" * 500, None)),
        ("", (None, "Say why the action is dropped (1 to 500 characters).")),
        ("  ", (None, "Say why the action is dropped (1 to 500 characters).")),
        (None, (None, "Say why the action is dropped (1 to 500 characters).")),
        ("r" * 501, (None, "The reason must be 500 characters or fewer (this is 501).")),
    ],
)
def test_a_drop_reason_is_1_to_500_characters(
    typed: object, expected: tuple[str | None, str | None]
) -> None:
    assert mir.check_drop_reason(typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("2022-07-01", (date(2022, 7, 1), None)),
        (" 2021-01-31 ", (date(2021, 1, 31), None)),
        ("", (None, "Choose the new due date.")),
        (None, (None, "Choose the new due date.")),
        ("2022-06-31", (None, "The due date must be a real date written YYYY-MM-DD.")),
        ("soon", (None, "The due date must be a real date written YYYY-MM-DD.")),
    ],
)
def test_a_due_date_must_be_a_date(typed: object, expected: tuple[date | None, str | None]) -> None:
    assert mir.check_due_date(typed) == expected


def test_themes_are_split_on_commas_semicolons_and_lines() -> None:
    assert mir.split_themes("Paperwork, Duplicate  data entry; phone queues\n\n,paperwork") == [
        "Paperwork",
        "Duplicate data entry",
        "phone queues",
    ]
    assert mir.split_themes(" ; , \n") == []


def test_top_themes_count_sessions_most_first_ties_by_name_at_most_five() -> None:
    texts = [
        "Phone queues, paperwork, PAPERWORK",
        "paperwork; Zebra crossings",
        "Alpha\nBeta\nGamma",
        "phone QUEUES, Beta",
    ]
    # A session naming a theme twice counts once; "Zebra crossings" is the sixth.
    assert mir.top_themes(texts) == (
        ("Beta", 2),
        ("paperwork", 2),
        ("Phone queues", 2),
        ("Alpha", 1),
        ("Gamma", 1),
    )


# --- people and sessions in the database ---------------------------------------------------------


async def _call(
    sessions: async_sessionmaker[AsyncSession],
    function: Callable[..., Awaitable[T]],
    /,
    **arguments: Any,
) -> T:
    async with transaction(sessions) as session:
        return await function(session, **arguments)


def scheduled_for(day: date, *, team: str = "Revenues", expected: int = 8) -> ScheduleSubmission:
    return ScheduleSubmission(
        session_date=day, start_time=time(10, 0), team=team, expected_attendees=expected
    )


def held_on(
    day: date,
    *,
    scheduled: int | None = None,
    changes: tuple[str, ...] = (),
    themes: str = "Paperwork",
    rating: int = 4,
    went_well: str | None = None,
    to_change: str | None = None,
    team: str = "Benefits",
) -> LogSubmission:
    return LogSubmission(
        scheduled_session_id=scheduled,
        held_on=day,
        team=team,
        attendees=6,
        themes=themes,
        changes=changes,
        went_well=went_well,
        to_change=to_change,
        rating=rating,
    )


def form() -> str:
    return uuid.uuid4().hex


async def schedule(
    sessions: async_sessionmaker[AsyncSession], person_id: int, day: date, **extra: Any
) -> int:
    view, created = await _call(
        sessions,
        mir.schedule_session,
        change_maker_id=person_id,
        submission=scheduled_for(day, **extra),
        form_id=form(),
    )
    assert created
    return view.id


async def log(
    sessions: async_sessionmaker[AsyncSession], person_id: int, day: date, **extra: Any
) -> tuple[int, list[ActionView]]:
    view, actions, created = await _call(
        sessions,
        mir.log_session,
        change_maker_id=person_id,
        submission=held_on(day, **extra),
        form_id=form(),
    )
    assert created
    return view.id, actions


async def test_a_session_is_scheduled_once_per_form(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Ahmed Maker")
    form_id = form()
    first, created = await _call(
        sessions,
        mir.schedule_session,
        change_maker_id=maker,
        submission=scheduled_for(TOMORROW),
        form_id=form_id,
    )
    assert created
    assert (first.status, first.session_date, first.start_time) == (
        "scheduled",
        TOMORROW,
        time(10, 0),
    )
    assert (first.team, first.expected_attendees, first.change_maker_name) == (
        "Revenues",
        8,
        "Ahmed Maker",
    )
    again, created = await _call(
        sessions,
        mir.schedule_session,
        change_maker_id=maker,
        submission=scheduled_for(TOMORROW + timedelta(days=3)),
        form_id=form_id,
    )
    assert not created and again == first
    assert await _call(sessions, mir.scheduled_sessions, change_maker_id=maker) == [first]

    someone_else = await add_person(sessions, "Bea Maker")
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.schedule_session,
            change_maker_id=someone_else,
            submission=scheduled_for(TOMORROW),
            form_id=form_id,
        )


@pytest.mark.parametrize("role", [None, "change_leader", "admin"])
async def test_only_change_makers_schedule_or_log(
    sessions: async_sessionmaker[AsyncSession], role: str | None
) -> None:
    person = await add_person(sessions, "Not A Maker", role=role)
    with pytest.raises(NotAllowed):
        await schedule(sessions, person, TOMORROW)
    with pytest.raises(NotAllowed):
        await log(sessions, person, YESTERDAY)
    assert await _call(sessions, mir.my_sessions, change_maker_id=person) == []


async def test_an_unknown_person_is_not_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(mir.NotFound):
        await schedule(sessions, 2_000_000_000, TOMORROW)


async def test_sessions_are_listed_in_date_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, None, email=f"nameless.{uuid.uuid4().hex}@example.org")
    later = await schedule(sessions, maker, TODAY + timedelta(days=10))
    past = await schedule(sessions, maker, TODAY - timedelta(days=3))  # awaiting its log
    soon = await schedule(sessions, maker, TOMORROW)
    cancelled = await schedule(sessions, maker, TODAY + timedelta(days=2))
    await _call(sessions, mir.cancel_session, session_id=cancelled, change_maker_id=maker)
    held, _ = await log(sessions, maker, TODAY - timedelta(days=20))

    scheduled = await _call(sessions, mir.scheduled_sessions, change_maker_id=maker)
    assert [s.id for s in scheduled] == [past, soon, later]
    assert scheduled[0].change_maker_name.startswith("nameless."), "no name: the email"
    mine = await _call(sessions, mir.my_sessions, change_maker_id=maker)
    assert [s.id for s in mine] == [later, soon, past, held]
    assert [s.status for s in mine] == ["scheduled", "scheduled", "scheduled", "held"]


async def test_a_session_is_rescheduled_and_cancelled_only_by_its_change_maker(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Ahmed Maker")
    other = await add_person(sessions, "Olu Other")
    session_id = await schedule(sessions, maker, TOMORROW)
    new_plan = scheduled_for(TODAY + timedelta(days=9), team="Planning", expected=12)

    for function, extra in (
        (mir.reschedule_session, {"submission": new_plan}),
        (mir.cancel_session, {}),
        (mir.get_session, {}),
        (mir.session_actions, {"today": TODAY}),
    ):
        for session_id_asked, person in ((session_id, other), (0, maker), (2**40, maker)):
            with pytest.raises(NotAllowed):
                await _call(
                    sessions,
                    function,
                    session_id=session_id_asked,
                    change_maker_id=person,
                    **extra,
                )
    unchanged = await _call(sessions, mir.get_session, session_id=session_id, change_maker_id=maker)
    assert unchanged.session_date == TOMORROW

    moved = await _call(
        sessions,
        mir.reschedule_session,
        session_id=session_id,
        change_maker_id=maker,
        submission=new_plan,
    )
    assert (moved.id, moved.session_date, moved.team, moved.expected_attendees) == (
        session_id,
        TODAY + timedelta(days=9),
        "Planning",
        12,
    )
    cancelled = await _call(
        sessions, mir.cancel_session, session_id=session_id, change_maker_id=maker
    )
    assert cancelled.status == "cancelled"
    again = await _call(sessions, mir.cancel_session, session_id=session_id, change_maker_id=maker)
    assert again == cancelled, "a second press changes nothing"
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.reschedule_session,
            session_id=session_id,
            change_maker_id=maker,
            submission=new_plan,
        )
    assert await _call(sessions, mir.my_sessions, change_maker_id=maker) == []


async def test_a_held_session_cannot_be_rescheduled_or_cancelled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Ahmed Maker")
    held, _ = await log(sessions, maker, YESTERDAY)
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.reschedule_session,
            session_id=held,
            change_maker_id=maker,
            submission=scheduled_for(TOMORROW),
        )
    with pytest.raises(NotAllowed):
        await _call(sessions, mir.cancel_session, session_id=held, change_maker_id=maker)
    view = await _call(sessions, mir.get_session, session_id=held, change_maker_id=maker)
    assert view.status == "held"


async def test_a_scheduled_session_becomes_held_with_one_action_per_change(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Bea Maker")
    planned = await schedule(sessions, maker, TODAY - timedelta(days=2), team="Planned team")
    changes = ("Scan forms at the counter", "One shared contact log", "Call-back slots")
    submission = held_on(
        YESTERDAY,
        scheduled=planned,
        changes=changes,
        themes="Paperwork, phone queues",
        went_well="Everyone spoke",
        to_change="Shorter introduction",
        rating=5,
    )
    form_id = form()
    view, actions, created = await _call(
        sessions, mir.log_session, change_maker_id=maker, submission=submission, form_id=form_id
    )
    assert created
    assert view.id == planned, "the scheduled session itself became held"
    assert (view.status, view.session_date, view.team, view.attendees) == (
        "held",
        YESTERDAY,
        "Benefits",
        6,
    )
    assert view.start_time == time(10, 0) and view.expected_attendees == 8, "the plan is kept"
    assert (view.themes, view.went_well, view.to_change, view.rating) == (
        "Paperwork, phone queues",
        "Everyone spoke",
        "Shorter introduction",
        5,
    )
    assert [a.text for a in actions] == list(changes)
    assert {(a.session_id, a.session_date, a.session_team) for a in actions} == {
        (planned, YESTERDAY, "Benefits")
    }
    assert {(a.status, a.owner, a.due_date, a.overdue) for a in actions} == {
        ("open", None, None, False)
    }
    assert await _call(sessions, mir.scheduled_sessions, change_maker_id=maker) == []

    # The button pressed again: nothing more is stored.
    again, again_actions, created = await _call(
        sessions, mir.log_session, change_maker_id=maker, submission=submission, form_id=form_id
    )
    assert not created and again == view and again_actions == actions
    stored = await _call(
        sessions, mir.session_actions, session_id=planned, change_maker_id=maker, today=TODAY
    )
    assert stored == actions
    assert [s.id for s in await _call(sessions, mir.my_sessions, change_maker_id=maker)] == [
        planned
    ]

    # Another form for the same (now held) session.
    with pytest.raises(NotAllowed):
        await _call(
            sessions, mir.log_session, change_maker_id=maker, submission=submission, form_id=form()
        )


async def test_a_session_not_scheduled_is_logged_as_a_new_held_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Bea Maker")
    planned = await schedule(sessions, maker, TOMORROW)
    held, actions = await log(sessions, maker, TODAY)
    assert held != planned and actions == []
    statuses = {
        s.id: s.status for s in await _call(sessions, mir.my_sessions, change_maker_id=maker)
    }
    assert statuses == {planned: "scheduled", held: "held"}


async def test_someone_elses_scheduled_session_cannot_be_logged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Bea Maker")
    other = await add_person(sessions, "Olu Other")
    theirs = await schedule(sessions, other, YESTERDAY)
    with pytest.raises(NotAllowed):
        await log(sessions, maker, YESTERDAY, scheduled=theirs, changes=("x",))
    form_id = form()
    await _call(
        sessions,
        mir.log_session,
        change_maker_id=other,
        submission=held_on(YESTERDAY),
        form_id=form_id,
    )
    with pytest.raises(NotAllowed):  # their form id, replayed by someone else
        await _call(
            sessions,
            mir.log_session,
            change_maker_id=maker,
            submission=held_on(YESTERDAY),
            form_id=form_id,
        )
    assert await _call(sessions, mir.my_sessions, change_maker_id=maker) == []
    view = await _call(sessions, mir.get_session, session_id=theirs, change_maker_id=other)
    assert view.status == "scheduled"


async def test_owners_and_due_dates_are_set_only_on_the_callers_actions(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Bea Maker")
    other = await add_person(sessions, "Olu Other")
    held, actions = await log(sessions, maker, YESTERDAY, changes=("First", "Second"))
    _, other_actions = await log(sessions, other, YESTERDAY, changes=("Theirs",))
    first, second = (a.id for a in actions)

    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.set_action_details,
            change_maker_id=maker,
            details={first: ("Sam", TOMORROW), other_actions[0].id: ("Me", TOMORROW)},
            today=TODAY,
        )
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.set_action_details,
            change_maker_id=maker,
            details={first: ("Sam", TOMORROW), 2**40: (None, None)},
            today=TODAY,
        )
    untouched = await _call(
        sessions, mir.session_actions, session_id=held, change_maker_id=maker, today=TODAY
    )
    assert untouched == actions, "nothing changed when one action was not theirs"

    saved = await _call(
        sessions,
        mir.set_action_details,
        change_maker_id=maker,
        details={second: (None, YESTERDAY), first: ("Sam Patel", TOMORROW)},
        today=TODAY,
    )
    assert [(a.id, a.owner, a.due_date, a.overdue) for a in saved] == [
        (first, "Sam Patel", TOMORROW, False),
        (second, None, YESTERDAY, True),
    ]
    cleared = await _call(
        sessions,
        mir.set_action_details,
        change_maker_id=maker,
        details={first: (None, None)},
        today=TODAY,
    )
    assert [(a.owner, a.due_date) for a in cleared] == [(None, None)]


async def test_my_actions_most_pressing_first(sessions: async_sessionmaker[AsyncSession]) -> None:
    maker = await add_person(sessions, "Bea Maker")
    _, older = await log(sessions, maker, TODAY - timedelta(days=30), changes=("o1", "o2", "o3"))
    _, newer = await log(
        sessions, maker, YESTERDAY, changes=("n1", "n2", "n3", "n4", "n5", "n6", "n7")
    )
    by_text = {a.text: a.id for a in older + newer}
    due = {
        "o1": None,  # undated, oldest
        "o2": TODAY - timedelta(days=2),  # overdue
        "o3": TODAY + timedelta(days=5),
        "n1": TODAY - timedelta(days=9),  # most overdue
        "n2": TODAY,  # due today: not overdue yet
        "n3": None,
        "n4": TODAY + timedelta(days=5),  # same day as o3, newer
        "n5": YESTERDAY,  # in progress and overdue
        "n6": YESTERDAY,  # done: not listed
        "n7": None,  # dropped: not listed
    }
    await _call(
        sessions,
        mir.set_action_details,
        change_maker_id=maker,
        details={by_text[text]: (None, day) for text, day in due.items()},
        today=TODAY,
    )
    for text, status, reason in (
        ("n5", "in_progress", None),
        ("n6", "done", None),
        ("n7", "dropped", "No budget"),
    ):
        await _call(
            sessions,
            mir.set_action_status,
            action_id=by_text[text],
            change_maker_id=maker,
            status=status,
            reason=reason,
            today=TODAY,
        )

    listed = await _call(sessions, mir.my_actions, change_maker_id=maker, today=TODAY)
    assert [a.text for a in listed] == ["n1", "o2", "n5", "n2", "o3", "n4", "o1", "n3"]
    assert [a.overdue for a in listed] == [True, True, True, False, False, False, False, False]
    assert {a.status for a in listed} == {"open", "in_progress"}
    other = await add_person(sessions, "Olu Other")
    assert await _call(sessions, mir.my_actions, change_maker_id=other, today=TODAY) == []


async def test_action_status_and_due_date_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Bea Maker")
    other = await add_person(sessions, "Olu Other")
    _, (action,) = await log(sessions, maker, YESTERDAY, changes=("Scan forms",))

    for status, reason in (("open", None), ("finished", None), ("dropped", None), ("dropped", " ")):
        with pytest.raises(ValueError):
            await _call(
                sessions,
                mir.set_action_status,
                action_id=action.id,
                change_maker_id=maker,
                status=status,
                reason=reason,
                today=TODAY,
            )
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.set_action_status,
            action_id=action.id,
            change_maker_id=other,
            status="done",
            reason=None,
            today=TODAY,
        )
    with pytest.raises(NotAllowed):
        await _call(
            sessions,
            mir.set_action_due,
            action_id=action.id,
            change_maker_id=other,
            due=TOMORROW,
            today=TODAY,
        )

    overdue = await _call(
        sessions,
        mir.set_action_due,
        action_id=action.id,
        change_maker_id=maker,
        due=YESTERDAY,
        today=TODAY,
    )
    assert (overdue.due_date, overdue.overdue) == (YESTERDAY, True)
    started = await _call(
        sessions,
        mir.set_action_status,
        action_id=action.id,
        change_maker_id=maker,
        status="in_progress",
        reason=None,
        today=TODAY,
    )
    assert (started.status, started.overdue) == ("in_progress", True)
    dropped = await _call(
        sessions,
        mir.set_action_status,
        action_id=action.id,
        change_maker_id=maker,
        status="dropped",
        reason="  No budget this year ",
        today=TODAY,
    )
    assert (dropped.status, dropped.status_reason, dropped.overdue) == (
        "dropped",
        "No budget this year",
        False,
    )
    assert await _call(sessions, mir.my_actions, change_maker_id=maker, today=TODAY) == []
    async with sessions() as session:
        row = await session.get(MirAction, action.id)
        assert row is not None and row.status == "dropped"


# --- the leader's view and who may see whom ----------------------------------------------------


async def test_a_leader_sees_their_own_change_makers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leader = await add_person(sessions, "Lena Leader", role="change_leader")
    other_leader = await add_person(sessions, "Olu Otherleader", role="change_leader")
    cal = await add_person(sessions, "cal Maker", leader_id=leader)
    ahmed = await add_person(
        sessions, "Ahmed Maker", leader_id=leader, service_area="Customer Services", reachable=True
    )
    bea = await add_person(sessions, "Bea Maker", leader_id=leader, reachable=True)
    await add_person(sessions, "Someone Else's", leader_id=other_leader)
    await add_person(sessions, "A Staff Member", role=None, leader_id=leader)

    next_one = await schedule(sessions, ahmed, TODAY, team="Revenues")
    await schedule(sessions, ahmed, TODAY + timedelta(days=7))
    await schedule(sessions, ahmed, YESTERDAY)  # awaiting its log
    _, actions = await log(sessions, bea, YESTERDAY, changes=("a", "b", "c"))
    await _call(
        sessions,
        mir.set_action_details,
        change_maker_id=bea,
        details={actions[0].id: (None, YESTERDAY)},
        today=TODAY,
    )
    await _call(
        sessions,
        mir.set_action_status,
        action_id=actions[2].id,
        change_maker_id=bea,
        status="done",
        reason=None,
        today=TODAY,
    )
    cancelled = await schedule(sessions, cal, TOMORROW)
    await _call(sessions, mir.cancel_session, session_id=cancelled, change_maker_id=cal)

    summaries = await _call(sessions, mir.change_maker_summaries, today=TODAY, leader_id=leader)
    assert [s.name for s in summaries] == ["Ahmed Maker", "Bea Maker", "cal Maker"]
    first, second, third = summaries
    assert first.person_id == ahmed and first.service_area == "Customer Services"
    assert first.next_session is not None and first.next_session.id == next_one
    assert (first.sessions_held, first.awaiting_log, first.open_actions) == (0, 1, 0)
    assert (first.overdue_actions, first.reachable, first.nothing_scheduled) == (0, True, False)
    assert second.person_id == bea and second.next_session is None
    assert (second.sessions_held, second.awaiting_log, second.open_actions) == (1, 0, 2)
    assert (second.overdue_actions, second.reachable, second.nothing_scheduled) == (1, True, False)
    assert third.person_id == cal and third.next_session is None
    assert (third.sessions_held, third.awaiting_log, third.open_actions) == (0, 0, 0)
    assert (third.overdue_actions, third.reachable, third.nothing_scheduled) == (0, False, True)

    everyone = await _call(sessions, mir.change_maker_summaries, today=TODAY)
    ids = [s.person_id for s in everyone]
    assert {ahmed, bea, cal} <= set(ids) and leader not in ids
    assert [s.name.casefold() for s in everyone] == sorted(s.name.casefold() for s in everyone)


async def test_only_their_own_leader_or_an_admin_can_view_a_change_maker(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leader = await add_person(sessions, "Lena Leader", role="change_leader")
    other_leader = await add_person(sessions, "Olu Otherleader", role="change_leader")
    maker = await add_person(sessions, "Cal Maker", leader_id=leader)
    # Named as the leader, but no longer a Change Leader in the roster.
    former = await add_person(sessions, "Fay Former", role="change_maker")
    fays_maker = await add_person(sessions, "Gus Maker", leader_id=former)

    async def can_view(viewer: int, subject: int, *, admin: bool = False) -> bool:
        return await _call(
            sessions,
            mir.can_view,
            viewer_id=viewer,
            viewer_is_admin=admin,
            subject_id=subject,
        )

    assert await can_view(leader, maker)
    assert not await can_view(other_leader, maker)
    assert not await can_view(maker, maker)
    assert not await can_view(former, fays_maker)
    assert await can_view(other_leader, maker, admin=True)
    assert not await can_view(leader, 2_000_000_000, admin=True)
    assert not await can_view(leader, 2**40, admin=True)


# --- the programme's figures ----------------------------------------------------------------


@pytest.fixture
async def empty_programme(
    fresh_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of its own, so `mir_stats` counts only this test's people."""
    engine = create_engine(fresh_database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_the_programme_figures_for_a_small_known_story(
    empty_programme: async_sessionmaker[AsyncSession],
) -> None:
    sessions = empty_programme
    leader = await add_person(
        sessions, "Lena Leader", role="change_leader", service_area="Customer Services"
    )
    ahmed = await add_person(
        sessions, "Ahmed Maker", leader_id=leader, service_area="Customer Services", reachable=True
    )
    bea = await add_person(
        sessions, "Bea Maker", leader_id=leader, service_area="customer  services", reachable=True
    )
    await add_person(sessions, "Cal Maker", leader_id=leader)  # no area, never installed

    empty = await _call(sessions, mir.mir_stats, today=TODAY)
    assert empty.overall.change_makers == 3 and empty.overall.sessions_held == 0
    assert empty.overall.nothing_scheduled == ("Ahmed Maker", "Bea Maker", "Cal Maker")
    assert (empty.overall.average_rating, empty.overall.top_themes) == (None, ())

    # Ahmed schedules (and cancels an earlier plan); Bea logs with three changes; Cal nothing.
    await schedule(sessions, ahmed, TODAY + timedelta(days=5))
    dropped_plan = await schedule(sessions, ahmed, TOMORROW)
    await _call(sessions, mir.cancel_session, session_id=dropped_plan, change_maker_id=ahmed)
    _, actions = await log(
        sessions,
        bea,
        YESTERDAY,
        changes=("Scan forms at the counter", "One shared contact log", "Call-back slots"),
        themes="Paperwork, Duplicate data entry; phone queues",
        went_well="Everyone spoke",
        to_change="Shorter introduction",
        rating=4,
    )
    await _call(
        sessions,
        mir.set_action_status,
        action_id=actions[0].id,
        change_maker_id=bea,
        status="done",
        reason=None,
        today=TODAY,
    )
    await _call(
        sessions,
        mir.set_action_details,
        change_maker_id=bea,
        details={actions[1].id: ("Sam", YESTERDAY), actions[2].id: (None, TOMORROW)},
        today=TODAY,
    )

    stats = await _call(sessions, mir.mir_stats, today=TODAY)
    overall = stats.overall
    assert overall.label == "Whole programme"
    assert overall.change_makers == 3
    assert overall.sessions_held == 1
    assert overall.sessions_in_diary == 1
    assert overall.awaiting_log == 0
    assert overall.nothing_scheduled == ("Cal Maker",)
    assert (overall.actions_agreed, overall.actions_done, overall.actions_overdue) == (3, 1, 1)
    assert overall.top_themes == (
        ("Duplicate data entry", 1),
        ("Paperwork", 1),
        ("phone queues", 1),
    )
    assert (overall.average_rating, overall.ratings) == (4.0, 1)
    assert [
        (f.session_date, f.team, f.rating, f.went_well, f.to_change)
        for f in overall.latest_feedback
    ] == [(YESTERDAY, "Benefits", 4, "Everyone spoke", "Shorter introduction")]
    assert stats.unreachable == ("Cal Maker",)

    assert [block.label for block in stats.by_area] == ["Customer Services", "No service area"]
    services, no_area = stats.by_area
    assert (services.change_makers, services.sessions_held, services.sessions_in_diary) == (
        2,
        1,
        1,
    )
    assert services.nothing_scheduled == ()
    assert (services.actions_agreed, services.actions_done, services.actions_overdue) == (3, 1, 1)
    assert services.average_rating == 4.0 and len(services.latest_feedback) == 1
    assert (no_area.change_makers, no_area.sessions_held, no_area.sessions_in_diary) == (1, 0, 0)
    assert no_area.nothing_scheduled == ("Cal Maker",)
    assert (no_area.actions_agreed, no_area.average_rating, no_area.top_themes) == (0, None, ())
    assert no_area.latest_feedback == ()

    # A week on: Ahmed's session has passed without a log, and Bea's open actions are late.
    later = await _call(sessions, mir.mir_stats, today=TODAY + timedelta(days=7))
    assert (later.overall.sessions_in_diary, later.overall.awaiting_log) == (0, 1)
    assert later.overall.actions_overdue == 2
    assert later.overall.nothing_scheduled == ("Cal Maker",)


async def test_the_figures_rank_themes_average_ratings_and_keep_three_feedbacks(
    empty_programme: async_sessionmaker[AsyncSession],
) -> None:
    sessions = empty_programme
    maker = await add_person(sessions, "Dee Maker", service_area="Planning", reachable=True)
    former = await add_person(sessions, "Eve Former", service_area="Planning")
    days = [TODAY - timedelta(days=n) for n in (40, 30, 20, 10)]
    await log(sessions, maker, days[0], themes="paperwork, Forms", rating=2, went_well="w0")
    await log(sessions, maker, days[1], themes="Paperwork; queues", rating=3, to_change="c1")
    await log(sessions, maker, days[2], themes="QUEUES", rating=5)  # a rating, no feedback
    await log(sessions, former, days[3], themes="forms\nPaperwork", rating=5, went_well="w3")
    # Eve is no longer a Change Maker, but the session she held still counts.
    async with transaction(sessions) as session:
        person = await session.get(Person, former)
        assert person is not None
        person.roles = ["change_leader"]
        session.add(person)
    await log(sessions, maker, days[3] + timedelta(days=1), themes="x", rating=1, went_well="w4")

    stats = await _call(sessions, mir.mir_stats, today=TODAY)
    overall = stats.overall
    assert overall.change_makers == 1 and overall.sessions_held == 5
    assert overall.top_themes == (("paperwork", 3), ("Forms", 2), ("queues", 2), ("x", 1))
    assert overall.average_rating == pytest.approx(16 / 5) and overall.ratings == 5
    assert [f.went_well or f.to_change for f in overall.latest_feedback] == ["w4", "w3", "c1"]
    assert stats.unreachable == ()
    assert [b.label for b in stats.by_area] == ["Planning"]
