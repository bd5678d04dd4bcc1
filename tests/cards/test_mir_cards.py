"""The Making It Real cards: every one valid and small in every state it can be sent in (empty,
typical, with errors, with hostile strings, with hundreds of rows), and each one emitting
exactly the inputs and button data the dialogs read (the contracts of /tmp/mir-contract.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, time, timedelta
from typing import Any

import pytest

from cards import render as card_render
from cards import render_card
from storage.views import (
    ActionView,
    ChangeMakerSummary,
    MirStats,
    SessionView,
    StatsBlock,
)
from tests.support.card_checks import buttons as card_buttons
from tests.support.card_checks import check_valid_small_and_plain
from tests.support.card_checks import inputs as card_inputs
from tests.support.card_checks import size as card_size
from tests.support.card_checks import submits as card_submits
from tests.support.card_checks import texts as card_texts
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
)
from tests.support.teams import card_nodes, card_text, find_action, input_values
from tests.support.views import EMPTY_STATS, action, block, feedback, person, session

MAX_CARD_BYTES = 28 * 1024
TODAY = date(2022, 6, 14)
FORM_ID = "a1b2c3d4" * 4
MIR_CARDS = (
    "schedule_form",
    "log_form",
    "session_logged",
    "my_sessions",
    "my_actions",
    "change_makers",
    "mir_stats",
    "reminder_log_session",
    "reminder_nothing_scheduled",
    "reminder_overdue_actions",
    "nudge",
)
WIDE = {
    "schedule_form",
    "log_form",
    "session_logged",
    "my_sessions",
    "my_actions",
    "change_makers",
    "mir_stats",
}
# Every `action` a Making It Real card may send (dialogs/making_it_real.py reads exactly these).
CARD_ACTIONS = {
    "mir_schedule_submit",
    "mir_log_submit",
    "mir_form_cancel",
    "mir_action_details",
    "mir_reschedule",
    "mir_cancel_session",
    "mir_log",
    "mir_action_status",
    "mir_action_due",
    "mir_nudge",
    "idea_from_action",
}
COMMANDS = {"schedule session", "log session", "my sessions", "my actions"}

# Quotes, backslashes, a newline, template syntax, markdown, HTML, emoji and right-to-left text.
HOSTILE = (
    'He said "stop" \\ C:\\path\\n\nsecond line\t{{ 7*7 }} {% raw %} {# x #} </script>'
    " **bold** 🎉👩🏽‍💻 مرحبا بكم في كامبريدج"
)
# As short as a theme or a name shown cut short in the figures, and as nasty.
HOSTILE_SHORT = '"q" \\ {{ 7*7 }} {% if %} **b** 🎉 مرحبا'
# Realistic text at the contract's limits: 120 for a team or owner, 300 for a change, 1000.
LONG = "Agree a shared checklist for new starters and review it monthly with the team. " * 20
TEAM_MAX, CHANGE_MAX, TEXT_MAX = LONG[:120], LONG[:300], LONG[:1000]
NAME = "Priya Ramaswamy-Hughes"


@pytest.fixture(scope="session")
def validator() -> TeamsCardValidator:
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


# --- data -------------------------------------------------------------------------------------


IN_DIARY = session(1, "scheduled", date(2022, 6, 21), "Revenues team")
AWAITING = session(2, "scheduled", date(2022, 6, 10), "Customer Service Centre")
HELD = session(
    3,
    "held",
    date(2022, 6, 13),
    "Benefits team",
    attendees=6,
    themes="Paperwork, Duplicate data entry; phone queues",
    went_well="Everyone spoke",
    to_change="Shorter introduction",
    rating=4,
)
CANCELLED = session(4, "cancelled", date(2022, 6, 22), "Cancelled team")
SCHEDULED_TODAY = session(5, "scheduled", TODAY, "Planning team", start_time=None)
OVERDUE = action(11, "Scan forms at the counter", due_date=date(2022, 6, 1), overdue=True)
IN_PROGRESS = action(12, "One shared contact log", status="in_progress", owner="Sam Patel")
LATER = action(13, "Call-back slots on Mondays", due_date=date(2022, 7, 4))
DONE = action(14, "A finished action", status="done")
DROPPED = action(15, "A dropped action", status="dropped", status_reason="No budget")
ACTIONS = [LATER, IN_PROGRESS, OVERDUE]
PEOPLE = [
    person(21, "Ahmed Khan", next_session=IN_DIARY),
    person(22, "Bea Morgan", sessions_held=1, awaiting_log=1, open_actions=3, overdue_actions=1),
    person(23, "Cal Davies", service_area=None, reachable=False, nothing_scheduled=True),
]
STATS = MirStats(
    overall=block(
        "Whole programme",
        change_makers=4,
        sessions_held=20,
        sessions_in_diary=13,
        awaiting_log=2,
        nothing_scheduled=("Cal Davies", "Dee Evans"),
        actions_agreed=40,
        actions_done=10,
        actions_overdue=3,
        top_themes=(("Paperwork", 5), ("Phone queues", 3), ("Duplicate data entry", 2)),
        average_rating=4.25,
        ratings=4,
        latest_feedback=(
            feedback(date(2022, 6, 13), "Benefits team", to_change="Shorter introduction"),
            feedback(date(2022, 6, 9), "Revenues team", rating=None, went_well=None),
        ),
    ),
    by_area=(
        block("Revenues and Benefits"),
        block("No service area", nothing_scheduled=(), average_rating=None, ratings=0),
    ),
    unreachable=("Cal Davies",),
)
SCHEDULE_VALUES = {"date": "2022-06-21", "time": "10:00", "team": "Revenues team", "expected": "8"}
LOG_VALUES = {
    "scheduled": "2",
    "date": "2022-06-10",
    "team": "Customer Service Centre",
    "attendees": "6",
    "themes": "Paperwork, phone queues",
    "changes": "Scan forms at the counter\nOne shared contact log",
    "went_well": "Everyone spoke",
    "to_change": "Shorter introduction",
    "rating": "4",
}


def _hostile_session(session_id: int, status: str, day: date) -> SessionView:
    return session(
        session_id,
        status,
        day,
        HOSTILE,
        change_maker_name="Name " + HOSTILE,
        attendees=6 if status == "held" else None,
        themes="Themes " + HOSTILE,
        went_well="Well " + HOSTILE,
        to_change="Change " + HOSTILE,
        rating=5 if status == "held" else None,
    )


def _hostile_action(action_id: int, **fields: Any) -> ActionView:
    return action(
        action_id,
        "Action " + HOSTILE,
        owner="Owner " + HOSTILE,
        session_team="Team " + HOSTILE,
        **fields,
    )


# Many rows, every free text at its limit.
def _many_sessions(count: int) -> list[SessionView]:
    statuses = ("held", "scheduled", "scheduled", "cancelled")
    return [
        session(
            100 + index,
            statuses[index % 4],
            TODAY + timedelta(days=index % 60 - 30),
            TEAM_MAX,
            attendees=500,
            expected_attendees=500,
        )
        for index in range(count)
    ]


def _many_actions(count: int) -> list[ActionView]:
    return [
        action(
            1000 + index,
            CHANGE_MAX,
            owner=TEAM_MAX,
            session_team=TEAM_MAX,
            due_date=TODAY + timedelta(days=index % 40 - 20),
            overdue=index % 40 < 20,
            status=("open", "in_progress")[index % 2],
        )
        for index in range(count)
    ]


def _many_people(count: int) -> list[ChangeMakerSummary]:
    return [
        person(
            1000 + index,
            LONG[:120],
            service_area=TEAM_MAX,
            sessions_held=index,
            next_session=replace(IN_DIARY, team=TEAM_MAX) if index % 2 else None,
            awaiting_log=index % 3,
            open_actions=index,
            overdue_actions=index % 5,
            reachable=index % 3 != 0,
            nothing_scheduled=index % 4 == 0,
        )
        for index in range(count)
    ]


def _huge_stats() -> MirStats:
    def huge_block(label: str) -> StatsBlock:
        return block(
            label,
            change_makers=400,
            nothing_scheduled=tuple(f"{NAME} {index}" for index in range(300)),
            top_themes=tuple((TEXT_MAX, 50 - index) for index in range(5)),
            latest_feedback=tuple(
                feedback(TODAY, TEAM_MAX, went_well=TEXT_MAX, to_change=TEXT_MAX) for _ in range(3)
            ),
        )

    return MirStats(
        overall=huge_block("Whole programme"),
        by_area=tuple(huge_block(f"Service area {index}") for index in range(40)),
        unreachable=tuple(f"{NAME} {index}" for index in range(300)),
    )


# Every Making It Real card in the states it is sent in.
MATRIX: dict[str, dict[str, dict[str, Any]]] = {
    "schedule_form": {
        "empty": {
            "values": {},
            "errors": {},
            "form_id": FORM_ID,
            "session_id": None,
            "today": TODAY,
        },
        "typical": {
            "values": SCHEDULE_VALUES,
            "errors": {},
            "form_id": FORM_ID,
            "session_id": 1,
            "today": TODAY,
        },
        "errors": {
            "values": {"date": "2022-06-01", "time": "", "team": "", "expected": "-3"},
            "errors": {
                "date": "The date can't be in the past: choose today or a later date.",
                "time": "Choose the start time.",
                "team": "Enter the team or service area (1 to 120 characters).",
                "expected": "Enter a whole number from 1 to 500.",
                "form": "This form is out of date.",
            },
            "form_id": FORM_ID,
            "session_id": None,
            "today": TODAY,
        },
        "hostile": {
            "values": {key: HOSTILE for key in ("date", "time", "team", "expected")},
            "errors": {key: HOSTILE for key in ("date", "time", "team", "expected")},
            "form_id": HOSTILE,
            "session_id": None,
            "today": TODAY,
        },
        "huge": {
            "values": {"date": "2022-06-21", "time": "10:00", "team": LONG, "expected": "500"},
            "errors": {"team": "Keep the team to 120 characters."},
            "form_id": FORM_ID,
            "session_id": 7,
            "today": TODAY,
        },
    },
    "log_form": {
        "empty": {
            "values": {},
            "errors": {},
            "form_id": FORM_ID,
            "scheduled": [],
            "today": TODAY,
        },
        "typical": {
            "values": LOG_VALUES,
            "errors": {},
            "form_id": FORM_ID,
            "scheduled": [AWAITING, IN_DIARY],
            "today": TODAY,
        },
        "errors": {
            "values": LOG_VALUES | {"date": "2022-06-30", "attendees": "0", "themes": ""},
            "errors": {
                "date": "The date can't be in the future: choose today or an earlier date.",
                "attendees": "Enter a whole number from 1 to 500.",
                "themes": "Enter the themes you discussed (1 to 1,000 characters).",
                "changes": "Line 3 is longer than 300 characters.",
                "rating": "Choose a rating from 1 to 5.",
                "scheduled": "That session isn't one of yours any more.",
            },
            "form_id": FORM_ID,
            "scheduled": [AWAITING],
            "today": TODAY,
        },
        "hostile": {
            "values": {key: HOSTILE for key in LOG_VALUES},
            "errors": {key: HOSTILE for key in LOG_VALUES},
            "form_id": HOSTILE,
            "scheduled": [_hostile_session(2, "scheduled", date(2022, 6, 10))],
            "today": TODAY,
        },
        "huge": {
            "values": LOG_VALUES
            | {
                "scheduled": "399",
                "team": TEAM_MAX,
                "themes": TEXT_MAX,
                "changes": "\n".join([CHANGE_MAX] * 15),
                "went_well": TEXT_MAX,
                "to_change": TEXT_MAX,
            },
            "errors": {},
            "form_id": FORM_ID,
            "scheduled": [s for s in _many_sessions(400) if s.status == "scheduled" or s.id == 399],
            "today": TODAY,
        },
    },
    "session_logged": {
        "empty": {"session": HELD, "actions": [], "notice": None, "errors": {}, "values": {}},
        "typical": {
            "session": HELD,
            "actions": [OVERDUE, LATER, IN_PROGRESS],
            "notice": "Logged, thank you!",
            "errors": {},
            "values": {},
        },
        "errors": {
            "session": HELD,
            "actions": [OVERDUE, LATER],
            "notice": None,
            "errors": {"owner_11": "Keep the owner to 120 characters.", "due_13": "Not a date."},
            "values": {"owner_11": LONG, "due_11": "", "owner_13": "", "due_13": "soon"},
        },
        "hostile": {
            "session": _hostile_session(3, "held", date(2022, 6, 13)),
            "actions": [_hostile_action(11), _hostile_action(12)],
            "notice": HOSTILE,
            "errors": {"owner_11": HOSTILE, "due_12": HOSTILE},
            "values": {"owner_11": HOSTILE, "due_11": HOSTILE},
        },
        "huge": {
            "session": replace(
                HELD, team=TEAM_MAX, themes=TEXT_MAX, went_well=TEXT_MAX, to_change=TEXT_MAX
            ),
            "actions": _many_actions(15),
            "notice": "Logged, thank you!",
            "errors": {},
            "values": {},
        },
    },
    "my_sessions": {
        "empty": {"sessions": [], "today": TODAY, "notice": None},
        "typical": {
            "sessions": [HELD, IN_DIARY, AWAITING, CANCELLED, SCHEDULED_TODAY],
            "today": TODAY,
            "notice": "Scheduled for Tue 21 June 2022 at 10:00.",
        },
        "errors": {"sessions": [CANCELLED], "today": TODAY, "notice": "Cancelled your session."},
        "hostile": {
            "sessions": [
                _hostile_session(1, "scheduled", date(2022, 6, 21)),
                _hostile_session(2, "scheduled", date(2022, 6, 10)),
                _hostile_session(3, "held", date(2022, 6, 13)),
            ],
            "today": TODAY,
            "notice": HOSTILE,
        },
        "huge": {"sessions": _many_sessions(500), "today": TODAY, "notice": None},
    },
    "my_actions": {
        "empty": {"actions": [], "notice": None, "errors": {}, "today": TODAY},
        "typical": {
            "actions": [LATER, IN_PROGRESS, OVERDUE, DONE, DROPPED],
            "notice": None,
            "errors": {},
            "today": TODAY,
        },
        "errors": {
            "actions": ACTIONS,
            "notice": None,
            "errors": {"reason_11": "Say why (1 to 500 characters).", "due_13": "Not a date."},
            "today": TODAY,
        },
        "hostile": {
            "actions": [
                _hostile_action(11, due_date=date(2022, 6, 1), overdue=True),
                _hostile_action(12, status="in_progress"),
            ],
            "notice": HOSTILE,
            "errors": {"reason_11": HOSTILE, "due_12": HOSTILE},
            "today": TODAY,
        },
        "huge": {
            "actions": _many_actions(400),
            "notice": "Marked as done.",
            "errors": {"reason_1000": "Say why (1 to 500 characters)."},
            "today": TODAY,
        },
    },
    "change_makers": {
        "empty": {"leader_name": "Lena Leader", "people": [], "notice": None, "today": TODAY},
        "typical": {
            "leader_name": "Lena Leader",
            "people": PEOPLE,
            "notice": "Nudge sent to Bea Morgan.",
            "today": TODAY,
        },
        "errors": {
            "leader_name": "Lena Leader",
            "people": [p for p in PEOPLE if not p.reachable],
            "notice": "Cal Davies can't be reached yet.",
            "today": TODAY,
        },
        "hostile": {
            "leader_name": "Leader " + HOSTILE,
            "people": [
                person(
                    21,
                    "Name " + HOSTILE,
                    service_area="Area " + HOSTILE,
                    next_session=_hostile_session(1, "scheduled", date(2022, 6, 21)),
                ),
                person(22, "Other " + HOSTILE, reachable=False, nothing_scheduled=True),
            ],
            "notice": HOSTILE,
            "today": TODAY,
        },
        "huge": {
            "leader_name": LONG[:120],
            "people": _many_people(500),
            "notice": LONG[:200],
            "today": TODAY,
        },
    },
    "mir_stats": {
        "empty": {"stats": EMPTY_STATS, "today": TODAY},
        "typical": {"stats": STATS, "today": TODAY},
        "errors": {
            "stats": replace(STATS, by_area=(), unreachable=tuple(f"Person {n}" for n in range(5))),
            "today": TODAY,
        },
        "hostile": {
            "stats": MirStats(
                overall=block(
                    "Label " + HOSTILE,
                    nothing_scheduled=("Name " + HOSTILE,),
                    top_themes=((HOSTILE_SHORT, 2),),
                    latest_feedback=(
                        feedback(TODAY, "Team " + HOSTILE, went_well=HOSTILE, to_change=HOSTILE),
                    ),
                ),
                by_area=(
                    block(
                        "Area " + HOSTILE,
                        top_themes=((HOSTILE_SHORT, 1),),
                        nothing_scheduled=("Area name " + HOSTILE,),
                        latest_feedback=(feedback(TODAY, HOSTILE_SHORT, went_well=HOSTILE),),
                    ),
                ),
                unreachable=("Unreachable " + HOSTILE,),
            ),
            "today": TODAY,
        },
        "huge": {"stats": _huge_stats(), "today": TODAY},
    },
    "reminder_log_session": {
        "empty": {"session": replace(AWAITING, start_time=None, expected_attendees=None)},
        "typical": {"session": AWAITING},
        "errors": {"session": replace(AWAITING, session_date=date(2022, 5, 2))},
        "hostile": {"session": _hostile_session(2, "scheduled", date(2022, 6, 10))},
        "huge": {"session": replace(AWAITING, team=TEAM_MAX, change_maker_name=LONG[:120])},
    },
    "reminder_nothing_scheduled": {
        "empty": {"name": ""},
        "typical": {"name": "Cal Davies"},
        "errors": {"name": "O'Brien-Smith"},
        "hostile": {"name": HOSTILE},
        "huge": {"name": LONG[:120]},
    },
    "reminder_overdue_actions": {
        "empty": {"name": "Bea Morgan", "actions": []},
        "typical": {"name": "Bea Morgan", "actions": [OVERDUE]},
        "errors": {"name": "Bea Morgan", "actions": [OVERDUE, replace(OVERDUE, id=16)]},
        "hostile": {
            "name": HOSTILE,
            "actions": [_hostile_action(11, due_date=date(2022, 6, 1), overdue=True)],
        },
        "huge": {"name": LONG[:120], "actions": _many_actions(300)},
    },
    "nudge": {
        "empty": {"name": "", "leader_name": ""},
        "typical": {"name": "Cal Davies", "leader_name": "Lena Leader"},
        "errors": {"name": "Cal Davies", "leader_name": "Transformation Team"},
        "hostile": {"name": HOSTILE, "leader_name": "Leader " + HOSTILE},
        "huge": {"name": LONG[:120], "leader_name": LONG[:120]},
    },
}
MATRIX_CASES = [
    pytest.param(name, context, id=f"{name}-{state}")
    for name, states in MATRIX.items()
    for state, context in states.items()
]


def _show_cards(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in card_nodes(card) if n.get("type") == "Action.ShowCard"]


def _after(card: dict[str, Any], element_id: str) -> dict[str, Any] | None:
    """The element right after the one with `element_id`, in the same list."""
    for node in card_nodes(card):
        for key in ("body", "items"):
            children = node.get(key)
            if isinstance(children, list):
                for index, child in enumerate(children):
                    if isinstance(child, dict) and child.get("id") == element_id:
                        return children[index + 1] if index + 1 < len(children) else None
    raise AssertionError(f"no element {element_id!r}")


def _render(name: str, state: str, **changes: Any) -> dict[str, Any]:
    return render_card(name, **(MATRIX[name][state] | changes))


# --- every card, every state ------------------------------------------------------------------


def test_every_mir_card_is_in_the_matrix_in_every_state() -> None:
    assert set(MATRIX) == set(MIR_CARDS)
    for states in MATRIX.values():
        assert set(states) == {"empty", "typical", "errors", "hostile", "huge"}


@pytest.mark.parametrize(("name", "context"), MATRIX_CASES)
def test_card_is_valid_small_and_plain(
    validator: TeamsCardValidator, name: str, context: dict[str, Any]
) -> None:
    card = render_card(name, **context)
    check_valid_small_and_plain(validator, card, wide=name in WIDE, max_bytes=MAX_CARD_BYTES)


@pytest.mark.parametrize(("name", "context"), MATRIX_CASES)
def test_buttons_send_only_the_contracted_data(name: str, context: dict[str, Any]) -> None:
    card = render_card(name, **context)
    for button in card_submits(card):
        data = button["data"]
        assert isinstance(data, dict)
        if "command" in data:
            assert button == {
                "type": "Action.Submit",
                "title": button["title"],
                "data": {"command": data["command"]},
            }
            assert data["command"] in COMMANDS
        else:
            assert data["action"] in CARD_ACTIONS
    for node in card_nodes(card):
        assert node.get("type") not in ("Action.OpenUrl", "Action.Execute")


def test_static_text_uses_only_markdown_teams_renders() -> None:
    for name, states in MATRIX.items():
        for state in ("empty", "typical", "errors"):
            for text in card_texts(render_card(name, **states[state])):
                for line in text.splitlines():
                    assert not line.lstrip().startswith(("#", "|")), line
                assert "<" not in text, text


# --- hostile strings come back verbatim ------------------------------------------------------


HOSTILE_EXPECTED: dict[str, list[str]] = {
    "schedule_form": [HOSTILE],
    "log_form": [HOSTILE, "Fri 10 June 2022 · " + HOSTILE],
    "session_logged": [
        HOSTILE,
        "Themes " + HOSTILE,
        "Well " + HOSTILE,
        "Change " + HOSTILE,
        "Action " + HOSTILE,
    ],
    "my_sessions": [HOSTILE],
    "my_actions": ["Action " + HOSTILE, "Owner " + HOSTILE, "Team " + HOSTILE, HOSTILE],
    "change_makers": [
        "Leader " + HOSTILE,
        "Name " + HOSTILE,
        "Area " + HOSTILE,
        "Other " + HOSTILE,
        HOSTILE,
    ],
    "mir_stats": [
        "Label " + HOSTILE,
        "Name " + HOSTILE,
        HOSTILE_SHORT,
        "Team " + HOSTILE,
        "Area " + HOSTILE,
        "Area name " + HOSTILE,
        "Unreachable " + HOSTILE,
    ],
    "reminder_log_session": ["Name " + HOSTILE, HOSTILE],
    "reminder_nothing_scheduled": [HOSTILE],
    "reminder_overdue_actions": [HOSTILE, "Action " + HOSTILE, "Team " + HOSTILE],
    "nudge": [HOSTILE, "Leader " + HOSTILE],
}


@pytest.mark.parametrize("name", MIR_CARDS)
def test_hostile_strings_come_back_verbatim(name: str) -> None:
    card = _render(name, "hostile")
    shown = card_text(card)
    for text in HOSTILE_EXPECTED[name]:
        assert text in shown, text[:40]
    assert "49" not in json.dumps(card, ensure_ascii=False), "template syntax is not evaluated"


def test_hostile_form_entries_are_kept_exactly() -> None:
    schedule = card_inputs(_render("schedule_form", "hostile"))
    assert schedule["team"]["value"] == HOSTILE
    assert schedule["date"]["value"] == HOSTILE and schedule["time"]["value"] == HOSTILE
    assert "value" not in schedule["expected"], "a number input cannot show text"
    log = card_inputs(_render("log_form", "hostile"))
    for key in ("team", "themes", "changes", "went_well", "to_change", "rating", "scheduled"):
        assert log[key]["value"] == HOSTILE, key
    submit = find_action(_render("log_form", "hostile"), "Log session")
    assert submit["data"] == {"action": "mir_log_submit", "form": HOSTILE}


# --- the schedule form -----------------------------------------------------------------------


def test_schedule_form_inputs() -> None:
    inputs = card_inputs(_render("schedule_form", "empty"))
    assert {key: node["type"] for key, node in inputs.items()} == {
        "date": "Input.Date",
        "time": "Input.Time",
        "team": "Input.Text",
        "expected": "Input.Number",
    }
    assert all(node["isRequired"] for node in inputs.values())
    assert inputs["date"]["min"] == "2022-06-14"
    assert inputs["team"]["maxLength"] == 120
    assert (inputs["expected"]["min"], inputs["expected"]["max"]) == (1, 500)
    assert "120" in inputs["team"]["errorMessage"]
    assert "1 to 500" in inputs["expected"]["errorMessage"]
    assert inputs["team"]["placeholder"].startswith("For example")
    assert input_values(_render("schedule_form", "empty")) == {
        "date": "",
        "time": "",
        "team": "",
        "expected": "",
    }


def test_schedule_form_new_and_reschedule() -> None:
    new = _render("schedule_form", "empty")
    assert card_texts(new)[0] == "Schedule a Making It Real session"
    assert new["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Schedule session",
            "data": {"action": "mir_schedule_submit", "form": FORM_ID, "session": None},
        },
        {
            "type": "Action.Submit",
            "title": "Cancel",
            "data": {"action": "mir_form_cancel"},
            "associatedInputs": "none",
        },
    ]
    moved = _render("schedule_form", "typical")
    assert card_texts(moved)[0] == "Reschedule your session"
    assert moved["actions"][0] == {
        "type": "Action.Submit",
        "title": "Reschedule session",
        "data": {"action": "mir_schedule_submit", "form": FORM_ID, "session": 1},
    }
    assert moved["actions"][1]["associatedInputs"] == "none"
    assert input_values(moved) == {
        "date": "2022-06-21",
        "time": "10:00",
        "team": "Revenues team",
        "expected": 8,
    }


def test_schedule_form_shows_each_reason_under_its_field_and_a_summary() -> None:
    context = MATRIX["schedule_form"]["errors"]
    card = render_card("schedule_form", **context)
    summary, form_reason, title = card["body"][:3]
    assert summary["color"] == "attention"
    assert summary["text"] == "5 answers need another look: see the notes in red below."
    assert form_reason["text"] == "This form is out of date."
    assert title["text"] == "Schedule a Making It Real session"
    for key in ("date", "time", "team", "expected"):
        reason = _after(card, key)
        assert reason is not None
        assert (reason["text"], reason["color"]) == (context["errors"][key], "attention")
    values = input_values(card)
    assert (values["date"], values["team"], values["expected"]) == ("2022-06-01", "", -3)

    clean = _render("schedule_form", "typical")
    assert not any(n.get("color") == "attention" for n in card_nodes(clean))
    one = render_card("schedule_form", **(context | {"errors": {"team": "Too long."}}))
    assert one["body"][0]["text"] == "One answer needs another look: see the note in red below."


def test_number_inputs_keep_what_can_be_a_number() -> None:
    for typed, shown in (("8", 8), (" 12 ", 12), ("2.5", 2.5), ("", None), ("eight", None)):
        card = _render("schedule_form", "typical", values=SCHEDULE_VALUES | {"expected": typed})
        assert card_inputs(card)["expected"].get("value") == shown, typed


# --- the log form ----------------------------------------------------------------------------


def test_log_form_inputs_and_limits() -> None:
    card = _render("log_form", "typical")
    inputs = card_inputs(card)
    assert {key: node["type"] for key, node in inputs.items()} == {
        "scheduled": "Input.ChoiceSet",
        "date": "Input.Date",
        "team": "Input.Text",
        "attendees": "Input.Number",
        "themes": "Input.Text",
        "changes": "Input.Text",
        "went_well": "Input.Text",
        "to_change": "Input.Text",
        "rating": "Input.ChoiceSet",
    }
    required = {key for key, node in inputs.items() if node.get("isRequired")}
    assert required == {"date", "team", "attendees", "themes", "rating"}
    assert inputs["date"]["max"] == "2022-06-14" and "min" not in inputs["date"]
    assert inputs["team"]["maxLength"] == 120
    assert (inputs["attendees"]["min"], inputs["attendees"]["max"]) == (1, 500)
    assert inputs["themes"]["maxLength"] == 1000 and inputs["themes"]["isMultiline"]
    assert inputs["changes"]["isMultiline"] and "one change per line" in (
        inputs["changes"]["placeholder"].lower()
    )
    assert inputs["changes"]["maxLength"] == 15 * 300 + 14
    for key in ("went_well", "to_change"):
        assert inputs[key]["maxLength"] == 1000 and inputs[key]["isMultiline"]
        assert "(optional)" in inputs[key]["label"]
    assert inputs["scheduled"]["style"] == "compact"
    assert inputs["scheduled"]["choices"] == [
        {"title": "Fri 10 June 2022 · Customer Service Centre", "value": "2"},
        {"title": "Tue 21 June 2022 · Revenues team", "value": "1"},
        {"title": "Not one I scheduled", "value": ""},
    ]
    assert inputs["rating"]["choices"] == [
        {"title": "1 – poor", "value": "1"},
        {"title": "2 – fair", "value": "2"},
        {"title": "3 – good", "value": "3"},
        {"title": "4 – very good", "value": "4"},
        {"title": "5 – excellent", "value": "5"},
    ]
    assert card["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Log session",
            "data": {"action": "mir_log_submit", "form": FORM_ID},
        },
        {
            "type": "Action.Submit",
            "title": "Cancel",
            "data": {"action": "mir_form_cancel"},
            "associatedInputs": "none",
        },
    ]
    assert input_values(card) == LOG_VALUES | {"attendees": 6}


def test_log_form_without_scheduled_sessions_offers_only_not_scheduled() -> None:
    inputs = card_inputs(_render("log_form", "empty"))
    assert inputs["scheduled"]["choices"] == [{"title": "Not one I scheduled", "value": ""}]
    assert inputs["scheduled"]["value"] == ""
    assert "value" not in inputs["rating"] and "value" not in inputs["date"]


def test_log_form_shows_each_reason_under_its_field() -> None:
    context = MATRIX["log_form"]["errors"]
    card = render_card("log_form", **context)
    assert card["body"][0]["text"].startswith("6 answers need another look")
    assert card["body"][1]["text"] == "Log a Making It Real session", "no form-wide reasons"
    for key, reason in context["errors"].items():
        if key == "changes":
            # The hint about the limits sits between the field and its reason.
            hint = _after(card, "changes")
            assert hint is not None and "15" in hint["text"] and "300" in hint["text"]
            assert reason in card_texts(card)
            continue
        shown = _after(card, key)
        assert shown is not None and shown["text"] == reason, key
    assert input_values(card)["themes"] == ""
    assert input_values(card)["date"] == "2022-06-30", "the refused date is kept to correct"


def test_log_form_offers_at_most_thirty_sessions_and_always_the_chosen_one() -> None:
    context = MATRIX["log_form"]["huge"]
    card = render_card("log_form", **context)
    choices = card_inputs(card)["scheduled"]["choices"]
    assert len(context["scheduled"]) > 200
    assert len(choices) == 30 + 1 + 1
    assert choices[-2]["value"] == "399" and choices[-1]["value"] == ""
    assert card_inputs(card)["changes"]["value"] == context["values"]["changes"]


# --- a logged session ------------------------------------------------------------------------


def test_session_logged_asks_for_owners_and_due_dates() -> None:
    card = _render("session_logged", "typical")
    texts = card_texts(card)
    assert texts[0] == "Logged, thank you!"
    assert "Your session on Mon 13 June 2022" in texts
    assert "Benefits team · 6 people took part · format rated 4 – very good" in texts
    assert "Paperwork, Duplicate data entry; phone queues" in texts
    for change in ("Scan forms at the counter", "Call-back slots on Mondays"):
        assert change in texts
    inputs = card_inputs(card)
    assert {key: node["type"] for key, node in inputs.items()} == {
        "owner_11": "Input.Text",
        "due_11": "Input.Date",
        "owner_13": "Input.Text",
        "due_13": "Input.Date",
        "owner_12": "Input.Text",
        "due_12": "Input.Date",
    }
    assert all(inputs[f"owner_{i}"]["maxLength"] == 120 for i in (11, 12, 13))
    assert not any(node.get("isRequired") for node in inputs.values())
    assert input_values(card) == {
        "owner_11": "",
        "due_11": "2022-06-01",
        "owner_13": "",
        "due_13": "2022-07-04",
        "owner_12": "Sam Patel",
        "due_12": "",
    }
    assert card["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Save owners and due dates",
            "data": {"action": "mir_action_details", "session": 3},
        },
        {"type": "Action.Submit", "title": "My actions", "data": {"command": "my actions"}},
    ]


def test_session_logged_keeps_what_was_typed_and_shows_reasons() -> None:
    context = MATRIX["session_logged"]["errors"]
    card = render_card("session_logged", **context)
    assert input_values(card) == {
        "owner_11": LONG,
        "due_11": "",
        "owner_13": "",
        "due_13": "soon",
    }, "typed entries win over the stored owner and due date, even when emptied"
    for key, reason in context["errors"].items():
        shown = _after(card, key)
        assert shown is not None and (shown["text"], shown["color"]) == (reason, "attention")
    assert card["body"][0]["text"].startswith("2 answers need another look")


def test_session_logged_without_changes_says_so() -> None:
    card = _render("session_logged", "empty")
    assert "No changes were listed, so there are no follow-up actions." in card_texts(card)
    assert card_inputs(card) == {}
    assert card_buttons(card) == [("My actions", {"command": "my actions"})]


# --- my sessions -----------------------------------------------------------------------------


def test_my_sessions_buttons_by_state() -> None:
    card = _render("my_sessions", "typical")
    assert card_buttons(card) == [
        ("Log it", {"action": "mir_log", "session": 2}),
        ("Reschedule", {"action": "mir_reschedule", "session": 2}),
        ("Cancel", {"action": "mir_cancel_session", "session": 2}),
        ("Reschedule", {"action": "mir_reschedule", "session": 5}),
        ("Cancel", {"action": "mir_cancel_session", "session": 5}),
        ("Reschedule", {"action": "mir_reschedule", "session": 1}),
        ("Cancel", {"action": "mir_cancel_session", "session": 1}),
        ("Schedule a session", {"command": "schedule session"}),
        ("Log a session", {"command": "log session"}),
    ]
    texts = card_texts(card)
    assert texts[0] == "Scheduled for Tue 21 June 2022 at 10:00."
    assert texts.index("Awaiting your log") < texts.index("In the diary") < texts.index("Held")
    assert "Fri 10 June 2022 at 10:00" in texts
    assert "Tue 14 June 2022" in texts, "dated today: in the diary, without a time"
    assert "Benefits team · 6 people took part" in texts
    assert not any("Cancelled team" in text for text in texts)


def test_my_sessions_when_there_are_none() -> None:
    for state in ("empty", "errors"):
        card = _render("my_sessions", state)
        assert any(text.startswith("You have no sessions yet.") for text in card_texts(card))
        assert [data for _, data in card_buttons(card)] == [
            {"command": "schedule session"},
            {"command": "log session"},
        ]


def test_my_sessions_caps_each_part() -> None:
    card = _render("my_sessions", "huge")
    texts = card_texts(card)
    sessions = MATRIX["my_sessions"]["huge"]["sessions"]
    held = sum(s.status == "held" for s in sessions)
    awaiting = sum(s.status == "scheduled" and s.session_date < TODAY for s in sessions)
    diary = sum(s.status == "scheduled" and s.session_date >= TODAY for s in sessions)
    assert min(held, awaiting, diary) > 10
    assert f"…and {held - 10} more sessions held not shown here." in texts
    assert f"…and {awaiting - 10} more sessions awaiting a log not shown here." in texts
    assert f"…and {diary - 10} more sessions in the diary not shown here." in texts
    assert sum(title == "Log it" for title, _ in card_buttons(card)) == 10


# --- my actions ------------------------------------------------------------------------------


def test_my_actions_lists_open_actions_overdue_first_with_their_buttons() -> None:
    card = _render("my_actions", "typical")
    texts = card_texts(card)
    assert texts[:2] == [
        "My actions",
        "3 open actions, 1 overdue. These are the changes your teams agreed in your sessions.",
    ]
    order = [t for t in texts if t in {a.text for a in (OVERDUE, IN_PROGRESS, LATER)}]
    assert order == [OVERDUE.text, LATER.text, IN_PROGRESS.text], "overdue, then by due date"
    assert "Overdue: was due Wed 1 June 2022" in texts
    assert "Due Mon 4 July 2022" in texts and "No due date · owner: Sam Patel · in progress" in (
        texts
    )
    assert not any(text in texts for text in (DONE.text, DROPPED.text))
    assert card_buttons(card) == [
        ("In progress", {"action": "mir_action_status", "id": 11, "status": "in_progress"}),
        ("Done", {"action": "mir_action_status", "id": 11, "status": "done"}),
        ("Drop action", {"action": "mir_action_status", "id": 11, "status": "dropped"}),
        ("Save due date", {"action": "mir_action_due", "id": 11}),
        ("Make it an idea", {"action": "idea_from_action", "id": 11}),
        ("In progress", {"action": "mir_action_status", "id": 13, "status": "in_progress"}),
        ("Done", {"action": "mir_action_status", "id": 13, "status": "done"}),
        ("Drop action", {"action": "mir_action_status", "id": 13, "status": "dropped"}),
        ("Save due date", {"action": "mir_action_due", "id": 13}),
        ("Make it an idea", {"action": "idea_from_action", "id": 13}),
        ("Done", {"action": "mir_action_status", "id": 12, "status": "done"}),
        ("Drop action", {"action": "mir_action_status", "id": 12, "status": "dropped"}),
        ("Save due date", {"action": "mir_action_due", "id": 12}),
        ("Make it an idea", {"action": "idea_from_action", "id": 12}),
        ("My sessions", {"command": "my sessions"}),
        ("Log a session", {"command": "log session"}),
    ]


def test_an_action_that_became_an_idea_says_so_instead_of_offering_it() -> None:
    card = render_card(
        "my_actions", **(MATRIX["my_actions"]["typical"] | {"ideas_by_action": {11: "IDEA-0042"}})
    )
    assert "Submitted as idea IDEA-0042" in card_texts(card)
    offered = [d["id"] for t, d in card_buttons(card) if t == "Make it an idea"]
    assert offered == [13, 12]


def test_drop_and_change_due_date_open_small_forms() -> None:
    card = _render("my_actions", "typical")
    shows = _show_cards(card)
    assert [s["title"] for s in shows] == ["Drop…", "Change due date…"] * 3
    drop, due = shows[:2]
    assert drop["card"]["type"] == due["card"]["type"] == "AdaptiveCard"
    (reason,) = drop["card"]["body"]
    assert {k: reason[k] for k in ("type", "id", "isRequired", "maxLength", "isMultiline")} == {
        "type": "Input.Text",
        "id": "reason_11",
        "isRequired": True,
        "maxLength": 500,
        "isMultiline": True,
    }
    assert reason["label"] and "500" in reason["errorMessage"]
    assert drop["card"]["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Drop action",
            "data": {"action": "mir_action_status", "id": 11, "status": "dropped"},
        }
    ]
    (new_due,) = due["card"]["body"]
    assert {k: new_due[k] for k in ("type", "id", "isRequired", "value")} == {
        "type": "Input.Date",
        "id": "due_11",
        "isRequired": True,
        "value": "2022-06-01",
    }
    assert due["card"]["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Save due date",
            "data": {"action": "mir_action_due", "id": 11},
        }
    ]
    undated = next(s for s in shows if s["card"]["body"][0]["id"] == "due_12")
    assert "value" not in undated["card"]["body"][0]


def test_my_actions_reasons_show_on_the_action_and_in_its_form() -> None:
    context = MATRIX["my_actions"]["errors"]
    card = render_card("my_actions", **context)
    texts = card_texts(card)
    assert texts[0] == "2 answers need another look: see the notes in red below."
    for reason in context["errors"].values():
        assert texts.count(reason) == 2, "under the action, and under the input in its form"
    drop = next(s for s in _show_cards(card) if s["card"]["body"][0]["id"] == "reason_11")
    assert drop["card"]["body"][1]["text"] == context["errors"]["reason_11"]


def test_my_actions_when_there_are_none() -> None:
    card = _render("my_actions", "empty")
    assert "You have no open actions." in " ".join(card_texts(card))
    assert _show_cards(card) == []
    only_closed = _render("my_actions", "empty", actions=[DONE, DROPPED])
    assert any(t.startswith("You have no open actions.") for t in card_texts(only_closed))


def test_my_actions_caps_the_list_and_keeps_the_most_pressing() -> None:
    card = _render("my_actions", "huge")
    assert sum(title == "Done" for title, _ in card_buttons(card)) == 10
    assert "…and 390 more open actions not shown here." in card_texts(card)
    marks = [t for t in card_texts(card) if t.startswith("Overdue")]
    assert len(marks) == 10, "200 are overdue: those come first"
    assert card_size(card) < MAX_CARD_BYTES


# --- a Change Leader's view ------------------------------------------------------------------


def test_change_makers_shows_each_and_nudges_only_the_reachable() -> None:
    card = _render("change_makers", "typical")
    texts = card_texts(card)
    assert texts[:4] == [
        "Nudge sent to Bea Morgan.",
        "Your Change Makers",
        "Where they stand on Tue 14 June 2022, for Lena Leader.",
        "3 Change Makers · 1 with nothing scheduled · 1 can't be reached yet.",
    ]
    assert "Next session: Tue 21 June 2022 at 10:00 · Revenues team" in texts
    assert "1 session held · 1 awaiting its log · 3 open actions, 1 overdue" in texts
    assert "0 sessions held · 0 open actions" in texts
    assert "No session in the diary" in texts
    assert "Nothing scheduled" in texts
    assert "Can't be reached yet: they haven't opened the app in Teams." in texts
    assert card_buttons(card) == [
        ("Nudge", {"action": "mir_nudge", "person": 21}),
        ("Nudge", {"action": "mir_nudge", "person": 22}),
    ]
    assert "actions" not in card


def test_change_makers_when_there_are_none() -> None:
    card = _render("change_makers", "empty")
    assert any(t.startswith("No Change Makers are assigned to you yet.") for t in card_texts(card))
    assert card_buttons(card) == []


def test_change_makers_caps_the_list() -> None:
    card = _render("change_makers", "huge")
    assert "…and 470 more Change Makers not shown here." in card_texts(card)
    nudged = [data["person"] for title, data in card_buttons(card) if title == "Nudge"]
    assert nudged == [1000 + i for i in range(30) if i % 3 != 0]


# --- the programme's figures -----------------------------------------------------------------


def test_mir_stats_shows_the_programme_then_each_area() -> None:
    card = _render("mir_stats", "typical")
    (overall, *_rest) = [n for n in card_nodes(card) if n.get("type") == "FactSet"]
    assert [(f["title"], f["value"]) for f in overall["facts"]] == [
        ("Change Makers", "4"),
        ("Sessions held", "20"),
        ("In the diary", "13"),
        ("Awaiting a log", "2"),
        ("Nothing scheduled", "2"),
        ("Actions agreed", "40"),
        ("Actions done", "10"),
        ("Actions overdue", "3"),
        ("Format rating", "4.2 out of 5 (4 ratings)"),
        ("Top themes", "Paperwork (5), Phone queues (3), Duplicate data entry (2)"),
    ]
    texts = card_texts(card)
    assert "Nothing scheduled: Cal Davies, Dee Evans" in texts
    assert "Latest feedback on the format" in texts
    assert "Mon 13 June 2022 · Benefits team · rated 4 – very good" in texts
    assert "To change: Shorter introduction" in texts
    assert "Thu 9 June 2022 · Revenues team" in texts
    areas = texts[texts.index("By service area") :]
    assert areas[1] == "Revenues and Benefits" and "No service area" in areas
    assert (
        "3 Change Makers · 1 held · 1 in the diary · 0 awaiting a log · 1 with nothing "
        "scheduled. Actions: 3 agreed, 1 done, 1 overdue. Format rating: 4.0 out of 5 "
        "(1 rating). Top themes: Paperwork (1), Phone queues (1)."
    ) in areas
    assert "Format rating: No ratings yet." in " ".join(areas)
    assert (
        "Latest feedback (Mon 13 June 2022, Benefits team, rated 4 – very good): "
        "went well: Everyone spoke"
    ) in areas
    assert texts[-1] == (
        "Can't be reached yet (they haven't opened the app in Teams, so reminders can't reach "
        "them): Cal Davies"
    )
    assert card_submits(card) == []


def test_mir_stats_before_anything_happened() -> None:
    card = _render("mir_stats", "empty")
    facts = {
        f["title"]: f["value"]
        for n in card_nodes(card)
        if n.get("type") == "FactSet"
        for f in n["facts"]
    }
    assert facts["Format rating"] == "No ratings yet"
    assert facts["Top themes"] == "None yet"
    assert "By service area" not in card_texts(card)
    assert not any(t.startswith("Can't be reached") for t in card_texts(card))


def test_mir_stats_caps_names_areas_and_long_text() -> None:
    card = _render("mir_stats", "huge")
    texts = card_texts(card)
    assert texts.count("…and 28 more service areas not shown here.") == 1
    assert any(t.endswith(f"{NAME} 29 and 270 more") for t in texts), "programme: 30 names"
    assert any(t.endswith(f"{NAME} 7 and 292 more") for t in texts), "areas: 8 names"
    assert TEXT_MAX not in card_text(card), "long text is cut"


# --- reminders and nudges --------------------------------------------------------------------


def test_reminder_log_session() -> None:
    card = _render("reminder_log_session", "typical")
    assert card_texts(card)[:2] == [
        "How did your session go?",
        "Hi Ahmed Khan, your Making It Real session with Customer Service Centre was on "
        "Fri 10 June 2022 at 10:00.",
    ]
    assert "**stop reminders**" in card_text(card)
    assert card["actions"] == [
        {"type": "Action.Submit", "title": "Log it", "data": {"action": "mir_log", "session": 2}},
        {"type": "Action.Submit", "title": "My sessions", "data": {"command": "my sessions"}},
    ]


def test_reminder_nothing_scheduled() -> None:
    card = _render("reminder_nothing_scheduled", "typical")
    assert any(t.startswith("Hi Cal Davies, you don't have") for t in card_texts(card))
    assert "Type **stop reminders** to turn reminders off" in card_text(card)
    assert find_action(card, "Schedule a session")["data"] == {"command": "schedule session"}
    assert card_buttons(card) == [
        ("Schedule a session", {"command": "schedule session"}),
        ("Log a session", {"command": "log session"}),
    ]


def test_reminder_overdue_actions() -> None:
    card = _render("reminder_overdue_actions", "errors")
    texts = card_texts(card)
    assert (
        "Hi Bea Morgan, these 2 follow-up actions from your Making It Real sessions are past "
        "the due date:"
    ) in texts
    assert texts.count(OVERDUE.text) == 2
    assert "Was due Wed 1 June 2022 · from your session with Benefits team on Mon 13 June 2022" in (
        texts
    )
    assert card_buttons(card) == [("My actions", {"command": "my actions"})]
    one = card_texts(_render("reminder_overdue_actions", "typical"))
    assert any("this follow-up action" in t and "is past the due date" in t for t in one)
    many = _render("reminder_overdue_actions", "huge")
    assert "…and 285 more overdue actions not shown here." in card_texts(many)


def test_nudge() -> None:
    card = _render("nudge", "typical")
    assert (
        "Hi Cal Davies, Lena Leader is checking in on your Making It Real "
        "session. Is it in the diary?"
    ) in card_texts(card)
    assert card_buttons(card) == [
        ("Schedule a session", {"command": "schedule session"}),
        ("My sessions", {"command": "my sessions"}),
    ]


# --- help and welcome --------------------------------------------------------------------------


def test_help_lists_the_making_it_real_commands() -> None:
    staff = card_text(render_card("help", is_admin=False, in_channel=False))
    officer = card_text(render_card("help", is_admin=True, in_channel=False))
    for command in ("schedule session", "log session", "my sessions", "my actions"):
        assert f"**{command}**" in staff
    assert "**stop reminders**" in staff and "**start reminders**" in staff
    assert "**my change makers**" in staff and "For Change Leaders:" in staff
    assert "**mir stats**" not in staff, "only the transformation team can use it"
    assert "**mir stats**" in officer


def test_welcome_introduces_making_it_real() -> None:
    staff = card_text(render_card("welcome", scope="personal", is_admin=False))
    officer = card_text(render_card("welcome", scope="personal", is_admin=True))
    assert "coming later" not in staff
    for command in ("schedule session", "log session", "my sessions", "my actions"):
        assert f"**{command}**" in staff
    assert "**my change makers**" in staff
    assert "**mir stats**" not in staff and "**mir stats**" in officer


# --- filters ---------------------------------------------------------------------------------


def test_mir_filters() -> None:
    assert card_render.date_label(date(2022, 6, 14)) == "Tue 14 June 2022"
    assert card_render.date_label(date(2022, 7, 4)) == "Mon 4 July 2022"
    assert card_render.time_label(time(9, 5)) == "09:05"
    assert card_render.time_label(time(14, 30)) == "14:30"
    assert [card_render.rating_label(r) for r in range(1, 6)] == [
        "1 – poor",
        "2 – fair",
        "3 – good",
        "4 – very good",
        "5 – excellent",
    ]
    with pytest.raises(ValueError, match="6"):
        card_render.rating_label(6)
    assert [card_render.as_number(t) for t in ("8", " 8 ", "-3", "2.5", 7, 1.5)] == [
        8,
        8,
        -3,
        2.5,
        7,
        1.5,
    ]
    for not_a_number in ("", "eight", "nan", "inf", "1e999", float("inf"), None, True, ["8"]):
        assert card_render.as_number(not_a_number) is None, not_a_number


def test_a_context_may_hold_a_name() -> None:
    """render_card's own argument is positional-only: reminders pass the person's `name`."""
    card = render_card("nudge", name="Cal Davies", leader_name="Lena Leader")
    assert "Cal Davies" in card_text(card)


def test_my_actions_shown_again_keeps_what_was_typed() -> None:
    context = MATRIX["my_actions"]["typical"] | {
        "errors": {"reason_11": "Say why.", "due_13": "Choose a real date."},
        "values": {"reason_11": "Too long a reason " * 40, "due_13": "2022-13-45"},
    }
    inputs = card_inputs(render_card("my_actions", **context))
    assert inputs["reason_11"]["value"] == "Too long a reason " * 40
    assert inputs["due_13"]["value"] == "2022-13-45"
