"""Small improvement ideas: every form check (the reason keyed by its input, what was typed
kept), similar ideas found by meaning, a form pressed twice stored once, support once and never
one's own, the whole workflow with its reasons and races, the ideas waiting for triage, the
export, and anonymity that holds in every view and export."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import ideas, ideas_export, mir
from storage.db import create_engine, session_factory, transaction
from storage.ideas import IdeaNotFound, IdeaSubmission, IllegalTransition
from storage.mir import LogSubmission
from storage.models import Idea, IdeaEvent, Person
from storage.views import IdeaView
from tests.support.ideas import idea_about
from tests.support.people import add_person

T = TypeVar("T")

PRINCIPLES = range(1, 8)

GOOD_FORM = {
    "title": "Scan post at the counter",
    "problem": "Letters are photocopied and carried round the office.",
    "suggestion": "Scan them at the counter and email them to the right team.",
    "service_area": "Customer Services",
    "principles": "1,3",
    "benefits": "time_saved,money_saved",
    "benefit_other": "",
    "anonymous": "false",
}


def _errors(**changed: object) -> dict[str, str]:
    submission, _, errors = ideas.check_idea_form(
        {**GOOD_FORM, **changed}, principle_numbers=PRINCIPLES
    )
    assert (submission is None) == bool(errors)
    return errors


# --- the form ---------------------------------------------------------------------------------


def test_a_good_form_gives_its_submission() -> None:
    submission, entries, errors = ideas.check_idea_form(
        {
            **GOOD_FORM,
            "title": "  Scan post   at the\ncounter ",
            "principles": "3,1,3",
            "benefits": "other, time_saved",
            "benefit_other": "  Fewer   lost letters ",
            "anonymous": "true",
            "action": "idea_submit",
            "form": "f" * 32,
        },
        principle_numbers=PRINCIPLES,
    )
    assert errors == {}
    assert submission == IdeaSubmission(
        title="Scan post at the counter",
        problem=GOOD_FORM["problem"],
        suggestion=GOOD_FORM["suggestion"],
        service_area="Customer Services",
        principles=(1, 3),
        benefits=("time_saved", "other"),
        benefit_other="Fewer lost letters",
        anonymous=True,
    )
    assert set(entries) == set(ideas.IDEA_INPUTS)
    assert entries["title"] == "  Scan post   at the\ncounter "
    assert entries["principles"] == "3,1,3"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Give your idea a short title (1 to 120 characters)."),
        (" \n ", "Give your idea a short title (1 to 120 characters)."),
        ("x" * 121, "The title must be 120 characters or fewer (this is 121)."),
    ],
)
def test_the_title_is_1_to_120_characters(typed: str, reason: str) -> None:
    assert _errors(title=typed) == {"title": reason}
    assert _errors(title="x" * 120) == {}


@pytest.mark.parametrize(
    ("key", "empty", "what"),
    [
        ("problem", "Describe the problem (1 to 2,000 characters).", "The problem"),
        (
            "suggestion",
            "Describe the change you suggest (1 to 2,000 characters).",
            "The suggested change",
        ),
    ],
)
def test_the_problem_and_suggestion_are_1_to_2000_characters(
    key: str, empty: str, what: str
) -> None:
    assert _errors(**{key: ""}) == {key: empty}
    assert _errors(**{key: "  \n "}) == {key: empty}
    assert _errors(**{key: "y" * 2001}) == {
        key: f"{what} must be 2,000 characters or fewer (this is 2,001)."
    }
    assert _errors(**{key: "y" * 2000}) == {}


def test_the_service_area_is_one_of_the_list() -> None:
    assert _errors(service_area="") == {
        "service_area": "Choose the service area the idea is about."
    }
    assert _errors(service_area="Parking") == {
        "service_area": "“Parking” is not one of the service areas: choose one from the list."
    }
    submission, _, _ = ideas.check_idea_form(
        {**GOOD_FORM, "service_area": " revenues  and BENEFITS "}, principle_numbers=PRINCIPLES
    )
    assert submission is not None and submission.service_area == "Revenues and Benefits"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Choose at least one design principle the idea serves."),
        (" , ", "Choose at least one design principle the idea serves."),
        ("1,9", "“9” is not one of the design principles: choose from the list."),
        ("0", "“0” is not one of the design principles: choose from the list."),
        ("two", "“two” is not one of the design principles: choose from the list."),
        ("-1", "“-1” is not one of the design principles: choose from the list."),
    ],
)
def test_at_least_one_known_principle_is_chosen(typed: str, reason: str) -> None:
    assert _errors(principles=typed) == {"principles": reason}


def test_principles_are_those_that_exist() -> None:
    submission, _, errors = ideas.check_idea_form(
        {**GOOD_FORM, "principles": "7"}, principle_numbers={1, 2, 3}
    )
    assert submission is None and "principles" in errors


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Choose at least one expected benefit."),
        (
            "time_saved,fame",
            "“fame” is not one of the benefits: choose Time saved, Money saved, "
            "Better for residents or Other.",
        ),
        (
            "Time saved",
            "“Time saved” is not one of the benefits: choose Time saved, Money saved, "
            "Better for residents or Other.",
        ),
    ],
)
def test_at_least_one_known_benefit_is_chosen(typed: str, reason: str) -> None:
    assert _errors(benefits=typed) == {"benefits": reason}


def test_the_other_benefit_is_said_when_chosen_in_200_characters() -> None:
    assert _errors(benefits="other", benefit_other=" ") == {
        "benefit_other": "You chose “Other”: say what the benefit is (1 to 200 characters)."
    }
    assert _errors(benefits="other", benefit_other="z" * 201) == {
        "benefit_other": "The other benefit must be 200 characters or fewer (this is 201)."
    }
    assert _errors(benefits="other", benefit_other="z" * 200) == {}
    # Not chosen: whatever is in the box is not kept.
    submission, _, errors = ideas.check_idea_form(
        {**GOOD_FORM, "benefit_other": "z" * 500}, principle_numbers=PRINCIPLES
    )
    assert errors == {} and submission is not None and submission.benefit_other is None


@pytest.mark.parametrize(
    ("sent", "anonymous"),
    [("true", True), (True, True), ("TRUE", True), ("false", False), (False, False), ("", False)],
)
def test_the_anonymous_toggle(sent: object, anonymous: bool) -> None:
    submission, entries, errors = ideas.check_idea_form(
        {**GOOD_FORM, "anonymous": sent}, principle_numbers=PRINCIPLES
    )
    assert errors == {} and submission is not None and submission.anonymous is anonymous
    assert isinstance(entries["anonymous"], str)


def test_an_anonymous_toggle_that_is_not_true_or_false_is_refused_not_guessed() -> None:
    assert _errors(anonymous="yes") == {"anonymous": "Choose whether to submit anonymously."}


def test_a_refused_form_keeps_everything_typed_and_every_reason() -> None:
    typed = {
        "title": "t" * 130,
        "problem": "",
        "suggestion": "Do it better",
        "service_area": "Nowhere",
        "principles": "12",
        "benefits": "other",
        "benefit_other": "",
        "anonymous": "true",
    }
    submission, entries, errors = ideas.check_idea_form(typed, principle_numbers=PRINCIPLES)
    assert submission is None
    assert entries == typed
    assert set(errors) == {
        "title",
        "problem",
        "service_area",
        "principles",
        "benefit_other",
    }


def test_entries_are_strings_whatever_the_card_sent() -> None:
    _, entries, _ = ideas.check_idea_form(
        {"title": 12, "principles": [1, 3], "anonymous": True, "benefits": None},
        principle_numbers=PRINCIPLES,
    )
    assert entries == {
        "title": "12",
        "problem": "",
        "suggestion": "",
        "service_area": "",
        "principles": "1,3",
        "benefits": "",
        "benefit_other": "",
        "anonymous": "true",
    }


# --- references, filters, working days --------------------------------------------------------


def test_references() -> None:
    assert ideas.reference(1) == "IDEA-0001"
    assert ideas.reference(12345) == "IDEA-12345"
    for typed in ("IDEA-0012", "idea-12", " Idea 12 ", "#12", "12", 12, "idea#12"):
        assert ideas.parse_reference(typed) == 12, typed
    for typed in ("", "IDEA-", "IDEA-0", "idea-x", "12a", "IDEA-99999999999", True, None, 1.5):
        assert ideas.parse_reference(typed) is None, typed


@pytest.mark.parametrize(
    ("typed", "filters", "title"),
    [
        ("", {}, "All ideas"),
        ("new", {"status": "new"}, "New ideas"),
        ("under review", {"status": "under_review"}, "Ideas under review"),
        ("Under_Review", {"status": "under_review"}, "Ideas under review"),
        ("not taken forward", {"status": "not_taken_forward"}, "Ideas not taken forward"),
        ("implemented", {"status": "implemented"}, "Implemented ideas"),
        ("housing", {"service_area": "Housing"}, "Ideas for Housing"),
        (
            "ict AND digital",
            {"service_area": "ICT and Digital"},
            "Ideas for ICT and Digital",
        ),
        ("principle 3", {"principle": 3}, "Ideas serving design principle 3"),
        ("Principle3", {"principle": 3}, "Ideas serving design principle 3"),
        ("most supported", {"most_supported": True}, "Most supported ideas"),
    ],
)
def test_ideas_filters(typed: str, filters: dict[str, object], title: str) -> None:
    assert ideas.parse_ideas_filter(typed) == (filters, title)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("principle 9", "There are 7 design principles: ask for principle 1 to 7."),
        ("bananas", "I can't filter ideas by “bananas”. Try **ideas new**"),
    ],
)
def test_an_unknown_filter_says_what_can_be_asked(typed: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        ideas.parse_ideas_filter(typed)
    assert str(refused.value).startswith(message)


def test_every_status_has_a_label_and_transitions() -> None:
    assert set(ideas.STATUS_LABELS) == set(ideas.TRANSITIONS) == set(ideas.STATUSES)
    assert ideas.OPEN_STATUSES == ("new", "under_review", "accepted", "in_progress")
    assert all(set(targets) <= set(ideas.STATUSES) for targets in ideas.TRANSITIONS.values())


# 2022-06-13 is a Monday.
MONDAY = date(2022, 6, 13)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (MONDAY, MONDAY, 0),
        (MONDAY, MONDAY - timedelta(days=3), 0),
        (MONDAY, MONDAY + timedelta(days=1), 1),  # Tuesday
        (MONDAY, MONDAY + timedelta(days=4), 4),  # Friday
        (MONDAY, MONDAY + timedelta(days=6), 4),  # Sunday: the weekend adds nothing
        (MONDAY, MONDAY + timedelta(days=7), 5),  # next Monday
        (MONDAY, MONDAY + timedelta(days=8), 6),
        (MONDAY + timedelta(days=4), MONDAY + timedelta(days=7), 1),  # Friday to Monday
        (MONDAY + timedelta(days=5), MONDAY + timedelta(days=6), 0),  # Saturday to Sunday
        (MONDAY + timedelta(days=5), MONDAY + timedelta(days=12), 5),  # Saturday to Saturday
        (MONDAY, MONDAY + timedelta(days=70), 50),
        (MONDAY + timedelta(days=3), MONDAY + timedelta(days=3 + 7 * 3 + 2), 16),
    ],
)
def test_working_days_count_monday_to_friday(start: date, end: date, days: int) -> None:
    assert ideas.working_days_between(start, end) == days
    brute = sum(
        1 for n in range(1, (end - start).days + 1) if (start + timedelta(days=n)).weekday() < 5
    )
    assert days == brute


# --- similar ideas ---------------------------------------------------------------------------


def _text(title: str, problem: str, suggestion: str) -> str:
    return f"{title}\n{problem}\n{suggestion}"


PAPER = _text(
    "Stop printing paper forms",
    "Housing officers print every application form, fill it in by hand and type it in again.",
    "Let tenants fill in the form online so it goes straight into the system.",
)
PHONE = _text(
    "Call-back instead of phone queues",
    "Residents wait a long time on the phone line to Customer Services on Monday mornings.",
    "Offer a call-back service so callers do not have to hold.",
)
DOUBLE_KEYING = _text(
    "Enter case details once",
    "Benefits assessors key the same case details into two systems.",
    "Link the two systems so details are entered only once.",
)
TREES = _text(
    "Plant more trees in parks",
    "Some parks have little shade in summer.",
    "Plant trees along the paths in the larger parks.",
)
LIFT = _text(
    "Fix the Guildhall lift",
    "The lift at the Guildhall breaks down every week.",
    "Replace the lift or have it serviced more often.",
)
PARKING_FINES = _text(
    "Pay parking fines online",
    "Parking fines can only be paid by cheque.",
    "Accept card payments on the website.",
)


@pytest.mark.parametrize(
    ("original", "paraphrase"),
    [
        (
            PAPER,
            _text(
                "Put paperwork on the website",
                "We print forms for tenants and then retype what they wrote.",
                "An online form instead of the paper one.",
            ),
        ),
        (
            PHONE,
            _text(
                "Telephone waiting times",
                "Callers hold for ages when they call customer services.",
                "Ring people back rather than making them wait in a queue.",
            ),
        ),
        (
            DOUBLE_KEYING,
            _text(
                "Double keying in benefits",
                "Assessors type the same information twice, into two different systems.",
                "Connect the systems so nobody re-enters it.",
            ),
        ),
        ("Scan invoices instead of printing them", "Stop printing invoices: scan them"),
        ("Email receipts instead of posting letters", "Send e-mails rather than letters by post"),
    ],
)
def test_rewordings_of_an_idea_look_similar(original: str, paraphrase: str) -> None:
    score = ideas.similarity(original, paraphrase)
    assert score >= ideas.SIMILAR_THRESHOLD, score
    assert ideas.similarity(paraphrase, original) == score


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (PAPER, TREES),
        (PAPER, PARKING_FINES),  # both "online", nothing else
        (PHONE, LIFT),
        (DOUBLE_KEYING, PHONE),
        (TREES, PARKING_FINES),  # "parks" and "parking"
        (LIFT, TREES),
        ("Online booking for appointments", "Online payment for parking fines"),
    ],
)
def test_different_ideas_do_not(one: str, other: str) -> None:
    assert ideas.similarity(one, other) < ideas.SIMILAR_THRESHOLD


def test_similarity_is_between_0_and_1() -> None:
    assert ideas.similarity(PAPER, PAPER) == 1.0
    assert ideas.similarity(PAPER, "") == 0.0
    assert ideas.similarity("the and of", "the and of") == 0.0
    assert ideas.similarity("Printing forms", "printed FORM!") == 1.0


# --- in the database --------------------------------------------------------------------------


async def _call(
    sessions: async_sessionmaker[AsyncSession],
    function: Callable[..., Awaitable[T]],
    /,
    **arguments: Any,
) -> T:
    async with transaction(sessions) as session:
        return await function(session, **arguments)


def form() -> str:
    return uuid.uuid4().hex


async def submit(
    sessions: async_sessionmaker[AsyncSession], person_id: int, **fields: Any
) -> IdeaView:
    view, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=person_id,
        submission=idea_about(**fields),
        form_id=form(),
    )
    assert created
    return view


# How to bring a new idea to each status; DUPLICATE_OF is filled in with a real reference.
PATHS = {
    "new": (),
    "under_review": ("under_review",),
    "accepted": ("under_review", "accepted"),
    "in_progress": ("under_review", "accepted", "in_progress"),
    "implemented": ("under_review", "accepted", "in_progress", "implemented"),
    "not_taken_forward": ("not_taken_forward",),
    "duplicate": ("duplicate",),
}


async def move(
    sessions: async_sessionmaker[AsyncSession],
    idea_id: int,
    to_status: str,
    *,
    actor: int | None,
    reason: str | None = "Agreed at triage",
    duplicate_of: str | None = None,
) -> IdeaView:
    return await _call(
        sessions,
        ideas.change_status,
        idea_id=idea_id,
        to_status=to_status,
        actor_id=actor,
        reason=reason,
        duplicate_of=duplicate_of,
    )


async def idea_in(
    sessions: async_sessionmaker[AsyncSession], status: str, *, submitter: int, admin: int
) -> IdeaView:
    view = await submit(sessions, submitter)
    original = await submit(sessions, submitter, title="The first of its kind")
    for step in PATHS[status]:
        view = await move(sessions, view.id, step, actor=admin, duplicate_of=original.reference)
    assert view.status == status
    return view


@pytest.fixture
async def fresh(fresh_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of this test's own, for lists and figures that count every idea."""
    engine = create_engine(fresh_database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_an_idea_is_submitted_new_with_its_history(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    priya = await add_person(sessions, "Priya Submitter", role=None)
    view, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=priya,
        submission=idea_about(benefits=("time_saved", "other"), benefit_other="Happier staff"),
        form_id=form(),
    )
    assert created
    assert view.reference == ideas.reference(view.id)
    assert (view.title, view.service_area, view.principles) == (
        "Scan post at the counter",
        "Customer Services",
        (1, 3),
    )
    assert (view.benefits, view.benefit_other) == (("time_saved", "other"), "Happier staff")
    assert (view.status, view.status_label, view.next_statuses) == (
        "new",
        "New",
        ("under_review", "not_taken_forward", "duplicate"),
    )
    assert (view.submitted_by, view.supporters) == ("Priya Submitter", 0)
    assert (view.last_reason, view.last_changed_by, view.duplicate_of) == (None, None, None)
    assert view.created_at.tzinfo is not None and view.status_changed_at == view.created_at
    assert await _call(sessions, ideas.get_idea, idea_id=view.id) == view
    (submitted,) = await _call(sessions, ideas.history, idea_id=view.id)
    assert (submitted.to_status, submitted.status_label, submitted.by, submitted.reason) == (
        "new",
        "New",
        None,
        None,
    )


async def test_a_form_sent_twice_stores_one_idea(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    priya = await add_person(sessions, "Priya Twice", role=None)
    form_id = form()
    first, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=priya,
        submission=idea_about(),
        form_id=form_id,
    )
    assert created
    again, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=priya,
        submission=idea_about(title="Changed on the second press"),
        form_id=form_id,
    )
    assert not created and again == first
    assert len(await _call(sessions, ideas.history, idea_id=first.id)) == 1
    assert [i.id for i in await _call(sessions, ideas.my_ideas, submitter_id=priya)] == [first.id]


async def test_presses_of_one_form_at_once_store_one_idea(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    priya = await add_person(sessions, "Priya Racing", role=None)
    form_id = form()
    outcomes = await asyncio.gather(
        *(
            _call(
                sessions,
                ideas.submit_idea,
                submitter_id=priya,
                submission=idea_about(),
                form_id=form_id,
            )
            for _ in range(4)
        )
    )
    assert sorted(created for _, created in outcomes) == [False, False, False, True]
    assert len({view.id for view, _ in outcomes}) == 1
    assert len(await _call(sessions, ideas.my_ideas, submitter_id=priya)) == 1


async def test_one_form_card_filled_in_by_two_people_gives_each_their_own_idea(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A form posted in a group chat carries one form id for everyone who fills it in."""
    one = await add_person(sessions, "Una One", role=None)
    two = await add_person(sessions, "Tom Two", role=None)
    form_id = form()
    first, _ = await _call(
        sessions, ideas.submit_idea, submitter_id=one, submission=idea_about(), form_id=form_id
    )
    second, created = await _call(
        sessions, ideas.submit_idea, submitter_id=two, submission=idea_about(), form_id=form_id
    )
    assert created and second.id != first.id and second.submitted_by == "Tom Two"


async def test_an_agreed_mir_change_becomes_one_idea(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Mo Maker")
    _, (action,), _ = await _call(
        sessions,
        mir.log_session,
        change_maker_id=maker,
        submission=LogSubmission(
            scheduled_session_id=None,
            held_on=date(2022, 6, 13),
            team="Benefits",
            attendees=5,
            themes="Paperwork",
            changes=("Scan post at the counter",),
            went_well=None,
            to_change=None,
            rating=4,
        ),
        form_id=form(),
    )
    first, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=maker,
        submission=idea_about(),
        form_id=form(),
        mir_action_id=action.id,
    )
    assert created
    again, created = await _call(
        sessions,
        ideas.submit_idea,
        submitter_id=maker,
        submission=idea_about(),
        form_id=form(),
        mir_action_id=action.id,
    )
    assert not created and again.id == first.id
    async with sessions() as session:
        stored = await session.get(Idea, first.id)
        assert stored is not None and stored.mir_action_id == action.id


async def test_support_is_counted_once_and_never_ones_own(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await add_person(sessions, "Olu Owner", role=None)
    fan = await add_person(sessions, "Fay Fan", role=None)
    other = await add_person(sessions, "Oz Other", role=None)
    view = await submit(sessions, owner)
    anonymous = await submit(sessions, owner, anonymous=True)

    supported, outcome = await _call(sessions, ideas.support_idea, idea_id=view.id, person_id=fan)
    assert (outcome, supported.supporters) == ("supported", 1)
    again, outcome = await _call(sessions, ideas.support_idea, idea_id=view.id, person_id=fan)
    assert (outcome, again.supporters) == ("already", 1)
    own, outcome = await _call(sessions, ideas.support_idea, idea_id=view.id, person_id=owner)
    assert (outcome, own.supporters) == ("own", 1)
    _, outcome = await _call(sessions, ideas.support_idea, idea_id=anonymous.id, person_id=owner)
    assert outcome == "own"
    outcomes = await asyncio.gather(
        *(_call(sessions, ideas.support_idea, idea_id=view.id, person_id=other) for _ in range(4))
    )
    assert sorted(outcome for _, outcome in outcomes) == ["already"] * 3 + ["supported"]
    assert (await _call(sessions, ideas.get_idea, idea_id=view.id)).supporters == 2
    assert await _call(sessions, ideas.people_to_notify, idea_id=view.id) == [owner, fan, other]
    assert await _call(sessions, ideas.people_to_notify, idea_id=anonymous.id) == [owner]


async def test_an_idea_that_does_not_exist_is_not_found(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await add_person(sessions, "Nia Nobody", role=None)
    missing = 2**31 - 2
    for call in (
        _call(sessions, ideas.get_idea, idea_id=missing),
        _call(sessions, ideas.get_idea, idea_id=0),
        _call(sessions, ideas.get_idea, idea_id=2**40),
        _call(sessions, ideas.support_idea, idea_id=missing, person_id=person),
        _call(sessions, ideas.history, idea_id=missing),
        _call(sessions, ideas.people_to_notify, idea_id=missing),
        move(sessions, missing, "under_review", actor=person),
        _call(
            sessions,
            ideas.record_triage_post,
            idea_id=missing,
            conversation_id="19:x",
            activity_id="1",
        ),
    ):
        with pytest.raises(IdeaNotFound):
            await call
    assert await _call(sessions, ideas.triage_post, idea_id=missing) is None


async def test_my_ideas_are_mine_newest_first(sessions: async_sessionmaker[AsyncSession]) -> None:
    me = await add_person(sessions, "Mia Mine", role=None)
    someone = await add_person(sessions, "Sam Else", role=None)
    older = await submit(sessions, me, title="Older")
    await submit(sessions, someone)
    newer = await submit(sessions, me, title="Newer", anonymous=True)
    mine = await _call(sessions, ideas.my_ideas, submitter_id=me)
    assert [(i.id, i.submitted_by) for i in mine] == [(newer.id, None), (older.id, "Mia Mine")]


# --- the workflow ----------------------------------------------------------------------------

ALL_MOVES = [(start, end) for start in ideas.STATUSES for end in ideas.STATUSES]


@pytest.mark.parametrize(("start", "end"), ALL_MOVES)
async def test_every_move_is_allowed_exactly_when_the_workflow_says(
    sessions: async_sessionmaker[AsyncSession], start: str, end: str
) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    view = await idea_in(sessions, start, submitter=submitter, admin=admin)
    original = await submit(sessions, submitter, title="An earlier idea")
    before = await _call(sessions, ideas.history, idea_id=view.id)
    attempt = move(
        sessions,
        view.id,
        end,
        actor=admin,
        reason="Because",
        duplicate_of=original.reference,
    )
    if end in ideas.TRANSITIONS[start]:
        moved = await attempt
        assert (moved.status, moved.status_label) == (end, ideas.STATUS_LABELS[end])
        assert moved.next_statuses == ideas.TRANSITIONS[end]
        assert (moved.last_reason, moved.last_changed_by) == ("Because", "Ada Admin")
        assert moved.status_changed_at >= view.status_changed_at
        assert moved.duplicate_of == (original.reference if end == "duplicate" else None)
        latest = (await _call(sessions, ideas.history, idea_id=view.id))[-1]
        assert (latest.to_status, latest.by, latest.reason) == (end, "Ada Admin", "Because")
    else:
        with pytest.raises(IllegalTransition) as refused:
            await attempt
        assert view.reference in str(refused.value)
        assert (await _call(sessions, ideas.get_idea, idea_id=view.id)).status == start
        assert await _call(sessions, ideas.history, idea_id=view.id) == before


async def test_refusals_say_what_is_possible(sessions: async_sessionmaker[AsyncSession]) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    new = await submit(sessions, submitter)
    done = await idea_in(sessions, "implemented", submitter=submitter, admin=admin)
    refusals = {
        (new.id, "accepted"): f"{new.reference} is New: it can move to Under review, "
        "Not taken forward or Duplicate, not Accepted.",
        (new.id, "new"): f"{new.reference} is already New.",
        (done.id, "new"): f"{done.reference} is Implemented, which is final: it can't move to New.",
        (new.id, "archived"): "“archived” is not a status an idea can have.",
    }
    for (idea_id, status), message in refusals.items():
        with pytest.raises(IllegalTransition) as refused:
            await move(sessions, idea_id, status, actor=admin)
        assert str(refused.value) == message


@pytest.mark.parametrize("reason", [None, "", "   \n "])
async def test_not_taken_forward_needs_a_reason(
    sessions: async_sessionmaker[AsyncSession], reason: str | None
) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    view = await submit(sessions, submitter)
    with pytest.raises(IllegalTransition) as refused:
        await move(sessions, view.id, "not_taken_forward", actor=admin, reason=reason)
    assert str(refused.value) == (
        f"Say why {view.reference} is not taken forward: the submitter and supporters will see it."
    )
    assert (await _call(sessions, ideas.get_idea, idea_id=view.id)).status == "new"


async def test_reasons_are_kept_with_each_change(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    other_admin = await add_person(sessions, "Bo Admin", role="admin")
    view = await submit(sessions, submitter)
    reviewed = await move(sessions, view.id, "under_review", actor=admin, reason=None)
    assert (reviewed.last_reason, reviewed.last_changed_by) == (None, "Ada Admin")
    with pytest.raises(IllegalTransition) as refused:
        await move(sessions, view.id, "not_taken_forward", actor=admin, reason="r" * 1001)
    assert str(refused.value) == "The reason must be 1,000 characters or fewer (this is 1,001)."
    dropped = await move(
        sessions,
        view.id,
        "not_taken_forward",
        actor=other_admin,
        reason="  Too costly this year  ",
    )
    assert (dropped.last_reason, dropped.last_changed_by) == ("Too costly this year", "Bo Admin")
    steps = await _call(sessions, ideas.history, idea_id=view.id)
    assert [(s.to_status, s.status_label, s.by, s.reason) for s in steps] == [
        ("new", "New", None, None),
        ("under_review", "Under review", "Ada Admin", None),
        ("not_taken_forward", "Not taken forward", "Bo Admin", "Too costly this year"),
    ]
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    async with sessions() as session:
        events = list(
            await session.exec(
                select(IdeaEvent).where(IdeaEvent.idea_id == view.id).order_by(col(IdeaEvent.id))
            )
        )
    assert [(e.from_status, e.actor_id) for e in events] == [
        (None, None),
        ("new", admin),
        ("under_review", other_admin),
    ]


async def test_a_duplicate_names_another_idea_that_is_not_a_duplicate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    original = await submit(sessions, submitter, title="The original")
    copy = await submit(sessions, submitter, title="The copy")
    copy_of_copy = await submit(sessions, submitter, title="The copy's copy")
    missing = ideas.reference(2**31 - 2)
    refusals = {
        None: f"Give the reference of the idea {copy.reference} duplicates, for example IDEA-0001.",
        "  ": f"Give the reference of the idea {copy.reference} duplicates, for example IDEA-0001.",
        "the other one": "“the other one” is not an idea reference: write it like IDEA-0001.",
        copy.reference: f"{copy.reference} can't be a duplicate of itself.",
        missing: f"There is no idea {missing}.",
    }
    for duplicate_of, message in refusals.items():
        with pytest.raises(IllegalTransition) as refused:
            await move(sessions, copy.id, "duplicate", actor=admin, duplicate_of=duplicate_of)
        assert str(refused.value) == message

    moved = await move(
        sessions,
        copy.id,
        "duplicate",
        actor=admin,
        reason=None,
        duplicate_of=f"idea-{original.id}",
    )
    assert (moved.status, moved.duplicate_of, moved.last_reason) == (
        "duplicate",
        original.reference,
        None,
    )
    with pytest.raises(IllegalTransition) as refused:
        await move(sessions, copy_of_copy.id, "duplicate", actor=admin, duplicate_of=copy.reference)
    assert str(refused.value) == (
        f"{copy.reference} is itself a duplicate of {original.reference}: "
        f"use {original.reference} instead."
    )
    with_reason = await move(
        sessions,
        copy_of_copy.id,
        "duplicate",
        actor=admin,
        reason="Same as the original",
        duplicate_of=original.reference,
    )
    assert (with_reason.duplicate_of, with_reason.last_reason) == (
        original.reference,
        "Same as the original",
    )
    # A duplicate_of given for another status is not a duplicate.
    other = await submit(sessions, submitter)
    reviewed = await move(
        sessions, other.id, "under_review", actor=admin, duplicate_of=original.reference
    )
    assert reviewed.duplicate_of is None


async def test_two_admins_pressing_at_once_move_it_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admins = [await add_person(sessions, f"Admin {n}", role="admin") for n in (1, 2)]
    view = await submit(sessions, submitter)
    outcomes = await asyncio.gather(
        *(move(sessions, view.id, "under_review", actor=admin) for admin in admins),
        return_exceptions=True,
    )
    moved = [o for o in outcomes if isinstance(o, IdeaView)]
    refused = [o for o in outcomes if isinstance(o, IllegalTransition)]
    assert len(moved) == 1 and len(refused) == 1, outcomes
    # Which one depends on when the loser read the idea: before the winner's commit (the
    # conditional update finds it moved) or after.
    assert str(refused[0]) in (
        f"{view.reference} has already been moved to Under review by someone else.",
        f"{view.reference} is already Under review.",
    )
    steps = await _call(sessions, ideas.history, idea_id=view.id)
    assert [(s.to_status, s.by) for s in steps] == [
        ("new", None),
        ("under_review", moved[0].last_changed_by),
    ]


async def test_a_change_from_a_state_that_has_gone_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The loser of a race read the idea before the winner moved it on: its move from the old
    status is refused by the conditional update, not applied on top."""
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    first_admin = await add_person(sessions, "Ada Admin", role="admin")
    second_admin = await add_person(sessions, "Bo Admin", role="admin")
    view = await submit(sessions, submitter)
    async with transaction(sessions) as late:
        seen = await late.get(Idea, view.id)  # read while it is still new
        assert seen is not None and seen.status == "new"
        await move(sessions, view.id, "under_review", actor=first_admin)
        with pytest.raises(IllegalTransition) as refused:
            await ideas.change_status(
                late,
                idea_id=view.id,
                to_status="not_taken_forward",
                actor_id=second_admin,
                reason="Not for us",
            )
    assert str(refused.value) == (
        f"{view.reference} has already been moved to Under review by someone else."
    )
    steps = await _call(sessions, ideas.history, idea_id=view.id)
    assert [(s.to_status, s.by) for s in steps] == [("new", None), ("under_review", "Ada Admin")]
    assert (await _call(sessions, ideas.get_idea, idea_id=view.id)).status == "under_review"


# --- lists, stale ideas, the triage channel ---------------------------------------------------


async def test_ideas_are_listed_and_filtered(fresh: async_sessionmaker[AsyncSession]) -> None:
    sessions = fresh
    people = [await add_person(sessions, f"Lister {n}", role=None) for n in range(4)]
    admin = await add_person(sessions, "Ada Admin", role="admin")
    housing = await submit(sessions, people[0], service_area="Housing", principles=(2,))
    popular = await submit(sessions, people[1], principles=(3, 5))
    reviewed = await submit(sessions, people[2], service_area="Housing", principles=(3,))
    await move(sessions, reviewed.id, "under_review", actor=admin)
    for fan in people[2:]:
        await _call(sessions, ideas.support_idea, idea_id=popular.id, person_id=fan)
    await _call(sessions, ideas.support_idea, idea_id=reviewed.id, person_id=people[0])

    async def listed(**filters: Any) -> list[int]:
        return [i.id for i in await _call(sessions, ideas.list_ideas, **filters)]

    assert await listed() == [reviewed.id, popular.id, housing.id]
    assert await listed(limit=2) == [reviewed.id, popular.id]
    assert await listed(status="new") == [popular.id, housing.id]
    assert await listed(status="under_review") == [reviewed.id]
    assert await listed(status="implemented") == []
    assert await listed(service_area="Housing") == [reviewed.id, housing.id]
    assert await listed(principle=3) == [reviewed.id, popular.id]
    assert await listed(principle=7) == []
    assert await listed(most_supported=True) == [popular.id, reviewed.id, housing.id]
    assert await listed(status="new", service_area="Housing") == [housing.id]
    filters, _ = ideas.parse_ideas_filter("under review")
    assert await listed(**filters) == [reviewed.id]


async def test_ideas_left_new_more_than_five_working_days_are_stale(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    sessions = fresh
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    today = MONDAY + timedelta(days=14)  # a Monday

    async def submitted_on(day: date, title: str) -> IdeaView:
        view = await submit(sessions, submitter, title=title)
        moment = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
        async with transaction(sessions) as session:
            await session.exec(
                update(Idea)
                .where(col(Idea.id) == view.id)
                .values(created_at=moment, status_changed_at=moment)
            )
        return view

    # Five working days before Monday is the Monday before: not yet stale.
    on_time = await submitted_on(today - timedelta(days=7), "Five working days")
    stale = await submitted_on(today - timedelta(days=10), "Six working days (a Friday)")
    older = await submitted_on(today - timedelta(days=20), "Older still")
    over_weekend = await submitted_on(today - timedelta(days=2), "Saturday")
    reviewed = await submitted_on(today - timedelta(days=30), "Reviewed")
    await move(sessions, reviewed.id, "under_review", actor=admin)

    found = await _call(sessions, ideas.stale_new_ideas, today=today)
    assert [i.id for i in found] == [older.id, stale.id]
    tomorrow = await _call(sessions, ideas.stale_new_ideas, today=today + timedelta(days=1))
    assert [i.id for i in tomorrow] == [older.id, stale.id, on_time.id]
    assert over_weekend.id not in [i.id for i in tomorrow]
    wider = await _call(sessions, ideas.stale_new_ideas, today=today, working_days=20)
    assert wider == []

    # Submitted at 00:30 on a summer Tuesday in Cambridge (23:30 on Monday in UTC): it counts
    # from Tuesday, as the council's staff would count, not from Monday.
    tuesday = today - timedelta(days=6)
    late = await submit(sessions, submitter, title="Just after midnight")
    moment = datetime.combine(tuesday, datetime.min.time(), tzinfo=UTC) - timedelta(minutes=30)
    async with transaction(sessions) as session:
        await session.exec(update(Idea).where(col(Idea.id) == late.id).values(created_at=moment))
    london = ZoneInfo("Europe/London")
    next_tuesday = today + timedelta(days=1)
    in_london = await _call(sessions, ideas.stale_new_ideas, today=next_tuesday, zone=london)
    in_utc = await _call(sessions, ideas.stale_new_ideas, today=next_tuesday)
    assert late.id not in [i.id for i in in_london], "five working days in Cambridge"
    assert late.id in [i.id for i in in_utc], "six, counted from Monday in UTC"


async def test_the_triage_channel_and_posts_are_remembered(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    sessions = fresh
    admin = await add_person(sessions, "Ada Admin", role="admin")
    assert await _call(sessions, ideas.get_triage_channel) is None
    await _call(sessions, ideas.set_triage_channel, conversation_id="19:first@thread", set_by=admin)
    assert await _call(sessions, ideas.get_triage_channel) == "19:first@thread"
    async with transaction(sessions) as session:
        await ideas.set_triage_channel(session, conversation_id="19:second@thread", set_by=admin)
        assert await ideas.get_triage_channel(session) == "19:second@thread"
    assert await _call(sessions, ideas.get_triage_channel) == "19:second@thread"

    view = await submit(sessions, admin)
    assert await _call(sessions, ideas.triage_post, idea_id=view.id) is None
    await _call(
        sessions,
        ideas.record_triage_post,
        idea_id=view.id,
        conversation_id="19:second@thread",
        activity_id="1001",
    )
    async with transaction(sessions) as session:
        await ideas.record_triage_post(
            session, idea_id=view.id, conversation_id="19:second@thread", activity_id="1002"
        )
        assert await ideas.triage_post(session, idea_id=view.id) == ("19:second@thread", "1002")
    assert await _call(sessions, ideas.triage_post, idea_id=view.id) == (
        "19:second@thread",
        "1002",
    )


# --- similar open ideas and the export --------------------------------------------------------


async def test_similar_open_ideas_are_offered_best_first(
    fresh: async_sessionmaker[AsyncSession],
) -> None:
    sessions = fresh
    submitter = await add_person(sessions, "Sue Submitter", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    close = await submit(
        sessions,
        submitter,
        title="Stop printing paper forms",
        problem="Housing officers print every application form and type it in again.",
        suggestion="Let tenants fill in the form online.",
    )
    closer = await submit(
        sessions,
        submitter,
        title="Online forms instead of paper",
        problem="We print forms for tenants and retype what they wrote.",
        suggestion="An online form instead of the paper one.",
    )
    closed = await submit(
        sessions,
        submitter,
        title="Put paperwork on the website",
        problem="We print forms for tenants and then retype what they wrote.",
        suggestion="An online form instead of the paper one.",
    )
    await move(sessions, closed.id, "not_taken_forward", actor=admin, reason="Done already")
    await submit(sessions, submitter, title="Plant more trees in parks", problem="No shade.")
    wanted = idea_about(
        title="Put paperwork on the website",
        problem="We print forms for tenants and then retype what they wrote.",
        suggestion="An online form instead of the paper one.",
    )
    found = await _call(sessions, ideas.similar_open_ideas, submission=wanted)
    assert [i.id for i in found] == [closer.id, close.id]
    assert [
        i.id for i in await _call(sessions, ideas.similar_open_ideas, submission=wanted, limit=1)
    ] == [closer.id]
    unrelated = idea_about(title="Fix the Guildhall lift", problem="It breaks.", suggestion="Fix")
    assert await _call(sessions, ideas.similar_open_ideas, submission=unrelated) == []


def _csv_text(rows: list[dict[str, str]]) -> str:
    stream = io.StringIO(newline="")
    ideas_export.write_csv(rows, stream)
    return stream.getvalue()


def _xlsx_cells(rows: list[dict[str, str]], path: Path) -> list[list[Any]]:
    ideas_export.write_xlsx(rows, path)
    workbook = openpyxl.load_workbook(path)
    return [list(row) for row in workbook["Ideas"].iter_rows(values_only=True)]


async def test_the_export_has_every_idea_with_its_history(
    fresh: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = fresh
    named = await add_person(sessions, "Nora Named", role=None)
    admin = await add_person(sessions, "Ada Admin", role="admin")
    fan = await add_person(sessions, "Fay Fan", role=None)
    first = await submit(
        sessions,
        named,
        title='=HYPERLINK("http://evil")',
        problem="+1 more form to fill in",
        benefits=("money_saved", "other"),
        benefit_other="@everyone happier",
        principles=(2, 4),
    )
    second = await submit(sessions, named, title="Second idea", anonymous=True)
    await _call(sessions, ideas.support_idea, idea_id=first.id, person_id=fan)
    await move(sessions, first.id, "under_review", actor=admin, reason=None)
    await move(sessions, first.id, "not_taken_forward", actor=admin, reason="-10 budget")

    rows = await _call(sessions, ideas.export_rows)
    assert [r["reference"] for r in rows] == [first.reference, second.reference]
    row = rows[0]
    assert list(row) == list(ideas.EXPORT_COLUMNS)
    today = f"{first.created_at:%Y-%m-%d}"
    assert row == {
        "reference": first.reference,
        "title": '=HYPERLINK("http://evil")',
        "problem": "+1 more form to fill in",
        "suggestion": first.suggestion,
        "service_area": "Customer Services",
        "principles": "2, 4",
        "benefits": "Money saved; Other: @everyone happier",
        "status": "Not taken forward",
        "supporters": "1",
        "submitted_by": "Nora Named",
        "submitted_at": f"{first.created_at:%Y-%m-%d %H:%M} UTC",
        "history": (
            f"{today} New\n{today} Under review, by Ada Admin\n"
            f"{today} Not taken forward, by Ada Admin: -10 budget"
        ),
    }
    assert (rows[1]["submitted_by"], rows[1]["status"]) == ("", "New")

    parsed = list(csv.DictReader(io.StringIO(_csv_text(rows), newline="")))
    assert [r["reference"] for r in parsed] == [first.reference, second.reference]
    assert parsed[0]["title"] == '\'=HYPERLINK("http://evil")'
    assert parsed[0]["problem"] == "'+1 more form to fill in"
    assert parsed[0]["history"] == row["history"]
    assert parsed[1]["submitted_by"] == ""

    header, *cells = _xlsx_cells(rows, tmp_path / "ideas.xlsx")
    assert header == list(ideas.EXPORT_COLUMNS)
    exported = [dict(zip(header, line, strict=True)) for line in cells]
    assert exported[0]["title"] == '\'=HYPERLINK("http://evil")'
    assert exported[0]["history"] == row["history"]
    assert exported[0]["supporters"] == "1"
    assert exported[1]["submitted_by"] in ("", None)


async def test_an_empty_export_still_has_its_header(
    fresh: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    rows = await _call(fresh, ideas.export_rows)
    assert rows == []
    assert _csv_text(rows).splitlines() == [",".join(ideas.EXPORT_COLUMNS)]
    assert _xlsx_cells(rows, tmp_path / "empty.xlsx") == [list(ideas.EXPORT_COLUMNS)]


def test_cells_a_spreadsheet_would_run_are_written_as_text() -> None:
    for formula in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert ideas_export.safe_cell(formula) == f"'{formula}"
    for text in ("Scan post", "1-2 days", " =not first", ""):
        assert ideas_export.safe_cell(text) == text


# --- anonymity --------------------------------------------------------------------------------


async def test_an_anonymous_submitter_is_never_shown(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """The submitter is an admin, so they can also move their own anonymous idea: not even
    that change names them."""
    unique = uuid.uuid4().hex
    secrets = {
        "name": f"Zephyrine Quillfeather {unique[:6]}",
        "email": f"zephyrine.quillfeather.{unique}@cambridge.gov.uk",
        "aad_object_id": str(uuid.uuid4()),
        "teams_id": f"29:1zephyrine-{unique}",
    }
    async with transaction(sessions) as session:
        person = Person(
            name=secrets["name"],
            email=secrets["email"],
            aad_object_id=secrets["aad_object_id"],
            teams_id=secrets["teams_id"],
            roles=["admin"],
            in_roster=True,
        )
        session.add(person)
        await session.flush()
        secret_id = person.id or 0
    admin = await add_person(sessions, "Ada Admin", role="admin")
    fans = [await add_person(sessions, f"Fan {n}", role=None) for n in range(2)]
    named = await add_person(sessions, "Nora Named", role=None)

    words = f"post room {unique}"
    secret = await submit(
        sessions,
        secret_id,
        title=f"Paperless post room {unique[:8]}",
        problem=f"The post room prints every {words} letter.",
        suggestion="Scan the post and email it.",
        anonymous=True,
    )
    duplicate = await submit(sessions, secret_id, anonymous=True, title="Paperless post again")
    other = await submit(sessions, named, title="Someone else's idea")
    for fan in fans:
        await _call(sessions, ideas.support_idea, idea_id=secret.id, person_id=fan)
    await _call(sessions, ideas.support_idea, idea_id=secret.id, person_id=secret_id)
    await _call(sessions, ideas.support_idea, idea_id=other.id, person_id=secret_id)
    await move(sessions, secret.id, "under_review", actor=admin)
    await move(sessions, secret.id, "accepted", actor=secret_id, reason="I can do this")
    await move(
        sessions,
        duplicate.id,
        "duplicate",
        actor=secret_id,
        reason=None,
        duplicate_of=secret.reference,
    )

    seen: list[object] = [
        await _call(sessions, ideas.get_idea, idea_id=secret.id),
        await _call(sessions, ideas.get_idea, idea_id=duplicate.id),
        await _call(sessions, ideas.list_ideas),
        await _call(sessions, ideas.list_ideas, most_supported=True),
        await _call(sessions, ideas.my_ideas, submitter_id=secret_id),
        await _call(sessions, ideas.my_ideas, submitter_id=named),
        await _call(sessions, ideas.history, idea_id=secret.id),
        await _call(sessions, ideas.history, idea_id=duplicate.id),
    ]
    similar = await _call(
        sessions,
        ideas.similar_open_ideas,
        submission=idea_about(
            title="Paperless post room",
            problem=f"The post room prints every {words} letter.",
            suggestion="Scan the post and email it.",
        ),
        limit=1000,
    )
    assert secret.id in [i.id for i in similar]
    seen.append(similar)
    accepted = seen[0]
    assert isinstance(accepted, IdeaView)
    assert (accepted.status, accepted.submitted_by, accepted.last_changed_by) == (
        "accepted",
        None,
        None,
    )
    assert accepted.supporters == 2
    rows = await _call(sessions, ideas.export_rows)
    mine = [r for r in rows if r["reference"] in (secret.reference, duplicate.reference)]
    assert [r["submitted_by"] for r in mine] == ["", ""]
    assert "by Ada Admin" in mine[0]["history"] and "I can do this" in mine[0]["history"]
    seen += [rows, _csv_text(rows), _xlsx_cells(rows, tmp_path / "ideas.xlsx")]

    shown = repr(seen)
    for what, value in secrets.items():
        assert value not in shown, what
        assert value.casefold() not in shown.casefold(), what
