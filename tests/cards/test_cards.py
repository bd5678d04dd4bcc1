"""Every card renders with realistic data into a valid Adaptive Card 1.5 (as Teams takes it),
keeps any string it is given verbatim, and stays small."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from jinja2 import DictLoader

import cards
from cards import CardRenderError, render_card
from cards import render as card_render
from storage.views import (
    ProjectView,
    UpdateView,
    WorkstreamView,
)
from tests.cards.test_digest_card import MATRIX as DIGEST_MATRIX
from tests.cards.test_digest_card import WIDE as DIGEST_WIDE
from tests.cards.test_idea_cards import MATRIX as IDEA_MATRIX
from tests.cards.test_idea_cards import WIDE as IDEA_WIDE
from tests.cards.test_mir_cards import MATRIX as MIR_MATRIX
from tests.cards.test_mir_cards import WIDE as MIR_WIDE
from tests.cards.test_subscription_cards import MATRIX as SUBSCRIPTION_MATRIX
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
    without_teams_extensions,
)
from tests.support.teams import card_nodes

TEMPLATES = Path(cards.__file__).resolve().parent / "templates"
MAX_CARD_BYTES = 28 * 1024
JUNE, MAY, APRIL, MARCH = (date(2022, month, 1) for month in (6, 5, 4, 3))
WIDE_CARDS = (
    {
        "project",
        "projects",
        "programme",
        "update_form",
    }
    | MIR_WIDE
    | IDEA_WIDE
    | DIGEST_WIDE
)  # the Making It Real, ideas and digest cards say which are wide


@pytest.fixture(scope="session")
def validator() -> TeamsCardValidator:
    # Never skip: without the official schema these tests cannot vouch for the cards.
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


# --- realistic data, from the programme's June 2022 overview -----------------------------


def _update(month: date, text: str, rag: str | None = None) -> UpdateView:
    return UpdateView(month=month, text=text, rag=rag, author="Transformation Team")


def _project(
    workstream: WorkstreamView,
    slug: str,
    name: str,
    latest: UpdateView | None,
    *,
    history: tuple[UpdateView, ...] = (),
    **fields: Any,
) -> ProjectView:
    defaults: dict[str, Any] = {
        "aliases": (),
        "aim": None,
        "lead": None,
        "stage": "active",
        "inward_dependency": workstream.inward_dependency,
        "rag": latest.rag if latest else None,
    }
    return ProjectView(
        slug=slug,
        name=name,
        workstream_slug=workstream.slug,
        workstream_name=workstream.name,
        board=workstream.board,
        latest=latest,
        history=history,
        **(defaults | fields),
    )


def _workstream(
    slug: str, name: str, board: str | None, purpose: str, *, inward: bool = False
) -> WorkstreamView:
    return WorkstreamView(
        slug=slug, name=name, board=board, purpose=purpose, inward_dependency=inward
    )


PROGRAMME_LEVEL = _workstream(
    "programme-level",
    "Programme level",
    "Our Cambridge Transformation Board",
    "Reshape and redesign our Council to build a better, more sustainable organisation.",
)
PLANNING = _workstream(
    "planning-transformation",
    "Planning Transformation",
    None,
    "A transformation activity in a shared service, led by South Cambs.",
    inward=True,
)
ORG_CHANGE = _workstream(
    "organisational-change",
    "Organisational Change",
    "Organisational Change Board",
    "Strategically define our future Council, as well as developing our culture and staff.",
)
PARTNERSHIPS = _workstream(
    "partnerships-and-communities",
    "Partnerships and Communities",
    "Partnerships and Community Board",
    "Redefine, develop and adopt new relationships and ways of working with our partners.",
)
DELIVERY = _workstream(
    "transforming-delivery",
    "Transforming Delivery",
    "Transforming Delivery Board",
    "Reshape and redesign how services are delivered to create efficiencies.",
)

MAKING_IT_REAL = _project(
    ORG_CHANGE,
    "making-it-real",
    "Making it Real",
    _update(
        JUNE,
        "20 MIR events have taken place with an additional 13 in the diary. 12-13 Change "
        "Makers have not scheduled in their sessions and we are following up with these.\n\n"
        "If you're a **Change Leader** reading this, check in to make sure they are in the "
        "diary and, if they've happened, what actions your Change Makers are taking forward!",
        "amber",
    ),
    history=(
        _update(
            MAY,
            "Make it Real sessions are starting! Change Makers and Leaders have all received "
            "training and drop-in sessions for tools.",
            "green",
        ),
        _update(
            APRIL,
            "Change Maker Briefing and Making It Real Impact Sprint delivered in the first week "
            "of April to develop and design MIR session prototypes.",
            "green",
        ),
        _update(
            MARCH,
            "Change Leader and Maker recruitment underway; consultancy (Basis) procured and "
            "mobilised; impact sprint scheduled w/c 4 April.",
        ),
    ),
    aliases=("mir", "making it real"),
    aim="Teams refocus on the Council's purpose and their own role, and identify small "
    "changes that make immediate improvements.",
    lead="Change Leaders and Change Makers",
)
ALLOY = _project(
    DELIVERY,
    "alloy",
    "Alloy",
    _update(JUNE, "Currently in delivery.", "green"),
    history=(_update(MAY, "Currently in delivery.", "green"),),
    aim="Ongoing delivery of a priority ICT project.",
)
TASCOMI = _project(DELIVERY, "tascomi", "Tascomi", _update(JUNE, "Currently in delivery.", "green"))
EARLY_OPPORTUNITIES = _project(
    DELIVERY,
    "early-opportunities",
    "Early Opportunities",
    _update(
        JUNE,
        "All quick wins have been delivered, with any outstanding issues absorbed by the Alloy "
        "and Orchard projects. Close down report being produced: slight delay due to sickness, "
        "now expected late June.",
        "amber",
    ),
    stage="closing",
)
CITY_PORTRAIT = _project(
    PARTNERSHIPS,
    "city-portrait",
    "City Portrait",
    _update(
        JUNE,
        "Delays with approval of funding and the potential procurement route mean a risk to "
        "the original timeline.",
        "red",
    ),
)
PLANNING_TRANSFORMATION = _project(
    PLANNING,
    "planning-transformation",
    "Planning Transformation",
    None,
    lead="Stephen Kelly, Strategic Director of Planning",
)
SHARED_VISION = _project(
    PROGRAMME_LEVEL,
    "shared-vision",
    "Shared Vision for Cambridge",
    _update(
        JUNE,
        "7 June Leadership Away Day workshop complete. Next steps include finalising the project "
        "plan and developing an initial view of the shared vision for member engagement in July.",
        "green",
    ),
)

_MORE = {
    PROGRAMME_LEVEL: ["Financial Baselining"],
    ORG_CHANGE: ["Organisational Design"],
    PARTNERSHIPS: [
        "Partnership By Default",
        "Community Wealth Building",
        "Community Engagement Working Group, with CitizenLab",
        "Place Based Social Impact",
        "Vaccine Champions Programme",
        "Heating and Health",
    ],
    DELIVERY: [
        "Office Accommodation",
        "Orchard",
        "Website and Portals Review",
        "Data Strategy",
        "Robotic Process Automation",
    ],
}
_NAMED = {
    PROGRAMME_LEVEL: [SHARED_VISION],
    PLANNING: [PLANNING_TRANSFORMATION],
    ORG_CHANGE: [MAKING_IT_REAL],
    PARTNERSHIPS: [CITY_PORTRAIT],
    DELIVERY: [TASCOMI, ALLOY, EARLY_OPPORTUNITIES],
}


def _with_projects(workstream: WorkstreamView) -> WorkstreamView:
    others = [
        _project(
            workstream,
            name.lower().replace(" ", "-").replace(",", ""),
            name,
            _update(JUNE, f"{name}: currently in delivery.", "green"),
        )
        for name in _MORE.get(workstream, [])
    ]
    return replace(workstream, projects=tuple(_NAMED[workstream] + others))


WORKSTREAMS = [
    _with_projects(ws) for ws in (PROGRAMME_LEVEL, PLANNING, ORG_CHANGE, PARTNERSHIPS, DELIVERY)
]
PRINCIPLES = [
    "Achieve good outcomes for residents and the environment",
    "Enable partners, communities and the council to achieve outcomes together",
    "Use evidence and feedback to adapt and continuously improve",
    "Make our customer and resident experience simpler, quicker and better",
    "Offer sound value for money through efficient use of resources",
    "Make best use of data and digital",
    "Invest in our people capabilities and empower them to take the initiative",
]
PROGRAMME_ROWS = [
    {
        "name": ws.name,
        "board": ws.board,
        "projects": len(ws.projects),
        "updated_this_month": sum(1 for p in ws.projects if p.latest and p.latest.month == JUNE),
    }
    for ws in WORKSTREAMS
]
MONTHS = [
    (f"{year}-{month:02d}", f"{date(year, month, 1):%B %Y}")
    for year, month in [(2022, m) for m in range(6, 0, -1)] + [(2021, m) for m in range(12, 6, -1)]
]

CASES: dict[str, list[dict[str, Any]]] = {
    "welcome": [
        {"scope": "personal", "is_admin": False},
        {"scope": "team", "is_admin": True},
        {"scope": "groupChat", "is_admin": False},
    ],
    "help": [
        {"is_admin": False, "in_channel": False},
        {"is_admin": True, "in_channel": True},
    ],
    "project": [
        {"project": MAKING_IT_REAL, "can_post_update": False, "notice": None},
        {"project": ALLOY, "can_post_update": True, "notice": "Update posted for June 2022."},
        {"project": EARLY_OPPORTUNITIES, "can_post_update": False, "notice": None},
        {"project": PLANNING_TRANSFORMATION, "can_post_update": True, "notice": None},
    ],
    "project_choice": [
        {"query": "community", "candidates": list(WORKSTREAMS[3].projects[1:3])},
        {"query": "o", "candidates": list(WORKSTREAMS[4].projects[:5])},
    ],
    "project_not_found": [
        {"query": "tascommi portal", "suggestions": ["Tascomi", "Website and Portals Review"]},
        {"query": "xylophone quartet", "suggestions": []},
    ],
    "projects": [
        {"title": "Our Cambridge projects", "workstreams": WORKSTREAMS, "month_label": "June 2022"},
        {
            "title": "Transforming Delivery projects",
            "workstreams": [WORKSTREAMS[4]],
            "month_label": None,
        },
        {"title": "Empty", "workstreams": [PLANNING], "month_label": None},
    ],
    "programme": [
        {
            "rows": PROGRAMME_ROWS,
            "total_projects": sum(row["projects"] for row in PROGRAMME_ROWS),
            "total_updated": sum(row["updated_this_month"] for row in PROGRAMME_ROWS),
            "month_label": "June 2022",
            "principles": PRINCIPLES,
        },
        {
            "rows": [],
            "total_projects": 0,
            "total_updated": 0,
            "month_label": "this month",
            "principles": [],
        },
    ],
    "update_form": [
        {
            "project": CITY_PORTRAIT,
            "values": {"text": "", "rag": "red", "month": "2022-06"},
            "errors": [],
            "months": MONTHS,
            "form_id": "0" * 32,
        },
        {
            "project": PLANNING_TRANSFORMATION,
            "values": {"text": "Draft strategy shared.", "rag": "purple", "month": ""},
            "errors": [
                "Choose a RAG status: Red, Amber or Green.",
                "Choose the month this update reports on.",
            ],
            "months": MONTHS,
            "form_id": "f" * 32,
        },
    ],
    "unknown_command": [
        {
            "text": "statsu alloy",
            "suggestions": [
                ("status alloy", "Status of a project (e.g. Alloy)"),
                ("help", "Help"),
                ("projects", "All projects"),
            ],
        },
        {"text": "x" * 500, "suggestions": []},
    ],
    "message": [
        {"text": "OK, no update posted.", "style": style}
        for style in ("default", "attention", "good", "warning")
    ],
    # The Making It Real, ideas and digest cards, in the states their own modules render them
    # in (the hostile state is left to those modules: its text holds markup on purpose).
    **{
        name: [context for state, context in states.items() if state != "hostile"]
        for name, states in (MIR_MATRIX | IDEA_MATRIX | DIGEST_MATRIX | SUBSCRIPTION_MATRIX).items()
    },
}
RENDERED = [
    pytest.param(name, context, id=f"{name}-{index}")
    for name, contexts in CASES.items()
    for index, context in enumerate(contexts)
]


# --- helpers ---------------------------------------------------------------------------------


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _contains(card: dict[str, Any], text: str) -> bool:
    return any(text in string for string in _strings(card))


def _texts(card: dict[str, Any]) -> list[str]:
    """What the card says, one entry per TextBlock or TextRun (a RichTextBlock's pieces)."""
    return [
        node["text"] for node in card_nodes(card) if node.get("type") in ("TextBlock", "TextRun")
    ]


def _size(card: dict[str, Any]) -> int:
    return len(json.dumps(card).encode("utf-8"))


def _command_buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        node
        for node in card_nodes(card)
        if node.get("type") == "Action.Submit" and "command" in node.get("data", {})
    ]


def _commands(card: dict[str, Any]) -> list[str]:
    return [button["data"]["command"] for button in _command_buttons(card)]


def _by_id(card: dict[str, Any], element_id: str) -> dict[str, Any] | None:
    return next((node for node in card_nodes(card) if node.get("id") == element_id), None)


def _inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        node["id"]: node for node in card_nodes(card) if node.get("type", "").startswith("Input.")
    }


def _toggles(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in card_nodes(card) if node.get("type") == "Action.ToggleVisibility"]


# --- every card --------------------------------------------------------------------------------


def test_every_template_has_cases() -> None:
    templates = {
        path.name.removesuffix(".json.j2")
        for path in TEMPLATES.glob("*.json.j2")
        if not path.name.startswith("_")
    }
    assert set(CASES) == templates


@pytest.mark.parametrize(("name", "context"), RENDERED)
def test_card_is_valid_adaptive_card_1_5(
    validator: TeamsCardValidator, name: str, context: dict[str, Any]
) -> None:
    card = render_card(name, **context)
    validator.validate(card)
    assert card["version"] == "1.5"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert ("msteams" in card) == (name in WIDE_CARDS)
    assert _size(card) < MAX_CARD_BYTES


@pytest.mark.parametrize(("name", "context"), RENDERED)
def test_text_wraps_and_uses_only_markdown_teams_renders(
    name: str, context: dict[str, Any]
) -> None:
    card = render_card(name, **context)
    text_blocks = [node for node in card_nodes(card) if node.get("type") == "TextBlock"]
    assert text_blocks
    for text_block in text_blocks:
        assert text_block.get("wrap") is True, text_block
        for line in text_block["text"].splitlines():
            assert not line.lstrip().startswith(("#", "|")), f"header or table: {line!r}"
        assert "<" not in text_block["text"], f"HTML: {text_block['text']!r}"


@pytest.mark.parametrize(("name", "context"), RENDERED)
def test_command_buttons_send_the_command_as_a_message(name: str, context: dict[str, Any]) -> None:
    for button in _command_buttons(render_card(name, **context)):
        command = button["data"]["command"]
        assert button == {
            "type": "Action.Submit",
            "title": button["title"],
            "data": {"command": command},
        }


# --- the schema and Teams' additions -----------------------------------------------------------


def test_only_the_known_teams_additions_are_allowed(validator: TeamsCardValidator) -> None:
    card = render_card("project", project=ALLOY, can_post_update=False, notice=None)
    assert "msteams" not in without_teams_extensions(card)
    assert validator.errors(card) == []

    other_width = card | {"msteams": {"width": "Wide"}}
    assert validator.errors(other_width)
    unknown_root = card | {"teamsOnly": True}
    assert validator.errors(unknown_root)
    text_block_extension = json.loads(json.dumps(card))
    text_block_extension["body"][0]["msteams"] = {"width": "Full"}
    assert validator.errors(text_block_extension)
    not_a_string = json.loads(json.dumps(card))
    not_a_string["body"][0]["columns"][0]["items"][0]["text"] = 7
    assert validator.errors(not_a_string)


# Values a broken card might carry where the schema expects something else.
_JUNK: tuple[Any, ...] = (None, 7, -1, 2.5, "", "Huge", True, [], {}, [1], {"type": "Nope"})
_KEYS = ("type", "size", "weight", "color", "spacing", "wrap", "isMultiline", "choices", "width")
_TYPES = ("TextBlock", "Input.Text", "Container", "Action.Submit", "ColumnSet", "FactSet", "Nope")


def _broken_copies(card: dict[str, Any], rng: random.Random, count: int) -> list[Any]:
    """`count` copies of `card`, each with one object in it changed: a value replaced by
    junk, a key removed, a known key added with junk, or an element turned into another."""
    copies = []
    for _ in range(count):
        broken = json.loads(json.dumps(card))
        node = rng.choice(list(card_nodes(broken)))
        how = rng.randrange(4)
        if how == 0 and node:
            node[rng.choice(list(node))] = rng.choice(_JUNK)
        elif how == 1 and node:
            del node[rng.choice(list(node))]
        elif how == 2:
            node[rng.choice(_KEYS)] = rng.choice(_JUNK)
        else:
            node["type"] = rng.choice(_TYPES)
        copies.append(broken)
    return copies


def test_the_quick_check_passes_no_card_the_full_validator_refuses(
    validator: TeamsCardValidator,
) -> None:
    """TeamsCardValidator answers "valid" from fastjsonschema alone; jsonschema is asked only
    about cards that fail that. So every card fastjsonschema passes must pass jsonschema too:
    checked here on every rendered card and two broken copies of each (seeded)."""
    rng = random.Random(20261207)
    rendered = [render_card(name, **context) for name, context in _cases()]
    cards = rendered + [b for card in rendered for b in _broken_copies(card, rng, 2)]
    refused = 0
    for card in cards:
        stripped = without_teams_extensions(card)
        try:
            validator.quick_check(stripped)
        except fastjsonschema.JsonSchemaException:
            refused += 1
            continue
        assert validator.full_errors(stripped) == [], json.dumps(card)[:600]
    # The broken copies test something: many of them are refused.
    assert refused > len(rendered) // 2


def _cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, contexts in CASES.items():
        for context in contexts:
            yield name, context


# --- strings are kept verbatim and cannot break the JSON --------------------------------------

HOSTILE = (
    'He said "stop" \\ C:\\path\\n\nsecond line\t{{ 7*7 }} {% raw %} {# x #} </script>'
    " **bold** 🎉👩🏽‍💻 مرحبا بكم في كامبريدج"
)
HOSTILE_LONG = (HOSTILE + " ") * 50 + "end."  # about 5,000 characters


def _hostile_project() -> ProjectView:
    workstream = _workstream("ws", "Work " + HOSTILE, "Board " + HOSTILE, "Purpose " + HOSTILE)
    return _project(
        workstream,
        "hostile",
        "Name " + HOSTILE,
        _update(JUNE, HOSTILE_LONG, "red"),
        history=(_update(MAY, "History " + HOSTILE, None),),
        aim="Aim " + HOSTILE,
        lead="Lead " + HOSTILE,
    )


def test_hostile_strings_come_back_verbatim(validator: TeamsCardValidator) -> None:
    assert len(HOSTILE_LONG) > 5000
    project = _hostile_project()
    workstream = replace(
        _workstream("ws", project.workstream_name, project.board, "Purpose"),
        projects=(project,),
    )
    renders: list[tuple[dict[str, Any], list[str]]] = [
        (
            render_card("project", project=project, can_post_update=True, notice=HOSTILE),
            [
                HOSTILE_LONG,
                project.name,
                project.workstream_name,
                project.board or "",
                project.aim or "",
                project.lead or "",
                "History " + HOSTILE,
            ],
        ),
        (
            render_card(
                "projects", title=HOSTILE, workstreams=[workstream], month_label="June 2022"
            ),
            [HOSTILE, project.name, project.board or "", f"status {project.name}"],
        ),
        (
            render_card("project_choice", query=HOSTILE[:90], candidates=[project, ALLOY]),
            [HOSTILE[:90], project.name, f"status {project.name}"],
        ),
        (
            render_card("project_not_found", query=HOSTILE[:90], suggestions=[project.name]),
            [HOSTILE[:90], f"status {project.name}"],
        ),
        (
            render_card(
                "update_form",
                project=project,
                values={"text": HOSTILE_LONG, "rag": HOSTILE, "month": HOSTILE},
                errors=[HOSTILE],
                months=[(HOSTILE, HOSTILE)],
                form_id="0" * 32,
            ),
            [HOSTILE_LONG, HOSTILE, project.name],
        ),
        (
            render_card("unknown_command", text=HOSTILE[:90], suggestions=[(HOSTILE, HOSTILE)]),
            [HOSTILE[:90], HOSTILE],
        ),
        (render_card("message", text=HOSTILE_LONG, style="attention"), [HOSTILE_LONG]),
    ]
    for card, expected in renders:
        validator.validate(card)
        assert _size(card) < MAX_CARD_BYTES
        for text in expected:
            assert _contains(card, text), text[:60]
        assert not _contains(card, "49"), "template syntax in data must not be evaluated"


def test_update_form_keeps_the_exact_entries() -> None:
    card = render_card(
        "update_form",
        project=ALLOY,
        values={"text": HOSTILE_LONG, "rag": "amber", "month": "2022-05"},
        errors=[],
        months=MONTHS,
        form_id="0" * 32,
    )
    inputs = _inputs(card)
    assert inputs["text"]["value"] == HOSTILE_LONG
    assert inputs["rag"]["value"] == "amber"
    assert inputs["month"]["value"] == "2022-05"


# --- size ------------------------------------------------------------------------------------


def test_projects_card_with_twenty_long_statuses_stays_small(validator: TeamsCardValidator) -> None:
    long_status = ("Progress on procurement, risks and next steps. " * 90)[:4000]
    workstreams = [
        replace(
            ws,
            projects=tuple(
                replace(p, latest=_update(JUNE, long_status, "amber")) for p in ws.projects
            ),
        )
        for ws in WORKSTREAMS
    ]
    assert sum(len(ws.projects) for ws in workstreams) == 20
    card = render_card(
        "projects", title="Our Cambridge projects", workstreams=workstreams, month_label="June 2022"
    )
    validator.validate(card)
    assert _size(card) < MAX_CARD_BYTES
    assert not _contains(card, long_status), "list cards cut long statuses short"
    assert any(text.endswith("…") and len(text) <= 160 for text in _texts(card))


def test_project_card_with_long_history_stays_small(validator: TeamsCardValidator) -> None:
    long_status = ("Progress on procurement, risks and next steps. " * 90)[:4000]
    history = tuple(
        _update(date(2021, month, 1), long_status, "green") for month in range(12, 0, -1)
    )
    project = replace(ALLOY, latest=_update(JUNE, long_status, "red"), history=history + history)
    card = render_card("project", project=project, can_post_update=True, notice="Posted.")
    validator.validate(card)
    assert _size(card) < MAX_CARD_BYTES
    assert _contains(card, long_status), "the latest status is shown in full"
    assert _toggles(card)[0]["title"] == "Show earlier updates (24)"


# --- the project card ------------------------------------------------------------------------


def _actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return card.get("actions", [])


def test_post_update_button_only_for_those_who_may_post() -> None:
    officer = render_card("project", project=ALLOY, can_post_update=True, notice=None)
    staff = render_card("project", project=ALLOY, can_post_update=False, notice=None)

    assert {
        "type": "Action.Submit",
        "title": "Post update",
        "data": {"action": "post_update", "project": "alloy"},
    } in _actions(officer)
    assert not _contains(staff, "Post update")
    assert not any(node.get("data", {}).get("action") for node in card_nodes(staff))
    assert "projects" in _commands(officer) and "projects" in _commands(staff)


def test_earlier_updates_are_hidden_behind_a_toggle_only_when_there_are_some() -> None:
    card = render_card("project", project=MAKING_IT_REAL, can_post_update=False, notice=None)
    toggles = _toggles(card)
    assert len(toggles) == 1
    assert toggles[0]["title"] == "Show earlier updates (3)"
    (target,) = toggles[0]["targetElements"]
    history = _by_id(card, target)
    assert history is not None and history["isVisible"] is False
    for month in ("May 2022", "April 2022", "March 2022"):
        assert _contains(history, month)
    assert _contains(history, "Not reported"), "March had no RAG"
    assert not _contains(history, "20 MIR events"), "the latest update is not repeated"

    without = replace(MAKING_IT_REAL, history=())
    card = render_card("project", project=without, can_post_update=False, notice=None)
    assert _toggles(card) == []
    assert not any(node.get("isVisible") is False for node in card_nodes(card))


def test_project_card_shows_what_people_need() -> None:
    card = render_card(
        "project", project=MAKING_IT_REAL, can_post_update=False, notice="Update posted."
    )
    texts = _texts(card)
    assert texts[0] == "Update posted."
    assert "Making it Real" in texts
    assert "Organisational Change · Organisational Change Board" in texts
    assert MAKING_IT_REAL.latest is not None and MAKING_IT_REAL.latest.text in texts
    amber = next(
        n for n in card_nodes(card) if n.get("type") == "TextBlock" and n["text"] == "Amber"
    )
    assert amber["color"] == "warning"
    assert not _contains(card, "Closing")

    closing = render_card(
        "project", project=EARLY_OPPORTUNITIES, can_post_update=False, notice=None
    )
    assert "Closing" in _texts(closing)

    planning = render_card(
        "project", project=PLANNING_TRANSFORMATION, can_post_update=False, notice=None
    )
    assert "Inward dependency — not subject to Our Cambridge governance" in _texts(planning)
    assert "No update has been posted yet." in _texts(planning)
    assert "Not reported" in _texts(planning)


# --- the other cards -------------------------------------------------------------------------


def test_welcome_asks_for_a_mention_only_in_shared_conversations() -> None:
    mention = "Mention me (@Our Cambridge) with a command"
    personal = render_card("welcome", scope="personal", is_admin=False)
    assert _texts(personal)[0] == "Welcome to Our Cambridge"
    assert not _contains(personal, mention)
    assert _commands(personal) == ["help", "projects", "programme"]
    for scope in ("team", "groupChat"):
        assert _contains(render_card("welcome", scope=scope, is_admin=False), mention)


def test_help_mentions_officers_and_channels_only_when_relevant() -> None:
    plain = render_card("help", is_admin=False, in_channel=False)
    both = render_card("help", is_admin=True, in_channel=True)
    assert _commands(plain) == ["status alloy", "projects", "programme"]
    assert not _contains(plain, "Post update") and not _contains(plain, "@mention")
    assert _contains(both, "Post update") and _contains(both, "In a channel, @mention me first.")


def test_choice_and_not_found_offer_status_buttons() -> None:
    choice = render_card("project_choice", query="community", candidates=[ALLOY, TASCOMI])
    assert _contains(choice, 'Which project did you mean by "community"?')
    assert [(b["title"], b["data"]["command"]) for b in _command_buttons(choice)] == [
        ("Alloy", "status Alloy"),
        ("Tascomi", "status Tascomi"),
    ]

    suggested = render_card("project_not_found", query="alloi", suggestions=["Alloy"])
    assert _contains(suggested, 'I couldn\'t find a project called "alloi".')
    assert _contains(suggested, "Did you mean:")
    assert _commands(suggested) == ["status Alloy", "projects"]
    nothing = render_card("project_not_found", query="xylophone", suggestions=[])
    assert _commands(nothing) == ["projects"]


def test_projects_link_every_project_to_its_status() -> None:
    card = render_card(
        "projects", title="Our Cambridge projects", workstreams=WORKSTREAMS, month_label="June 2022"
    )
    selected = [
        node["selectAction"]["data"]["command"]
        for node in card_nodes(card)
        if "selectAction" in node
    ]
    assert selected == [f"status {p.name}" for ws in WORKSTREAMS for p in ws.projects]
    for ws in WORKSTREAMS:
        assert ws.name in _texts(card)
    assert "Red" in _texts(card) and "Not reported" in _texts(card)


def test_programme_overview_counts_and_hides_the_principles() -> None:
    context = CASES["programme"][0]
    card = render_card("programme", **context)
    texts = _texts(card)
    assert "Our Cambridge programme" in texts
    assert "Updated in June 2022" in texts
    assert str(context["total_projects"]) == "20" and "20" in texts
    (toggle,) = _toggles(card)
    principles = _by_id(card, toggle["targetElements"][0])
    assert principles is not None and principles["isVisible"] is False
    assert _contains(principles, "7. Invest in our people capabilities")
    assert _commands(card) == ["projects"]


def test_update_form_shows_errors_first_and_cancels_without_inputs() -> None:
    context = CASES["update_form"][1]
    card = render_card("update_form", **context)
    first, second = card["body"][:2]
    assert first["color"] == second["color"] == "attention"
    assert [first["text"], second["text"]] == context["errors"]
    assert _contains(card, "Post an update: Planning Transformation")
    inputs = _inputs(card)
    assert set(inputs) == {"text", "rag", "month"}
    assert all(
        node["isRequired"] and node["label"] and node["errorMessage"] for node in inputs.values()
    )
    assert inputs["text"]["isMultiline"] is True and inputs["text"]["maxLength"] == 4000
    assert [c["value"] for c in inputs["rag"]["choices"]] == ["red", "amber", "green"]
    assert inputs["month"]["choices"][0] == {"title": "June 2022", "value": "2022-06"}
    assert "value" not in inputs["month"]
    submit, cancel = _actions(card)
    assert submit == {
        "type": "Action.Submit",
        "title": "Post update",
        "data": {
            "action": "post_update_submit",
            "project": "planning-transformation",
            "form": "f" * 32,
        },
    }
    assert cancel == {
        "type": "Action.Submit",
        "title": "Cancel",
        "data": {"action": "post_update_cancel", "project": "planning-transformation"},
        "associatedInputs": "none",
    }


def test_unknown_command_quotes_a_short_text_and_always_offers_help_once() -> None:
    card = render_card(
        "unknown_command", text="z" * 500, suggestions=[("help", "Help"), ("projects", "All")]
    )
    (sorry,) = [text for text in _texts(card) if text.startswith("Sorry")]
    assert sorry == f'Sorry, I didn\'t understand "{"z" * 99}…".'
    assert _commands(card) == ["projects", "help"]
    assert _texts(render_card("unknown_command", text="hm", suggestions=[])) == [
        'Sorry, I didn\'t understand "hm".'
    ]


# --- rendering errors and filters --------------------------------------------------------------


def test_missing_context_raises_naming_the_template() -> None:
    with pytest.raises(CardRenderError, match=r"project\.json\.j2.*can_post_update"):
        render_card("project", project=ALLOY, notice=None)


@pytest.mark.parametrize("name", ["nonexistent", "_macros", "../cards/templates/help"])
def test_unknown_cards_are_refused(name: str) -> None:
    with pytest.raises(CardRenderError, match="Unknown card"):
        render_card(name)


def test_invalid_json_raises_naming_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = card_render.make_environment(
        DictLoader({"broken.json.j2": '{"type": "AdaptiveCard", "body": [{{ text }}]}'})
    )
    monkeypatch.setattr(card_render, "_environment", lambda: broken)
    with pytest.raises(CardRenderError, match=r"broken\.json\.j2 rendered invalid JSON"):
        render_card("broken", text="not json")


def test_filters() -> None:
    assert card_render.month_label(date(2022, 6, 1)) == "June 2022"
    assert [card_render.rag_label(r) for r in (None, "red", "amber", "green")] == [
        "Not reported",
        "Red",
        "Amber",
        "Green",
    ]
    assert [card_render.rag_color(r) for r in (None, "red", "amber", "green")] == [
        "default",
        "attention",
        "warning",
        "good",
    ]
    with pytest.raises(ValueError, match="purple"):
        card_render.rag_label("purple")
    assert card_render.truncate_text("short", 10) == "short"
    assert card_render.truncate_text("abcdefghijkl", 10) == "abcdefghi…"
    cut = card_render.truncate_text("The quick brown fox jumps over the lazy dog", 20)
    assert cut == "The quick brown fox…" and len(cut) <= 20
