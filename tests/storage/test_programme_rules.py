"""Pure rules: finding a project by what people type, and checking an update form."""

from __future__ import annotations

from datetime import date

import pytest

from storage.programme import (
    ProjectMatch,
    ProjectName,
    check_update_form,
    match_project,
    recent_months,
    search_names,
)

PROJECTS = [
    ProjectName("alloy", "Alloy", ()),
    ProjectName("tascomi", "Tascomi", ()),
    ProjectName("orchard", "Orchard", ()),
    ProjectName("organisational-design", "Organisational Design", ("Org Design", "OD")),
    ProjectName("website-and-portals-review", "Website and Portals Review", ("Website",)),
    ProjectName("community-wealth-building", "Community Wealth Building", ("CWB",)),
    ProjectName(
        "community-engagement-working-group", "Community Engagement Working Group", ("CitizenLab",)
    ),
    ProjectName("data-strategy", "Data Strategy", ()),
    ProjectName("office-accommodation", "Office Accommodation", ()),
]


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("alloy", "alloy"),
        ("  Alloy!  ", "alloy"),
        ("tascommi", "tascomi"),
        ("tascomy", "tascomi"),
        ("org design", "organisational-design"),
        ("organisation design", "organisational-design"),
        ("od", "organisational-design"),
        ("website", "website-and-portals-review"),
        ("web", "website-and-portals-review"),
        ("citizen lab", "community-engagement-working-group"),
        ("ofice accomodation", "office-accommodation"),
        ("data", "data-strategy"),
    ],
)
def test_one_project_is_found(query: str, slug: str) -> None:
    assert match_project(query, PROJECTS).found == (slug,)


def test_close_matches_are_all_offered() -> None:
    match = match_project("community", PROJECTS)
    assert set(match.found) == {"community-wealth-building", "community-engagement-working-group"}


def test_no_match_suggests_the_nearest_names() -> None:
    near_miss = match_project("orchestra", PROJECTS)
    assert near_miss.found == ()
    assert near_miss.suggestions[0] == "Orchard"
    assert len(near_miss.suggestions) <= 3
    far = match_project("zebra crossing", PROJECTS)
    assert far.found == () and len(far.suggestions) == 3, "the nearest are offered anyway"
    assert match_project("qqqq", PROJECTS) == ProjectMatch(found=(), suggestions=())
    assert match_project("   ", PROJECTS).found == ()


def test_compose_search_by_prefix() -> None:
    assert search_names("orch", PROJECTS, limit=10)[0] == "orchard"
    assert search_names("", PROJECTS, limit=4) == [p.slug for p in PROJECTS[:4]]


def test_recent_months_cross_the_year() -> None:
    months = recent_months(date(2026, 2, 14), count=3)
    assert months == [date(2026, 2, 1), date(2026, 1, 1), date(2025, 12, 1)]


def test_update_form_accepts_a_valid_update() -> None:
    submission, _, errors = check_update_form(
        {"text": "  In delivery.  ", "rag": "GREEN", "month": "2026-11"}, today=date(2026, 11, 28)
    )
    assert errors == []
    assert submission is not None
    assert (submission.text, submission.rag, submission.month) == (
        "In delivery.",
        "green",
        date(2026, 11, 1),
    )


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"text": "", "rag": "red", "month": "2026-11"}, "can't be empty"),
        ({"text": "x" * 4001, "rag": "red", "month": "2026-11"}, "under 4,000"),
        ({"text": "ok", "rag": "blue", "month": "2026-11"}, "RAG"),
        ({"text": "ok", "rag": "red", "month": "2026-12"}, "future"),
        ({"text": "ok", "rag": "red", "month": "2024-01"}, "twelve months"),
        ({"text": "ok", "rag": "red", "month": "November"}, "month"),
        ({"text": ["not", "text"], "rag": 3, "month": None}, "can't be empty"),
    ],
)
def test_update_form_refuses_with_a_reason_and_keeps_entries(
    values: dict[str, object], reason: str
) -> None:
    submission, entries, errors = check_update_form(values, today=date(2026, 11, 28))
    assert submission is None
    assert any(reason in error for error in errors), errors
    assert set(entries) == {"text", "rag", "month"}
    if isinstance(values["text"], str):
        assert entries["text"] == values["text"]
