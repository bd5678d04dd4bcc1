"""The weekly digest card: valid and small in every state it can be sent in (a quiet week, a
typical one, hostile strings, thousands of rows), each section left out when it has nothing to
say, each list cut at three with "…and N more", nobody named, every person's text kept verbatim
or cut short, and under 40 KB even with every text at its limit in the widest characters."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import date, time
from typing import Any

import pytest

from cards import render_card
from storage.digest import (
    Digest,
    DigestIdea,
    DigestSession,
    DigestUpdate,
    Listing,
    MirTotals,
    QuietProject,
)
from tests.support.card_checks import buttons as card_buttons
from tests.support.card_checks import check_valid_small_and_plain
from tests.support.card_checks import size as card_size
from tests.support.card_checks import texts as card_texts
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
)
from tests.support.teams import card_nodes, card_text

# The issue's bound for the digest: far inside Teams' limit of about 100 KB per message.
MAX_DIGEST_BYTES = 40 * 1024
WIDE = {"digest"}
BUTTONS = [
    ("Submit an idea", {"command": "idea"}),
    ("Log a session", {"command": "log session"}),
    ("All projects", {"command": "projects"}),
]
SECTIONS = ("Making It Real", "Ideas", "You said, we did", "Projects", "Coming up next week")
QUIET = (
    "A quiet week: no Making It Real sessions held, no new ideas, no ideas implemented and no "
    "project updates posted."
)

# Quotes, backslashes, a newline, template syntax, markdown, emoji and right-to-left text, short
# enough to be shown whole where the card cuts a text (a title at 90, a team at 60, an area at 40).
HOSTILE = 'He said "stop" \\ C:\\path\\n\nline two\t{{ 7*7 }} {% raw %} **bold** 🎉 مرحبا'
HOSTILE_SHORT = '"q" \\ {{ 7*7 }} {% if %} **b** 🎉 مرحبا'
# Realistic text at the storage limits: 120 for a title, 200 for a team or a project's name.
LONG = "Agree a shared checklist for new starters and review it monthly with the team. " * 60


@pytest.fixture(scope="session")
def validator() -> TeamsCardValidator:
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


# --- data -------------------------------------------------------------------------------------


def listing(*shown: Any, total: int | None = None) -> Listing[Any]:
    return Listing(shown=shown, total=len(shown) if total is None else total)


NOTHING: Listing[Any] = listing()
HELD = DigestSession(date(2022, 6, 14), time(10, 0), "Benefits team", 6)
HELD_UNTIMED = DigestSession(date(2022, 6, 16), None, "Council tax team", 1)
NEXT = DigestSession(date(2022, 6, 21), time(14, 30), "Revenues team", None)
NEW_IDEA = DigestIdea("IDEA-0031", "Scan post at the counter", "Customer Services", 0)
SUPPORTED = DigestIdea("IDEA-0012", "Fewer printed agendas", "Legal and Democratic Services", 14)
IMPLEMENTED = DigestIdea(
    "IDEA-0007",
    "Text reminders for bin collections",
    "Waste and Recycling",
    9,
    "Live since Monday.",
)
TURNED_RED = DigestUpdate(
    "City Portrait", date(2022, 6, 1), "Funding approval delayed.", "red", "amber", True
)
STILL_GREEN = DigestUpdate(
    "Alloy", date(2022, 6, 1), "Currently in delivery.", "green", "green", False
)
QUIET_PROJECT = QuietProject("Tascomi", date(2022, 4, 28))
NEVER_UPDATED = QuietProject("Planning Transformation", None)
NO_FIGURES = MirTotals(change_makers=0, sessions_held=0, sessions_in_diary=0, nothing_scheduled=0)
FIGURES = MirTotals(change_makers=14, sessions_held=20, sessions_in_diary=13, nothing_scheduled=2)


def digest(**changes: Any) -> Digest:
    """A week with nothing in it; name what a test is about."""
    empty: dict[str, Any] = {
        "first_day": date(2022, 6, 13),
        "last_day": date(2022, 6, 19),
        "held": NOTHING,
        "people_at_sessions": 0,
        "totals": NO_FIGURES,
        "new_ideas": NOTHING,
        "most_supported": NOTHING,
        "implemented": NOTHING,
        "updates": NOTHING,
        "rag_changes": 0,
        "quiet_projects": NOTHING,
        "coming_up": NOTHING,
    }
    return Digest(**(empty | changes))


TYPICAL = digest(
    held=listing(HELD, HELD_UNTIMED, total=4),
    people_at_sessions=31,
    totals=FIGURES,
    new_ideas=listing(NEW_IDEA),
    most_supported=listing(SUPPORTED, NEW_IDEA, total=6),
    implemented=listing(IMPLEMENTED, replace(IMPLEMENTED, what_was_done=None)),
    updates=listing(TURNED_RED, STILL_GREEN),
    rag_changes=1,
    quiet_projects=listing(NEVER_UPDATED, QUIET_PROJECT),
    coming_up=listing(NEXT, total=8),
)


def _hostile() -> Digest:
    team = DigestSession(date(2022, 6, 14), time(10, 0), "Team " + HOSTILE_SHORT, 6)
    idea = DigestIdea("IDEA-0001", HOSTILE, HOSTILE_SHORT, 3, "Done " + HOSTILE)
    update = DigestUpdate("Project " + HOSTILE_SHORT, date(2022, 6, 1), HOSTILE, None, "red", True)
    return digest(
        held=listing(team),
        people_at_sessions=6,
        totals=FIGURES,
        new_ideas=listing(idea),
        most_supported=listing(idea),
        implemented=listing(idea),
        updates=listing(update),
        rag_changes=1,
        quiet_projects=listing(QuietProject("Quiet " + HOSTILE_SHORT, None)),
        coming_up=listing(team),
    )


def _huge(text: str = LONG, per_list: int = 3, total: int = 99_999) -> Digest:
    """Every list overfull, every text at its storage limit."""
    session = DigestSession(date(2022, 6, 14), time(10, 0), text[:200], 500)
    idea = DigestIdea("IDEA-99999", text[:120], text[:80], 99_999, text[:1000])
    update = DigestUpdate(text[:200], date(2022, 6, 1), text[:4000], "amber", "green", True)
    project = QuietProject(text[:200], date(2022, 4, 28))

    def many(item: Any) -> Listing[Any]:
        return listing(*[item] * per_list, total=total)

    return digest(
        held=many(session),
        people_at_sessions=total * 500,
        totals=MirTotals(total, total, total, total),
        new_ideas=many(idea),
        most_supported=many(idea),
        implemented=many(idea),
        updates=many(update),
        rag_changes=total,
        quiet_projects=many(project),
        coming_up=many(session),
    )


# The digest card in the states it is sent in ("errors": a week with nothing new, but figures,
# supported ideas, projects waiting for an update and sessions coming up to report).
MATRIX: dict[str, dict[str, dict[str, Any]]] = {
    "digest": {
        "empty": {"digest": digest()},
        "typical": {"digest": TYPICAL},
        "errors": {
            "digest": digest(
                totals=replace(FIGURES, sessions_held=0, nothing_scheduled=14),
                most_supported=listing(SUPPORTED),
                quiet_projects=listing(NEVER_UPDATED, total=20),
                coming_up=listing(NEXT),
            )
        },
        "hostile": {"digest": _hostile()},
        "huge": {"digest": _huge()},
    }
}
MATRIX_CASES = [
    pytest.param(context, id=f"digest-{state}") for state, context in MATRIX["digest"].items()
]


def _render(value: Digest) -> dict[str, Any]:
    return render_card("digest", digest=value)


def _headings(card: dict[str, Any]) -> list[str]:
    return [
        node["text"]
        for node in card_nodes(card)
        if node.get("type") == "TextBlock" and node.get("separator") is True
    ]


def _block(card: dict[str, Any], text: str) -> dict[str, Any]:
    (found,) = [n for n in card_nodes(card) if n.get("type") == "TextBlock" and n["text"] == text]
    return found


# --- every state ------------------------------------------------------------------------------


def test_every_state_is_in_the_matrix() -> None:
    assert set(MATRIX["digest"]) == {"empty", "typical", "errors", "hostile", "huge"}


@pytest.mark.parametrize("context", MATRIX_CASES)
def test_card_is_valid_small_and_plain(
    validator: TeamsCardValidator, context: dict[str, Any]
) -> None:
    card = render_card("digest", **context)
    check_valid_small_and_plain(validator, card, wide=True, max_bytes=MAX_DIGEST_BYTES)


@pytest.mark.parametrize("context", MATRIX_CASES)
def test_the_three_buttons_run_their_commands(context: dict[str, Any]) -> None:
    card = render_card("digest", **context)
    assert card_buttons(card) == BUTTONS
    assert card["actions"] == [
        {"type": "Action.Submit", "title": title, "data": data} for title, data in BUTTONS
    ]
    assert [n["type"] for n in card_nodes(card) if n.get("type", "").startswith("Action.")] == [
        "Action.Submit"
    ] * 3


def test_static_text_uses_only_markdown_teams_renders() -> None:
    for state in ("empty", "typical", "errors", "huge"):
        for text in card_texts(_render(MATRIX["digest"][state]["digest"])):
            for line in text.splitlines():
                assert not line.lstrip().startswith(("#", "|")), line
            assert "<" not in text, text
            assert "None" not in text.split(), f"{state}: {text!r}"


# --- what it says -----------------------------------------------------------------------------


def test_a_typical_week() -> None:
    card = _render(TYPICAL)
    texts = card_texts(card)
    assert texts[:2] == ["This week in Our Cambridge", "Mon 13 June 2022 to Sun 19 June 2022"]
    assert QUIET not in texts
    assert _headings(card) == list(SECTIONS)
    for text in (
        "4 sessions held this week, with 31 people.",
        "Tue 14 June 2022 at 10:00 · Benefits team · 6 people",
        "Thu 16 June 2022 · Council tax team · 1 person",
        "…and 2 more sessions not shown here.",
        "1 new idea this week.",
        "IDEA-0031 · Scan post at the counter",
        "Most supported",
        "14 supporters · Legal and Democratic Services",
        "0 supporters · Customer Services",
        "…and 4 more supported ideas not shown here.",
        "2 ideas implemented this week.",
        "IDEA-0007 · Text reminders for bin collections",
        "What we did: Live since Monday.",
        "2 updates posted this week, 1 with a change of RAG status.",
        "City Portrait · June 2022",
        "Funding approval delayed.",
        "No update for over a month",
        "Planning Transformation · no update yet",
        "Tascomi · last update Thu 28 April 2022",
        "8 Making It Real sessions in the diary.",
        "Tue 21 June 2022 at 14:30 · Revenues team",
        "…and 7 more sessions not shown here.",
    ):
        assert text in texts, text
    assert texts.count("IDEA-0007 · Text reminders for bin collections") == 2
    assert texts.count("What we did: Live since Monday.") == 1, "no reason, no line"
    facts = {
        fact["title"]: fact["value"]
        for node in card_nodes(card)
        if node.get("type") == "FactSet"
        for fact in node["facts"]
    }
    assert facts == {
        "Sessions held so far": "20",
        "In the diary": "13",
        "Change Makers with nothing scheduled": "2 of 14",
    }


def test_rag_changes_are_called_out_in_the_new_colour() -> None:
    card = _render(TYPICAL)
    changed = _block(card, "RAG changed from Amber to Red")
    assert (changed["color"], changed["weight"]) == ("attention", "Bolder")
    unchanged = _block(card, "RAG Green")
    assert (unchanged["color"], unchanged["weight"]) == ("good", "Default")
    unreported = _render(
        digest(updates=listing(replace(TURNED_RED, rag=None, previous_rag="green")))
    )
    assert _block(unreported, "RAG changed from Green to Not reported")["color"] == "default"
    assert "posted this week." in card_text(unreported), "no RAG change count when there are none"


def test_a_quiet_week_says_so_in_one_line() -> None:
    assert card_texts(_render(digest())) == [
        "This week in Our Cambridge",
        "Mon 13 June 2022 to Sun 19 June 2022",
        QUIET,
    ]
    # Quiet means nothing new this week: the figures and lists still come after the line.
    errors = _render(MATRIX["digest"]["errors"]["digest"])
    assert QUIET in card_texts(errors)
    assert _headings(errors) == ["Making It Real", "Ideas", "Projects", "Coming up next week"]


@pytest.mark.parametrize(
    ("changes", "headings"),
    [
        ({"held": listing(HELD), "people_at_sessions": 6}, ["Making It Real"]),
        ({"totals": FIGURES}, ["Making It Real"]),
        ({"new_ideas": listing(NEW_IDEA)}, ["Ideas"]),
        ({"most_supported": listing(SUPPORTED)}, ["Ideas"]),
        ({"implemented": listing(IMPLEMENTED)}, ["You said, we did"]),
        ({"updates": listing(STILL_GREEN)}, ["Projects"]),
        ({"quiet_projects": listing(QUIET_PROJECT)}, ["Projects"]),
        ({"coming_up": listing(NEXT)}, ["Coming up next week"]),
    ],
)
def test_sections_with_nothing_to_say_are_left_out(
    changes: dict[str, Any], headings: list[str]
) -> None:
    card = _render(digest(**changes))
    assert _headings(card) == headings
    shown = card_text(card)
    for part, markers in {
        "held": ("held this week, with",),
        "totals": ("Sessions held so far",),
        "new_ideas": ("new idea this week", "new ideas this week"),
        "most_supported": ("Most supported",),
        "implemented": ("implemented this week",),
        "updates": ("posted this week",),
        "quiet_projects": ("No update for over a month",),
        "coming_up": ("in the diary.",),
    }.items():
        assert any(marker in shown for marker in markers) == (part in changes), part
    assert " more " not in shown, "nothing more to count"


def test_each_list_shows_three_and_counts_the_rest() -> None:
    ten = [replace(NEW_IDEA, reference=f"IDEA-{n:04d}") for n in range(10)]
    # Storage sends three; a digest made with more is still cut at three.
    for shown in (ten[:3], ten):
        texts = card_texts(_render(digest(new_ideas=listing(*shown, total=10))))
        assert [t for t in texts if t.startswith("IDEA-")] == [
            f"IDEA-{n:04d} · Scan post at the counter" for n in range(3)
        ]
        assert "…and 7 more new ideas not shown here." in texts
    exactly = card_texts(_render(digest(new_ideas=listing(*ten[:3]))))
    assert not any("more new ideas" in text for text in exactly)


def test_the_digest_carries_no_names() -> None:
    # A channel is read by the whole team: the read models have no field for a Change Maker,
    # a submitter (anonymous or not), a supporter, an admin or an update's author. A new
    # field here must be one that names nobody.
    assert [f.name for f in fields(DigestSession)] == [
        "session_date",
        "start_time",
        "team",
        "attendees",
    ]
    assert [f.name for f in fields(DigestIdea)] == [
        "reference",
        "title",
        "service_area",
        "supporters",
        "what_was_done",
    ]
    assert [f.name for f in fields(DigestUpdate)] == [
        "project_name",
        "month",
        "text",
        "rag",
        "previous_rag",
        "rag_changed",
    ]
    assert [f.name for f in fields(QuietProject)] == ["name", "last_update_on"]
    assert [f.name for f in fields(MirTotals)] == [
        "change_makers",
        "sessions_held",
        "sessions_in_diary",
        "nothing_scheduled",
    ]


# --- people's text ----------------------------------------------------------------------------


def test_hostile_strings_come_back_verbatim() -> None:
    card = _render(_hostile())
    shown = card_text(card)
    for text in (
        "Team " + HOSTILE_SHORT,
        "IDEA-0001 · " + HOSTILE,
        HOSTILE_SHORT,
        "What we did: Done " + HOSTILE,
        "Project " + HOSTILE_SHORT + " · June 2022",
        HOSTILE,
        "Quiet " + HOSTILE_SHORT + " · no update yet",
    ):
        assert text in shown, text[:60]
    assert "49" not in json.dumps(card, ensure_ascii=False), "template syntax is not evaluated"


def test_long_texts_are_cut_short() -> None:
    texts = card_texts(_render(_huge()))
    assert not any(LONG[:125] in text for text in texts), "no text is shown at length"
    cut = [text for text in texts if text.endswith("…")]
    assert cut, "long texts end with an ellipsis"
    assert max(len(text) for text in texts) < 200
    assert any(text.startswith("IDEA-99999 · Agree a shared") for text in texts)


@pytest.mark.parametrize(
    "character",
    [
        pytest.param("a", id="ascii"),
        pytest.param("é", id="accented"),  # \u00e9 in JSON: 6 bytes a character
        pytest.param("🎉", id="emoji"),  # a surrogate pair in JSON: 12 bytes a character
    ],
)
def test_under_40_kb_whatever_the_text(validator: TeamsCardValidator, character: str) -> None:
    card = _render(_huge(character * 4000, per_list=50))
    validator.validate(card)
    assert card_size(card) < MAX_DIGEST_BYTES, card_size(card)
