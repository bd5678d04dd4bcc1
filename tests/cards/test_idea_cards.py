"""The small improvement (idea) cards: every one valid and small in every state it can be sent
in (empty, typical, with errors, with hostile strings, with hundreds of ideas), each one emitting
exactly the inputs, button data and Universal Actions verbs the bot reads (the contracts of
/tmp/ideas-contract.md), and none ever naming the submitter of an anonymous idea."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cards import render as card_render
from cards import render_card
from storage import ideas as idea_rules
from storage.views import IdeaView
from tests.support.card_checks import buttons as card_buttons
from tests.support.card_checks import check_valid_small_and_plain
from tests.support.card_checks import inputs as card_inputs
from tests.support.card_checks import submits as card_submits
from tests.support.card_checks import texts as card_texts
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
)
from tests.support.teams import card_nodes, card_text, find_action, input_values
from tests.support.views import idea

MAX_CARD_BYTES = 28 * 1024
FORM_ID = "a1b2c3d4" * 4
IDEA_CARDS = (
    "idea_form",
    "idea_similar",
    "idea_submitted",
    "my_ideas",
    "ideas_list",
    "idea_triage",
    "idea_triage_refused",
    "idea_status_changed",
    "ideas_stale",
)
WIDE = {"idea_form", "idea_similar", "my_ideas", "ideas_list", "idea_triage", "ideas_stale"}
# Every `action` an idea card may send with Action.Submit (dialogs/ideas.py reads these).
CARD_ACTIONS = {"idea_submit", "idea_cancel", "idea_support"}
COMMANDS = {"idea", "my ideas", "ideas", "ideas new", "ideas most supported"}
# The Universal Actions verbs of the triage cards.
VERBS = {"idea_status", "idea_refresh"}
EXECUTE_CARDS = {"idea_triage", "idea_triage_refused"}

# The contract's workflow and labels, written out here so a change on either side shows.
CONTRACT_LABELS = {
    "new": "New",
    "under_review": "Under review",
    "accepted": "Accepted",
    "in_progress": "In progress",
    "implemented": "Implemented",
    "not_taken_forward": "Not taken forward",
    "duplicate": "Duplicate",
}
CONTRACT_TRANSITIONS = {
    "new": ("under_review", "not_taken_forward", "duplicate"),
    "under_review": ("accepted", "not_taken_forward", "duplicate"),
    "accepted": ("in_progress", "implemented", "not_taken_forward"),
    "in_progress": ("implemented", "not_taken_forward"),
    "implemented": (),
    "not_taken_forward": (),
    "duplicate": (),
}
CONTRACT_BENEFITS = {
    "time_saved": "Time saved",
    "money_saved": "Money saved",
    "better_for_residents": "Better for residents",
    "other": "Other",
}

# Quotes, backslashes, a newline, template syntax, markdown, HTML, emoji and right-to-left text.
HOSTILE = (
    'He said "stop" \\ C:\\path\\n\nsecond line\t{{ 7*7 }} {% raw %} {# x #} </script>'
    " **bold** 🎉👩🏽‍💻 مرحبا بكم في كامبريدج"
)
LONG = "Residents wait at the counter while paper forms are copied and sent round by hand. " * 40
TITLE_MAX, TEXT_MAX, OTHER_MAX, REASON_MAX = LONG[:120], LONG[:2000], LONG[:200], LONG[:1000]
# The seven design principles as the form gets them (storage/data/programme.yaml).
PRINCIPLES = [
    (1, "Achieve good outcomes for residents and the environment"),
    (2, "Enable partners, communities and the council to achieve outcomes together"),
    (3, "Use evidence and feedback to adapt and continuously improve"),
    (4, "Make our customer and resident experience simpler, quicker and better"),
    (5, "Offer sound value for money through efficient use of resources"),
    (6, "Make best use of data and digital"),
    (7, "Invest in our people capabilities and empower them to take the initiative"),
]
FORM_VALUES = {
    "title": "Scan post at the counter",
    "problem": "Letters are photocopied and sent round the office by hand.",
    "suggestion": "Scan them at the counter and email them to the right team.",
    "service_area": "Customer Services",
    "principles": "1,3",
    "benefits": "time_saved,other",
    "benefit_other": "Fewer lost letters",
    "anonymous": "false",
}
EMPTY_VALUES = dict.fromkeys(FORM_VALUES, "") | {"anonymous": "false"}
CHANGED = datetime(2022, 6, 14, 15, 0, tzinfo=UTC)

# The submitter of the anonymous ideas below: none of this may appear on any card about them.
SUBMITTER_NAME = "Priya Shah"
SUBMITTER_IDS = (
    SUBMITTER_NAME,
    "priya.shah@cambridge.gov.uk",
    "29:1f2e3d4c-aad-priya",
    "aad-priya-5b6a7c8d",
    "person-918273",
)
ADMIN = "Sam Admin"


@pytest.fixture(scope="session")
def validator() -> TeamsCardValidator:
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


# --- data -------------------------------------------------------------------------------------


def _moved(idea_id: int, status: str, **fields: Any) -> IdeaView:
    """An idea an admin has moved to `status`."""
    defaults: dict[str, Any] = {
        "status_changed_at": CHANGED,
        "last_changed_by": ADMIN,
        "last_reason": None,
    }
    return idea(idea_id, status=status, **(defaults | fields))


NEW = idea(7)
ANONYMOUS = idea(8, "Fewer printed agendas", submitted_by=None, supporters=3)
UNDER_REVIEW = _moved(9, "under_review", supporters=1)
ACCEPTED = _moved(10, "accepted", last_reason="Cheap and quick to do.")
IN_PROGRESS = _moved(11, "in_progress")
IMPLEMENTED = _moved(12, "implemented", last_reason="Scanners arrived in May.", supporters=12)
NOT_TAKEN = _moved(13, "not_taken_forward", last_reason="The new system does this in March.")
DUPLICATE = _moved(14, "duplicate", duplicate_of="IDEA-0003", last_reason="Same as the other.")
EVERY_STATUS = [NEW, UNDER_REVIEW, ACCEPTED, IN_PROGRESS, IMPLEMENTED, NOT_TAKEN, DUPLICATE]


def _hostile_idea(idea_id: int, status: str = "new", **fields: Any) -> IdeaView:
    return idea(
        idea_id,
        "Title " + HOSTILE,
        status=status,
        problem="Problem " + HOSTILE,
        suggestion="Suggestion " + HOSTILE,
        service_area="Area " + HOSTILE,
        benefits=("time_saved", "other"),
        benefit_other="Other " + HOSTILE,
        submitted_by="Name " + HOSTILE,
        last_reason="Reason " + HOSTILE,
        last_changed_by="Admin " + HOSTILE,
        duplicate_of="Ref " + HOSTILE,
        **fields,
    )


def _huge_idea(idea_id: int, status: str = "new") -> IdeaView:
    """An idea with every free text at its limit."""
    return idea(
        idea_id,
        TITLE_MAX,
        status=status,
        problem=TEXT_MAX,
        suggestion=TEXT_MAX,
        service_area="HR and Organisational Development",
        principles=(1, 2, 3, 4, 5, 6, 7),
        benefits=tuple(CONTRACT_BENEFITS),
        benefit_other=OTHER_MAX,
        submitted_by=LONG[:120],
        supporters=99_999,
        last_reason=REASON_MAX if status != "new" else None,
        last_changed_by=LONG[:120] if status != "new" else None,
        duplicate_of="IDEA-9999" if status == "duplicate" else None,
        status_changed_at=CHANGED,
    )


def _many(count: int) -> list[IdeaView]:
    statuses = tuple(CONTRACT_LABELS)
    return [_huge_idea(1000 + index, statuses[index % len(statuses)]) for index in range(count)]


def _form(**changes: Any) -> dict[str, Any]:
    context = {
        "values": FORM_VALUES,
        "errors": {},
        "form_id": FORM_ID,
        "service_areas": idea_rules.SERVICE_AREAS,
        "principles": PRINCIPLES,
    }
    return context | changes


# Every idea card in the states it is sent in.
MATRIX: dict[str, dict[str, dict[str, Any]]] = {
    "idea_form": {
        "empty": _form(values=EMPTY_VALUES),
        "typical": _form(),
        "errors": _form(
            values=FORM_VALUES
            | {
                "title": "x" * 121,
                "problem": "",
                "service_area": "Underwater Basket Weaving",
                "principles": "9",
                "benefits": "",
                "anonymous": "maybe",
            },
            errors={
                "title": "The title must be 120 characters or fewer (this is 121).",
                "problem": "Describe the problem (1 to 2,000 characters).",
                "service_area": "“Underwater Basket Weaving” is not one of the service areas.",
                "principles": "Choose design principles from 1 to 7.",
                "benefits": "Choose at least one expected benefit.",
                "anonymous": "Choose whether to submit anonymously.",
                "form": "This form is out of date: submit it again.",
            },
        ),
        "hostile": _form(
            values=dict.fromkeys(FORM_VALUES, HOSTILE),
            errors=dict.fromkeys(FORM_VALUES, HOSTILE),
            form_id=HOSTILE,
            service_areas=("Area " + HOSTILE,),
            principles=[(1, "Principle " + HOSTILE)],
        ),
        "huge": _form(
            values=FORM_VALUES
            | {
                "title": TITLE_MAX,
                "problem": TEXT_MAX,
                "suggestion": TEXT_MAX,
                "principles": "1,2,3,4,5,6,7",
                "benefits": ",".join(CONTRACT_BENEFITS),
                "benefit_other": OTHER_MAX,
                "anonymous": "true",
            },
            errors={"problem": "The problem must be 2,000 characters or fewer (this is 2,001)."},
        ),
    },
    "idea_similar": {
        "empty": {"similar": [], "form_id": FORM_ID, "values": EMPTY_VALUES},
        "typical": {
            "similar": [NEW, UNDER_REVIEW, ACCEPTED],
            "form_id": FORM_ID,
            "values": FORM_VALUES,
        },
        "errors": {
            "similar": [ANONYMOUS],
            "form_id": FORM_ID,
            "values": FORM_VALUES | {"anonymous": "true"},
        },
        "hostile": {
            "similar": [_hostile_idea(21), _hostile_idea(22, "under_review")],
            "form_id": HOSTILE,
            "values": dict.fromkeys(FORM_VALUES, HOSTILE),
        },
        "huge": {
            "similar": _many(10),
            "form_id": FORM_ID,
            "values": FORM_VALUES
            | {
                "title": TITLE_MAX,
                "problem": TEXT_MAX,
                "suggestion": TEXT_MAX,
                "benefit_other": OTHER_MAX,
            },
        },
    },
    "idea_submitted": {
        "empty": {"idea": idea(1, "A", principles=(), benefits=())},
        "typical": {"idea": NEW},
        "errors": {"idea": ANONYMOUS},
        "hostile": {"idea": _hostile_idea(21)},
        "huge": {"idea": _huge_idea(9999)},
    },
    "my_ideas": {
        "empty": {"ideas": [], "notice": None},
        "typical": {"ideas": [*EVERY_STATUS, ANONYMOUS], "notice": None},
        "errors": {
            "ideas": [replace(NOT_TAKEN, submitted_by=None)],
            "notice": "That idea was already submitted.",
        },
        "hostile": {
            "ideas": [_hostile_idea(21), _hostile_idea(22, "duplicate")],
            "notice": HOSTILE,
        },
        "huge": {"ideas": _many(300), "notice": LONG[:200]},
    },
    "ideas_list": {
        "empty": {"ideas": [], "title": "New ideas", "notice": None},
        "typical": {"ideas": [*EVERY_STATUS, ANONYMOUS], "title": "All ideas", "notice": None},
        "errors": {
            "ideas": [ANONYMOUS],
            "title": "Ideas for design principle 3",
            "notice": "Only ideas with supporters are shown.",
        },
        "hostile": {
            "ideas": [_hostile_idea(21), _hostile_idea(22, "accepted")],
            "title": "Title " + HOSTILE,
            "notice": HOSTILE,
        },
        "huge": {"ideas": _many(500), "title": "Most supported ideas", "notice": None},
    },
    "idea_triage": {
        "empty": {
            "idea": idea(1, "A", principles=(), benefits=()),
            "changed_by": None,
            "notice": None,
        },
        "typical": {"idea": UNDER_REVIEW, "changed_by": ADMIN, "notice": None},
        "errors": {"idea": NOT_TAKEN, "changed_by": ADMIN, "notice": "Moved on by Sam Admin."},
        "hostile": {
            "idea": _hostile_idea(21, "under_review"),
            "changed_by": "Admin " + HOSTILE,
            "notice": HOSTILE,
        },
        "huge": {"idea": _huge_idea(9999, "accepted"), "changed_by": LONG[:120], "notice": None},
    },
    "idea_triage_refused": {
        "empty": {"idea": None, "message": "I can't find that idea, so nothing changed."},
        "typical": {
            "idea": NEW,
            "message": "Only the transformation team can change an idea's status. Nothing changed.",
        },
        "errors": {
            "idea": IMPLEMENTED,
            "message": "An implemented idea can't move to New. Nothing changed.",
        },
        "hostile": {"idea": _hostile_idea(21), "message": HOSTILE},
        "huge": {"idea": _huge_idea(9999, "in_progress"), "message": REASON_MAX},
    },
    "idea_status_changed": {
        "empty": {"idea": UNDER_REVIEW, "reason": None, "for_submitter": False},
        "typical": {"idea": IMPLEMENTED, "reason": IMPLEMENTED.last_reason, "for_submitter": True},
        "errors": {
            "idea": replace(NOT_TAKEN, submitted_by=None),
            "reason": NOT_TAKEN.last_reason,
            "for_submitter": True,
        },
        "hostile": {
            "idea": _hostile_idea(21, "duplicate"),
            "reason": "Reason " + HOSTILE,
            "for_submitter": False,
        },
        "huge": {
            "idea": _huge_idea(9999, "duplicate"),
            "reason": REASON_MAX,
            "for_submitter": True,
        },
    },
    "ideas_stale": {
        "empty": {"ideas": []},
        "typical": {"ideas": [NEW, replace(NEW, id=15, reference="IDEA-0015", supporters=2)]},
        "errors": {"ideas": [ANONYMOUS]},
        "hostile": {"ideas": [_hostile_idea(21), _hostile_idea(22)]},
        "huge": {"ideas": [_huge_idea(1000 + n) for n in range(200)]},
    },
}
MATRIX_CASES = [
    pytest.param(name, context, id=f"{name}-{state}")
    for name, states in MATRIX.items()
    for state, context in states.items()
]


def _executes(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in card_nodes(card) if n.get("type") == "Action.Execute"]


def _facts(card: dict[str, Any]) -> dict[str, str]:
    return {
        fact["title"]: fact["value"]
        for node in card_nodes(card)
        if node.get("type") == "FactSet"
        for fact in node["facts"]
    }


def _render(name: str, state: str, **changes: Any) -> dict[str, Any]:
    return render_card(name, **(MATRIX[name][state] | changes))


def _triage(view: IdeaView, changed_by: str | None = None) -> dict[str, Any]:
    return render_card("idea_triage", idea=view, changed_by=changed_by, notice=None)


# --- every card, every state ------------------------------------------------------------------


def test_every_idea_card_is_in_the_matrix_in_every_state() -> None:
    assert set(MATRIX) == set(IDEA_CARDS)
    for states in MATRIX.values():
        assert set(states) == {"empty", "typical", "errors", "hostile", "huge"}


def test_the_contract_is_what_storage_holds() -> None:
    assert idea_rules.STATUS_LABELS == CONTRACT_LABELS
    assert idea_rules.TRANSITIONS == CONTRACT_TRANSITIONS
    assert idea_rules.BENEFIT_LABELS == CONTRACT_BENEFITS
    assert tuple(CONTRACT_BENEFITS) == idea_rules.BENEFITS


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
    for execute in _executes(card):
        assert name in EXECUTE_CARDS, "only the triage cards use Universal Actions"
        assert set(execute) <= {"type", "title", "verb", "data"}
        assert execute["verb"] in VERBS and execute["data"]["idea"] == context["idea"].id
    for node in card_nodes(card):
        assert node.get("type") != "Action.OpenUrl"


def test_static_text_uses_only_markdown_teams_renders() -> None:
    for name, states in MATRIX.items():
        for state in ("empty", "typical", "errors"):
            for text in card_texts(render_card(name, **states[state])):
                for line in text.splitlines():
                    assert not line.lstrip().startswith(("#", "|")), line
                assert "<" not in text, text
                assert "None" not in text.split(), f"{name}-{state}: {text!r}"


# --- hostile strings come back verbatim ------------------------------------------------------

HOSTILE_EXPECTED: dict[str, list[str]] = {
    "idea_form": [HOSTILE, "Area " + HOSTILE, "1. Principle " + HOSTILE],
    "idea_similar": ["Title " + HOSTILE, "Submitted by Name " + HOSTILE],
    "idea_submitted": ["Title " + HOSTILE, "Submitted by Name " + HOSTILE + "."],
    "my_ideas": [HOSTILE, "Title " + HOSTILE, "Reason: Reason " + HOSTILE],
    "ideas_list": ["Title " + HOSTILE, HOSTILE],
    "idea_triage": [
        HOSTILE,
        "Title " + HOSTILE,
        "Problem " + HOSTILE,
        "Suggestion " + HOSTILE,
        "Area " + HOSTILE,
        "Name " + HOSTILE,
        "Time saved, Other: Other " + HOSTILE,
        "Reason: Reason " + HOSTILE,
    ],
    "idea_triage_refused": [HOSTILE],
    "idea_status_changed": [
        "Reason: Reason " + HOSTILE,
        "It repeats Ref " + HOSTILE + ".",
        "Submitted by Name " + HOSTILE + ".",
    ],
    "ideas_stale": ["IDEA-0021 · Title " + HOSTILE],
}


@pytest.mark.parametrize("name", IDEA_CARDS)
def test_hostile_strings_come_back_verbatim(name: str) -> None:
    card = _render(name, "hostile")
    shown = card_text(card)
    for text in HOSTILE_EXPECTED[name]:
        assert text in shown, text[:60]
    assert "49" not in json.dumps(card, ensure_ascii=False), "template syntax is not evaluated"


# --- the form --------------------------------------------------------------------------------


def test_idea_form_inputs() -> None:
    card = _render("idea_form", "empty")
    inputs = card_inputs(card)
    assert {key: node["type"] for key, node in inputs.items()} == {
        "title": "Input.Text",
        "problem": "Input.Text",
        "suggestion": "Input.Text",
        "service_area": "Input.ChoiceSet",
        "principles": "Input.ChoiceSet",
        "benefits": "Input.ChoiceSet",
        "benefit_other": "Input.Text",
        "anonymous": "Input.Toggle",
    }
    assert inputs["title"]["maxLength"] == 120 and not inputs["title"].get("isMultiline")
    for key in ("problem", "suggestion"):
        assert inputs[key]["isMultiline"] is True and inputs[key]["maxLength"] == 2000
    assert inputs["benefit_other"]["maxLength"] == 200
    required = {key for key, node in inputs.items() if node.get("isRequired")}
    assert required == {"title", "problem", "suggestion", "service_area", "principles", "benefits"}
    area = inputs["service_area"]
    assert area["style"] == "compact" and not area.get("isMultiSelect")
    assert [c["value"] for c in area["choices"]] == list(idea_rules.SERVICE_AREAS)
    assert [c["title"] for c in area["choices"]] == list(idea_rules.SERVICE_AREAS)
    principles = inputs["principles"]
    assert principles["isMultiSelect"] is True and principles["style"] == "expanded"
    assert [c["value"] for c in principles["choices"]] == [str(n) for n in range(1, 8)]
    assert principles["choices"][2]["title"] == (
        "3. Use evidence and feedback to adapt and continuously improve"
    )
    benefits = inputs["benefits"]
    assert benefits["isMultiSelect"] is True
    assert [(c["value"], c["title"]) for c in benefits["choices"]] == list(
        CONTRACT_BENEFITS.items()
    )
    toggle = inputs["anonymous"]
    assert (toggle["valueOn"], toggle["valueOff"], toggle["value"]) == ("true", "false", "false")
    assert toggle["title"] == "Submit anonymously"
    assert input_values(card) == {
        "title": "",
        "problem": "",
        "suggestion": "",
        "service_area": "",
        "principles": "",
        "benefits": "",
        "benefit_other": "",
        "anonymous": "false",
    }


def test_idea_form_keeps_what_was_typed() -> None:
    assert input_values(_render("idea_form", "typical")) == FORM_VALUES
    huge = MATRIX["idea_form"]["huge"]["values"]
    assert input_values(_render("idea_form", "huge")) == huge
    hostile = input_values(_render("idea_form", "hostile"))
    assert {k: v for k, v in hostile.items() if k != "anonymous"} == {
        k: HOSTILE for k in FORM_VALUES if k != "anonymous"
    }
    assert hostile["anonymous"] == "false", "a toggle shows only on or off"
    for typed, shown in (("true", "true"), (" TRUE ", "true"), ("false", "false"), ("", "false")):
        card = _render("idea_form", "typical", values=FORM_VALUES | {"anonymous": typed})
        assert card_inputs(card)["anonymous"]["value"] == shown, typed


def test_idea_form_submit_and_cancel() -> None:
    card = _render("idea_form", "typical")
    assert card["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Submit idea",
            "data": {"action": "idea_submit", "form": FORM_ID},
        },
        {
            "type": "Action.Submit",
            "title": "Cancel",
            "data": {"action": "idea_cancel"},
            "associatedInputs": "none",
        },
    ]
    hostile = find_action(_render("idea_form", "hostile"), "Submit idea")
    assert hostile["data"] == {"action": "idea_submit", "form": HOSTILE}


def test_idea_form_shows_each_reason_under_its_field_and_a_summary_first() -> None:
    context = MATRIX["idea_form"]["errors"]
    card = render_card("idea_form", **context)
    body = card["body"]
    assert body[0]["text"] == "7 answers need another look: see the notes in red below."
    assert body[1]["text"] == context["errors"]["form"], "a reason with no field is at the top"
    assert body[2]["text"] == "Suggest a small improvement"
    for key, reason in context["errors"].items():
        if key == "form":
            continue
        index = next(i for i, node in enumerate(body) if node.get("id") == key)
        assert body[index + 1] == {
            "type": "TextBlock",
            "text": reason,
            "color": "attention",
            "size": "Small",
            "spacing": "None",
            "wrap": True,
        }
    kept = input_values(card)
    assert kept["title"] == "x" * 121 and kept["service_area"] == "Underwater Basket Weaving"
    assert kept["principles"] == "9" and kept["anonymous"] == "false"
    single = _render("idea_form", "typical", errors={"title": "Too long."})
    assert single["body"][0]["text"] == (
        "One answer needs another look: see the note in red below."
    )
    clean = _render("idea_form", "typical")
    assert not [n for n in card_nodes(clean) if n.get("color") == "attention"]


# --- similar ideas ---------------------------------------------------------------------------


def test_similar_ideas_offer_support_and_carry_the_submission() -> None:
    card = _render("idea_similar", "typical")
    texts = card_texts(card)
    assert texts[0] == "Is it one of these?"
    for view in (NEW, UNDER_REVIEW, ACCEPTED):
        assert f"{view.reference} · {view.status_label} · {view.service_area}" in texts
        assert view.title in texts
    assert card_inputs(card) == {}, "what was typed travels in the button's data"
    assert card_buttons(card) == [
        ("Support this instead", {"action": "idea_support", "idea": 7}),
        ("Support this instead", {"action": "idea_support", "idea": 9}),
        ("Support this instead", {"action": "idea_support", "idea": 10}),
        (
            "Submit mine anyway",
            {"action": "idea_submit", "form": FORM_ID, "confirmed": True} | FORM_VALUES,
        ),
        ("Cancel", {"action": "idea_cancel"}),
    ]
    assert find_action(card, "Cancel")["associatedInputs"] == "none"
    assert "associatedInputs" not in find_action(card, "Submit mine anyway")
    assert card_texts(_render("idea_similar", "errors"))[0] == "Is it this one?"


@pytest.mark.parametrize("state", ["empty", "typical", "errors", "hostile", "huge"])
def test_submit_mine_anyway_carries_every_typed_value(state: str) -> None:
    context = MATRIX["idea_similar"][state]
    data = find_action(render_card("idea_similar", **context), "Submit mine anyway")["data"]
    assert data == {
        **context["values"],
        "action": "idea_submit",
        "form": context["form_id"],
        "confirmed": True,
    }


def test_typed_values_cannot_replace_the_submit_keys() -> None:
    forged = FORM_VALUES | {"action": "idea_cancel", "form": "other", "confirmed": "no"}
    card = _render("idea_similar", "typical", values=forged)
    data = find_action(card, "Submit mine anyway")["data"]
    assert (data["action"], data["form"], data["confirmed"]) == ("idea_submit", FORM_ID, True)
    assert data["title"] == FORM_VALUES["title"]


def test_similar_ideas_are_capped_at_three_and_long_text_is_cut() -> None:
    card = _render("idea_similar", "huge")
    supports = [
        data["idea"] for title, data in card_buttons(card) if title == "Support this instead"
    ]
    assert supports == [1000, 1001, 1002]
    assert "…and 7 more similar ideas not shown here." in card_texts(card)
    assert TEXT_MAX not in card_text(card)


# --- submitted, and my ideas -----------------------------------------------------------------


def test_idea_submitted_gives_the_reference_and_what_happens_next() -> None:
    card = _render("idea_submitted", "typical")
    texts = card_texts(card)
    assert texts[0] == "Thank you: your idea is in"
    assert "Your reference is **IDEA-0007**: quote it if you ask about your idea." in texts
    assert "Customer Services · design principles 1, 3 · Time saved" in texts
    assert "Submitted by Priya Shah." in texts
    assert "What happens next" in texts
    steps = texts[texts.index("What happens next") + 1]
    assert "triage channel" in steps and "I'll message you at each step" in steps
    assert card_buttons(card) == [
        ("My ideas", {"command": "my ideas"}),
        ("Submit another idea", {"command": "idea"}),
    ]
    anonymous = card_texts(_render("idea_submitted", "errors"))
    assert any(t.startswith("Submitted anonymously: your name is not shown") for t in anonymous)
    empty = card_texts(_render("idea_submitted", "empty"))
    assert "Customer Services · design principles not given · not given" in empty


def test_my_ideas_shows_status_last_change_and_reason() -> None:
    card = _render("my_ideas", "typical")
    texts = card_texts(card)
    assert texts[:2] == [
        "My ideas",
        "8 ideas you submitted, newest first. I message you each time one moves on.",
    ]
    assert "IDEA-0007 · New" in texts
    assert "Submitted Mon 13 June 2022, waiting to be reviewed" in texts
    assert "IDEA-0010 · Accepted" in texts
    assert "Changed to Accepted on Tue 14 June 2022 by Sam Admin" in texts
    assert "Reason: Cheap and quick to do." in texts
    assert "IDEA-0014 · Duplicate" in texts and "Duplicate of IDEA-0003" in texts
    assert "Reason: The new system does this in March." in texts
    assert "Submitted with your name · 12 supporters" in texts
    assert "Submitted anonymously · 3 supporters" in texts
    assert "Submitted with your name · 1 supporter" in texts
    assert card_buttons(card) == [("Submit an idea", {"command": "idea"})]
    notice = card_texts(_render("my_ideas", "errors"))
    assert notice[0] == "That idea was already submitted."


def test_my_ideas_when_there_are_none_and_when_there_are_hundreds() -> None:
    empty = card_texts(_render("my_ideas", "empty"))
    assert any(t.startswith("You haven't submitted any ideas yet.") for t in empty)
    card = _render("my_ideas", "huge")
    assert sum(1 for t in card_texts(card) if t.startswith("IDEA-")) == 15
    assert "…and 285 more ideas not shown here." in card_texts(card)
    assert REASON_MAX not in card_text(card), "long reasons are cut in a list"


# --- the transformation team's list and call-out -----------------------------------------


def test_ideas_list_shows_what_the_team_needs() -> None:
    card = _render("ideas_list", "typical")
    texts = card_texts(card)
    assert texts[:2] == [
        "All ideas",
        "8 ideas. Move them on from their cards in the triage channel.",
    ]
    assert "IDEA-0009 · Under review · Customer Services" in texts
    assert (
        "Submitted by Priya Shah on Mon 13 June 2022 · 1 supporter · design principles 1, 3"
    ) in texts
    assert (
        "Submitted by Anonymous on Mon 13 June 2022 · 3 supporters · design principles 1, 3"
    ) in texts
    assert card_buttons(card) == [
        ("New ideas", {"command": "ideas new"}),
        ("Most supported", {"command": "ideas most supported"}),
        ("All ideas", {"command": "ideas"}),
    ]
    assert any(t.startswith("No ideas match.") for t in card_texts(_render("ideas_list", "empty")))
    huge = _render("ideas_list", "huge")
    assert sum(1 for t in card_texts(huge) if t.startswith("IDEA-")) == 25
    assert "…and 475 more ideas not shown here." in card_texts(huge)


def test_ideas_stale_calls_out_the_waiting_ideas() -> None:
    card = _render("ideas_stale", "typical")
    texts = card_texts(card)
    assert texts[0] == "Ideas waiting for review"
    assert texts[1].startswith("2 ideas have been New for more than five working days.")
    assert "IDEA-0007 · Scan post at the counter" in texts
    assert "Submitted Mon 13 June 2022 by Priya Shah · Customer Services · No supporters yet" in (
        texts
    )
    assert "actions" not in card, "a command in the channel would not answer there"
    one = card_texts(_render("ideas_stale", "errors"))
    assert one[1].startswith("This idea has been New")
    huge = _render("ideas_stale", "huge")
    assert "…and 180 more ideas waiting not shown here." in card_texts(huge)


# --- triage with Universal Actions -----------------------------------------------------------


@pytest.mark.parametrize("status", list(CONTRACT_TRANSITIONS))
def test_triage_buttons_follow_the_workflow(validator: TeamsCardValidator, status: str) -> None:
    view = _moved(30, status) if status != "new" else idea(30)
    card = _triage(view, ADMIN)
    validator.validate(card)
    following = CONTRACT_TRANSITIONS[status]
    if not following:
        assert "actions" not in card and "refresh" not in card
        assert _executes(card) == [] and card_submits(card) == []
        assert f"{CONTRACT_LABELS[status]} is final: there is nothing more to do on this idea." in (
            card_texts(card)
        )
        return
    assert card["refresh"] == {
        "action": {"type": "Action.Execute", "verb": "idea_refresh", "data": {"idea": 30}}
    }
    # One button per next status, in the workflow's order: a plain Action.Execute, or for a
    # status that needs more (a reason, the idea it repeats) a ShowCard whose Confirm sends it.
    asks_more = {"not_taken_forward": "Not taken forward…", "duplicate": "Duplicate…"}
    expected: list[dict[str, Any]] = []
    for next_status in following:
        execute = {
            "type": "Action.Execute",
            "title": CONTRACT_LABELS[next_status],
            "verb": "idea_status",
            "data": {"idea": 30, "status": next_status},
        }
        if next_status in asks_more:
            show = find_action(card, asks_more[next_status])
            assert show["card"]["actions"] == [execute | {"title": "Confirm"}]
            expected.append({"type": "Action.ShowCard", "title": asks_more[next_status]})
        else:
            expected.append(execute)
    assert [
        {k: v for k, v in button.items() if k != "card"} for button in card["actions"]
    ] == expected
    statuses = [e["data"]["status"] for e in _executes(card) if e["verb"] == "idea_status"]
    assert statuses == list(following)
    assert card_submits(card) == [], "triage uses Action.Execute only"


def test_not_taken_forward_asks_for_a_reason() -> None:
    card = _triage(UNDER_REVIEW, ADMIN)
    show = find_action(card, "Not taken forward…")
    assert show["type"] == "Action.ShowCard" and show["card"]["type"] == "AdaptiveCard"
    (reason,) = show["card"]["body"]
    assert {k: reason[k] for k in ("type", "id", "isRequired", "isMultiline", "maxLength")} == {
        "type": "Input.Text",
        "id": "reason",
        "isRequired": True,
        "isMultiline": True,
        "maxLength": 1000,
    }
    assert reason["label"] and reason["errorMessage"]
    assert show["card"]["actions"] == [
        {
            "type": "Action.Execute",
            "title": "Confirm",
            "verb": "idea_status",
            "data": {"idea": 9, "status": "not_taken_forward"},
        }
    ]


def test_duplicate_asks_which_idea_it_repeats() -> None:
    card = _triage(NEW)
    show = find_action(card, "Duplicate…")
    assert show["type"] == "Action.ShowCard" and show["card"]["type"] == "AdaptiveCard"
    (duplicate_of,) = show["card"]["body"]
    assert {k: duplicate_of[k] for k in ("type", "id", "isRequired", "placeholder")} == {
        "type": "Input.Text",
        "id": "duplicate_of",
        "isRequired": True,
        "placeholder": "IDEA-0001",
    }
    assert duplicate_of["label"] and "IDEA-0001" in duplicate_of["errorMessage"]
    assert show["card"]["actions"] == [
        {
            "type": "Action.Execute",
            "title": "Confirm",
            "verb": "idea_status",
            "data": {"idea": 7, "status": "duplicate"},
        }
    ]


@pytest.mark.parametrize("status", list(CONTRACT_TRANSITIONS))
def test_triage_input_ids_are_unique_across_the_whole_card(status: str) -> None:
    """The native renderers (Teams mobile) refuse a card in which an id appears twice, even in
    two different ShowCards: each small form keeps its inputs apart, none sits in the body."""
    card = _triage(_moved(30, status) if status != "new" else idea(30))
    ids = [n["id"] for n in card_nodes(card) if "id" in n]
    assert len(ids) == len(set(ids)), ids
    assert [n for n in card["body"] if str(n.get("type", "")).startswith("Input.")] == []
    expected = {"not_taken_forward": "reason", "duplicate": "duplicate_of"}
    assert set(ids) == {expected[s] for s in CONTRACT_TRANSITIONS[status] if s in expected}


def test_triage_card_shows_the_idea_and_who_changed_it_last() -> None:
    card = _triage(ACCEPTED, ADMIN)
    texts = card_texts(card)
    assert texts[:3] == [
        "Small improvement idea · IDEA-0010",
        "Scan post at the counter",
        "Status: Accepted",
    ]
    assert _facts(card) == {
        "Service area": "Customer Services",
        "Submitted by": "Priya Shah",
        "Submitted": "Mon 13 June 2022",
        "Design principles": "1, 3",
        "Expected benefit": "Time saved",
        "Supporters": "0",
    }
    assert ACCEPTED.problem in texts and ACCEPTED.suggestion in texts
    assert "Changed to Accepted on Tue 14 June 2022 by Sam Admin" in texts
    assert "Reason: Cheap and quick to do." in texts
    unnamed = card_texts(_triage(ACCEPTED, None))
    assert "Changed to Accepted on Tue 14 June 2022" in unnamed
    duplicate = card_texts(_triage(DUPLICATE, ADMIN))
    assert "Duplicate of IDEA-0003" in duplicate
    new = card_texts(_triage(NEW))
    assert "Submitted Mon 13 June 2022, waiting to be reviewed" in new
    other = _triage(replace(NEW, benefits=("money_saved", "other"), benefit_other="Less paper"))
    assert _facts(other)["Expected benefit"] == "Money saved, Other: Less paper"
    notice = _render("idea_triage", "errors")
    assert notice["body"][0] == {
        "type": "TextBlock",
        "text": "Moved on by Sam Admin.",
        "color": "good",
        "weight": "Bolder",
        "wrap": True,
    }


def test_refused_press_says_why_and_leads_back_to_the_idea() -> None:
    card = _render("idea_triage_refused", "typical")
    texts = card_texts(card)
    assert texts[0] == "Nothing changed"
    assert MATRIX["idea_triage_refused"]["typical"]["message"] in texts
    assert "IDEA-0007 · Scan post at the counter" in texts
    assert "Its status is still New." in texts
    assert card["actions"] == [
        {
            "type": "Action.Execute",
            "title": "Back to the idea",
            "verb": "idea_refresh",
            "data": {"idea": 7},
        }
    ]
    unknown = _render("idea_triage_refused", "empty")
    assert "actions" not in unknown and card_texts(unknown)[1].startswith("I can't find that idea")


# --- closing the loop ------------------------------------------------------------------------


def test_status_change_message_to_the_submitter_when_implemented() -> None:
    card = _render("idea_status_changed", "typical")
    texts = card_texts(card)
    assert texts[:4] == [
        "You said, we did",
        "Your idea has been implemented.",
        "IDEA-0012 · Implemented",
        "Scan post at the counter",
    ]
    assert "What was done: Scanners arrived in May." in texts
    assert "You submitted it with your name." in texts
    assert card_buttons(card) == [
        ("My ideas", {"command": "my ideas"}),
        ("Suggest an idea", {"command": "idea"}),
    ]


def test_status_change_message_to_a_supporter() -> None:
    card = _render("idea_status_changed", "empty")
    texts = card_texts(card)
    assert texts[0] == "An idea you support is now Under review"
    assert "Submitted by Priya Shah." in texts
    assert not any(t.startswith("Reason:") for t in texts)
    assert card_buttons(card) == [("Suggest an idea", {"command": "idea"})]
    implemented = _render("idea_status_changed", "typical", for_submitter=False)
    assert card_texts(implemented)[:2] == [
        "You said, we did",
        "An idea you support has been implemented.",
    ]


def test_status_change_message_says_why_for_every_status() -> None:
    for view in EVERY_STATUS[1:]:
        texts = card_texts(
            render_card(
                "idea_status_changed", idea=view, reason=view.last_reason, for_submitter=True
            )
        )
        assert f"{view.reference} · {CONTRACT_LABELS[view.status]}" in texts
        if view.last_reason and view.status != "implemented":
            assert f"Reason: {view.last_reason}" in texts
    duplicate = card_texts(_render("idea_status_changed", "huge"))
    assert "It repeats IDEA-9999." in duplicate
    anonymous = card_texts(_render("idea_status_changed", "errors"))
    assert anonymous[0] == "Your idea is now Not taken forward"
    assert "You submitted it anonymously: your name is not shown to anyone." in anonymous


# --- anonymity: a hard rule ------------------------------------------------------------------

# Each idea card, with the idea (or ideas) in it; `show_submitter` says whether the card names
# a submitter at all (the form has no idea; my ideas is the submitter's own list, which says
# "you"; a refusal names no one).
ANONYMITY_CASES: dict[str, tuple[bool, Any]] = {
    "idea_form": (
        False,
        lambda view: _form(values=FORM_VALUES | {"anonymous": "true", "title": view.title}),
    ),
    "idea_similar": (
        True,
        lambda view: {"similar": [view], "form_id": FORM_ID, "values": FORM_VALUES},
    ),
    "idea_submitted": (True, lambda view: {"idea": view}),
    "my_ideas": (False, lambda view: {"ideas": [view], "notice": None}),
    "ideas_list": (True, lambda view: {"ideas": [view], "title": "All ideas", "notice": None}),
    "idea_triage": (True, lambda view: {"idea": view, "changed_by": ADMIN, "notice": None}),
    "idea_triage_refused": (False, lambda view: {"idea": view, "message": "Nothing changed."}),
    "idea_status_changed": (
        True,
        lambda view: {"idea": view, "reason": view.last_reason, "for_submitter": False},
    ),
    "ideas_stale": (True, lambda view: {"ideas": [view]}),
}


def test_every_idea_card_is_checked_for_anonymity() -> None:
    assert set(ANONYMITY_CASES) == set(IDEA_CARDS)


@pytest.mark.parametrize("name", IDEA_CARDS)
@pytest.mark.parametrize("status", list(CONTRACT_TRANSITIONS))
def test_an_anonymous_idea_never_names_its_submitter(name: str, status: str) -> None:
    show_submitter, context_for = ANONYMITY_CASES[name]
    named = _moved(40, status, submitted_by=SUBMITTER_NAME, supporters=2)
    anonymous = replace(named, submitted_by=None)
    carried = json.dumps(asdict(anonymous), default=str, ensure_ascii=False)
    assert not any(identifier in carried for identifier in SUBMITTER_IDS), (
        "the view of an anonymous idea carries nothing of its submitter"
    )
    anonymous_cards = [render_card(name, **context_for(anonymous))]
    if name == "idea_status_changed":  # the submitter's own message too
        anonymous_cards.append(
            render_card(name, idea=anonymous, reason=anonymous.last_reason, for_submitter=True)
        )
    for card in anonymous_cards:
        raw = json.dumps(card, ensure_ascii=False)
        for identifier in SUBMITTER_IDS:
            assert identifier not in raw, f"{name} shows {identifier!r}"
        shown = card_text(card)
        assert "None" not in shown.split() and "null" not in shown.split()
        if show_submitter:
            assert "anonymous" in shown.lower(), "it says who: Anonymous"

    # The same card for the named twin does name them: the check above would catch a leak.
    twin = json.dumps(render_card(name, **context_for(named)), ensure_ascii=False)
    assert (SUBMITTER_NAME in twin) == show_submitter
    if show_submitter:
        assert "Anonymous" not in twin


def test_my_ideas_marks_the_anonymous_ones_and_names_nobody() -> None:
    named = replace(ANONYMOUS, submitted_by=SUBMITTER_NAME)
    anonymous_text = card_text(render_card("my_ideas", ideas=[ANONYMOUS], notice=None))
    named_text = card_text(render_card("my_ideas", ideas=[named], notice=None))
    assert "Submitted anonymously" in anonymous_text and SUBMITTER_NAME not in anonymous_text
    assert "Submitted anonymously" not in named_text
    assert "Submitted with your name" in named_text


# --- help and welcome ------------------------------------------------------------------------


def test_help_lists_the_idea_commands() -> None:
    staff = card_text(render_card("help", is_admin=False, in_channel=False))
    officer = card_text(render_card("help", is_admin=True, in_channel=False))
    for text in (staff, officer):
        assert "**idea**" in text and "**my ideas**" in text
    for admin_only in ("**ideas**", "**set triage channel**", "**ideas most supported**"):
        assert admin_only not in staff and admin_only in officer


def test_welcome_introduces_ideas() -> None:
    staff = card_text(render_card("welcome", scope="personal", is_admin=False))
    officer = card_text(render_card("welcome", scope="personal", is_admin=True))
    for text in (staff, officer):
        assert "**idea**" in text and "**my ideas**" in text
    for admin_only in ("**ideas**", "**set triage channel**"):
        assert admin_only not in staff and admin_only in officer


# --- filters ---------------------------------------------------------------------------------


def test_idea_filters() -> None:
    assert [card_render.idea_status_label(s) for s in CONTRACT_LABELS] == list(
        CONTRACT_LABELS.values()
    )
    assert [card_render.benefit_label(b) for b in CONTRACT_BENEFITS] == list(
        CONTRACT_BENEFITS.values()
    )
    with pytest.raises(ValueError, match="closed"):
        card_render.idea_status_label("closed")
    with pytest.raises(ValueError, match="fun"):
        card_render.benefit_label("fun")
    # A moment is shown as the day it was in Cambridge: 23:30 UTC in June is 00:30 BST.
    late = datetime(2022, 6, 13, 23, 30, tzinfo=UTC)
    assert card_render.day_label(late) == "Tue 14 June 2022"
    assert (
        card_render.day_label(datetime(2022, 12, 13, 23, 30, tzinfo=UTC)) == "Tue 13 December 2022"
    )
    assert card_render.day_label(late.replace(tzinfo=None)) == "Tue 14 June 2022"
    assert card_render.day_label(late - timedelta(hours=1)) == "Mon 13 June 2022"
