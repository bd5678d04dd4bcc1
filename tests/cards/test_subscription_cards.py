"""The weekly digest's settings card: valid and small in every state it is sent in (just
subscribed, shown again with reasons, hostile strings), its inputs and buttons exactly what
dialogs/digest.py reads, what was typed kept, and the help and welcome cards saying how a
channel subscribes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cards import render_card
from storage.subscriptions import WEEKDAYS
from tests.support.card_checks import buttons as card_buttons
from tests.support.card_checks import check_valid_small_and_plain
from tests.support.card_checks import inputs as card_inputs
from tests.support.card_checks import texts as card_texts
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
)
from tests.support.teams import card_text, input_values

MAX_CARD_BYTES = 28 * 1024
WIDE: set[str] = set()
HOSTILE = (
    'He said "stop" \\ C:\\path\\n\nsecond line\t{{ 7*7 }} {% raw %} {# x #} </script>'
    " **bold** 🎉👩🏽‍💻 مرحبا بكم في كامبريدج"
)
LONG = "Agree a shared checklist for new starters and review it monthly with the team. " * 20

_BASE: dict[str, Any] = {
    "schedule": "every Monday at 09:00",
    "zone_label": "UK time",
    "weekdays": WEEKDAYS,
}

# The settings card in every state it is sent in.
MATRIX: dict[str, dict[str, dict[str, Any]]] = {
    "digest_settings": {
        "empty": _BASE | {"values": {}, "errors": {}, "notice": None},
        "typical": _BASE
        | {
            "values": {"day": "Monday", "time": "09:00"},
            "errors": {},
            "notice": "Subscribed: this channel will get the weekly digest every Monday at "
            "09:00 (UK time). Change the day and time below whenever you like.",
        },
        "errors": _BASE
        | {
            "schedule": "every Thursday at 16:30",
            "values": {"day": "Someday", "time": "25:00"},
            "errors": {
                "day": "Choose a day of the week, from Monday to Sunday.",
                "time": "The time must be a time of day written HH:MM, for example 09:00.",
            },
            "notice": None,
        },
        "hostile": {
            "schedule": HOSTILE,
            "zone_label": HOSTILE,
            "weekdays": WEEKDAYS,
            "values": {"day": HOSTILE, "time": HOSTILE},
            "errors": {"day": HOSTILE, "time": HOSTILE, "form": "Form " + HOSTILE},
            "notice": "Notice " + HOSTILE,
        },
        "huge": _BASE
        | {
            "zone_label": "America/Argentina/ComodRivadavia",
            "values": {"day": LONG, "time": LONG},
            "errors": {"day": LONG, "time": LONG},
            "notice": LONG,
        },
    },
}
MATRIX_CASES = [
    pytest.param(name, context, id=f"{name}-{state}")
    for name, states in MATRIX.items()
    for state, context in states.items()
]


@pytest.fixture(scope="session")
def validator() -> TeamsCardValidator:
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


def _render(state: str, **changes: Any) -> dict[str, Any]:
    return render_card("digest_settings", **(MATRIX["digest_settings"][state] | changes))


@pytest.mark.parametrize(("name", "context"), MATRIX_CASES)
def test_card_is_valid_small_and_plain(
    validator: TeamsCardValidator, name: str, context: dict[str, Any]
) -> None:
    card = render_card(name, **context)
    check_valid_small_and_plain(validator, card, wide=name in WIDE, max_bytes=MAX_CARD_BYTES)


def test_static_text_uses_only_markdown_teams_renders() -> None:
    for name, states in MATRIX.items():
        for state in ("empty", "typical", "errors"):
            for text in card_texts(render_card(name, **states[state])):
                for line in text.splitlines():
                    assert not line.lstrip().startswith(("#", "|")), line
                assert "<" not in text, text


def test_the_inputs_and_buttons_are_what_the_dialog_reads() -> None:
    card = _render("typical")
    inputs = card_inputs(card)
    assert {key: node["type"] for key, node in inputs.items()} == {
        "day": "Input.ChoiceSet",
        "time": "Input.Time",
    }
    assert [choice["value"] for choice in inputs["day"]["choices"]] == list(WEEKDAYS)
    assert [choice["title"] for choice in inputs["day"]["choices"]] == list(WEEKDAYS)
    assert all(node["isRequired"] and node["errorMessage"] for node in inputs.values())
    assert input_values(card) == {"day": "Monday", "time": "09:00"}
    assert card["actions"] == [
        {"type": "Action.Submit", "title": "Save", "data": {"action": "digest_settings_save"}},
        {
            "type": "Action.Submit",
            "title": "Unsubscribe",
            "data": {"action": "digest_unsubscribe"},
            "associatedInputs": "none",
        },
    ]
    assert card_buttons(card) == [
        ("Save", {"action": "digest_settings_save"}),
        ("Unsubscribe", {"action": "digest_unsubscribe"}),
    ]


def test_it_says_when_the_digest_comes_and_who_may_change_it() -> None:
    shown = card_text(_render("typical"))
    assert "every Monday at 09:00 (UK time)" in shown
    assert "Anyone in this channel can change the day and time, or unsubscribe it." in shown
    assert "Subscribed: this channel will get the weekly digest" in shown
    assert card_inputs(_render("typical"))["time"]["label"] == "Time (UK time)"
    assert "Subscribed" not in card_text(_render("empty"))


def test_reasons_sit_under_their_fields_and_the_entries_are_kept() -> None:
    card = _render("errors")
    texts = card_texts(card)
    assert texts[0] == "2 answers need another look: see the notes in red below."
    body = card["body"]
    ids = [node.get("id") for node in body]
    after_day, after_time = body[ids.index("day") + 1], body[ids.index("time") + 1]
    assert after_day["text"] == "Choose a day of the week, from Monday to Sunday."
    assert after_time["text"].startswith("The time must be a time of day")
    assert after_day["color"] == after_time["color"] == "attention"
    assert input_values(card) == {"day": "Someday", "time": "25:00"}
    assert "every Thursday at 16:30" in card_text(card), "what is saved, not what was typed"


def test_an_empty_form_shows_no_time() -> None:
    card = _render("empty")
    assert "value" not in card_inputs(card)["time"]
    assert card_inputs(card)["day"]["value"] == ""


def test_hostile_strings_come_back_verbatim() -> None:
    card = _render("hostile")
    shown = card_text(card)
    for text in ("Notice " + HOSTILE, "Form " + HOSTILE, HOSTILE):
        assert text in shown, text[:40]
    assert input_values(card) == {"day": HOSTILE, "time": HOSTILE}
    assert "49" not in json.dumps(card, ensure_ascii=False), "template syntax is not evaluated"


# --- help and welcome --------------------------------------------------------------------------


def test_help_lists_the_digest_commands_for_everyone() -> None:
    for is_admin in (False, True):
        for in_channel in (False, True):
            shown = card_text(render_card("help", is_admin=is_admin, in_channel=in_channel))
            for command in ("subscribe", "digest settings", "unsubscribe"):
                assert f"**{command}**" in shown


def test_the_welcome_in_a_team_says_how_to_subscribe() -> None:
    team = card_text(render_card("welcome", scope="team", is_admin=False))
    assert "**subscribe**" in team and "every Monday at 09:00" in team
    for scope in ("personal", "groupChat"):
        assert "**subscribe**" not in card_text(render_card("welcome", scope=scope, is_admin=False))
