"""The programme's data file: faithful to the source document, and loaded idempotently."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrate
from storage.db import create_engine, session_factory
from storage.models import DesignPrinciple, Project, ProjectUpdate, Workstream
from storage.seed import (
    DEFAULT_PROGRAMME_FILE,
    OVERVIEW_SOURCE,
    ProgrammeData,
    read_programme,
    seed_programme,
)

# The source document: the repository's copy, else the shared one it was taken from.
SOURCES = (
    Path(__file__).resolve().parents[2] / "docs" / "source" / "our-cambridge-programme.txt",
    Path("/work/shared/seed/our-cambridge-programme.txt"),
)

# The workstream headings of the page "Our Cambridge – Projects (June)".
JUNE_HEADINGS = {
    "Programme Level": "programme",
    "Planning Transformation": "planning-transformation",
    "Organisational Change": "organisational-change",
    "Partns. + Communities": "partnerships-and-communities",
    "Transforming Delivery": "transforming-delivery",
}

TABLES: tuple[type[SQLModel], ...] = (Workstream, Project, ProjectUpdate, DesignPrinciple)


def _flat(text: str) -> str:
    return " ".join(text.replace("**", "").split())


@pytest.fixture(scope="module")
def source_text() -> str:
    for path in SOURCES:
        if path.exists():
            return path.read_text(encoding="utf-8")
    pytest.fail(f"the programme's source document is missing (looked at {SOURCES})")


@pytest.fixture(scope="module")
def data() -> ProgrammeData:
    return read_programme()


def _june_page(source_text: str) -> dict[str, tuple[int | None, list[str]]]:
    """Each workstream heading of the June projects page: its "N Projects" and its list.

    Planning Transformation gives neither: the heading is the project.
    """
    page = source_text.split("Our Cambridge – Projects (June)", 1)[1]
    page = page.split("Data and Digital", 1)[0]
    counts: dict[str, int | None] = {}
    listed: dict[str, list[str]] = {}
    heading = ""
    for line in (line.strip() for line in page.splitlines()):
        if line in JUNE_HEADINGS:
            heading = line
            counts[heading], listed[heading] = None, []
        elif heading and line.startswith("- "):
            listed[heading].append(line[2:].strip())
        elif heading and (match := re.fullmatch(r"(\d+) Projects", line)):
            counts[heading] = int(match[1])
    return {heading: (counts[heading], listed[heading]) for heading in listed}


# --- the file ------------------------------------------------------------------------------


def test_file_has_the_programme(data: ProgrammeData) -> None:
    assert data.year == 2022
    assert [ws.slug for ws in data.workstreams] == [
        "programme",
        "organisational-change",
        "partnerships-and-communities",
        "transforming-delivery",
        "planning-transformation",
    ]
    assert len(data.projects) == 20
    assert [p.number for p in data.principles] == [1, 2, 3, 4, 5, 6, 7]
    planning = next(ws for ws in data.workstreams if ws.slug == "planning-transformation")
    assert planning.inward_dependency and planning.board is None
    assert [ws.inward_dependency for ws in data.workstreams].count(True) == 1


def test_every_june_project_is_in_the_file_in_its_workstream(
    source_text: str, data: ProgrammeData
) -> None:
    page = _june_page(source_text)
    assert set(JUNE_HEADINGS) <= set(page), "the June page's layout has changed"
    by_name = {_flat(n).casefold(): p for p in data.projects for n in (p.name, *p.aliases)}
    found = set()
    for heading, workstream in JUNE_HEADINGS.items():
        count, listed = page[heading]
        assert count is None or count == len(listed), heading
        listed = listed or [heading]
        for entry in listed:
            closing = entry.endswith("(Closing)")
            name = entry.removesuffix("(Closing)").strip()
            project = by_name.get(name.casefold())
            assert project is not None, f"June project {entry!r} is not in the file"
            assert project.workstream == workstream, entry
            assert project.stage == ("closing" if closing else "active"), entry
            found.add(project.slug)
    assert len(found) == 20 == len(data.projects), "every project in the file is a June one"


def test_projects_sit_in_their_workstreams(data: ProgrammeData) -> None:
    by_slug = {p.slug: p for p in data.projects}
    assert by_slug["shared-vision-for-cambridge"].workstream == "programme"
    assert by_slug["financial-baselining"].name == "Financial Baselining"
    assert "Financial Baselineing" in by_slug["financial-baselining"].aliases
    assert by_slug["making-it-real"].workstream == "organisational-change"
    assert by_slug["city-portrait"].workstream == "partnerships-and-communities"
    assert by_slug["alloy"].workstream == "transforming-delivery"
    assert by_slug["planning-transformation"].workstream == "planning-transformation"
    assert [p.slug for p in data.projects if p.inward_dependency] == ["planning-transformation"]
    assert [p.slug for p in data.projects if p.stage == "closing"] == ["early-opportunities"]
    assert by_slug["planning-transformation"].lead is not None
    assert "Stephen Kelly" in by_slug["planning-transformation"].lead


def test_updates_by_month(data: ProgrammeData) -> None:
    by_slug = {p.slug: p for p in data.projects}

    def months(slug: str) -> list[int]:
        return [u.month.month for u in by_slug[slug].updates]

    for slug in ("alloy", "tascomi", "orchard"):
        latest = max(by_slug[slug].updates, key=lambda u: u.month)
        assert (latest.month, latest.text) == (date(2022, 6, 1), "Currently in delivery")
    assert {4, 5, 6} <= set(months("making-it-real"))
    assert months("heating-and-health") == []
    assert months("planning-transformation") == [6]
    assert months("shared-vision-for-cambridge") == [4, 5, 6]
    assert months("early-opportunities") == [5, 6]
    assert all(u.rag is None for p in data.projects for u in p.updates)
    # Follow-on bullets join their project's text.
    may_mir = next(u for u in by_slug["making-it-real"].updates if u.month.month == 5)
    assert may_mir.text.endswith("we're continuing to iterate and improve the process.")
    june_od = next(u for u in by_slug["organisational-design"].updates if u.month.month == 6)
    assert "\nWider consideration" in june_od.text


def _overviews(source_text: str) -> dict[int, str]:
    """The text of each month's overview (March to June), flattened, by month number."""
    parts = re.split(r"Our Cambridge – Overview \((\w+)\)", source_text)
    months = {"March": 3, "April": 4, "May": 5, "June": 6}
    return {months[name]: _flat(text) for name, text in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_update_is_its_months_overview_text(source_text: str, data: ProgrammeData) -> None:
    overviews = _overviews(source_text)
    assert sorted(overviews) == [3, 4, 5, 6]
    for project in data.projects:
        for update in project.updates:
            # Follow-on bullets are joined as further paragraphs: each is checked on its own.
            for paragraph in update.text.split("\n"):
                assert _flat(paragraph) in overviews[update.month.month], (
                    project.slug,
                    update.month,
                    paragraph,
                )


def test_workstreams_and_aims_are_the_source_documents_words(
    source_text: str, data: ProgrammeData
) -> None:
    flat_source = _flat(source_text)
    for ws in data.workstreams:
        for text in (ws.name if ws.slug != "programme" else "Programme Level", ws.purpose):
            assert _flat(text) in flat_source, (ws.slug, text)
        for optional in (ws.board, ws.aim, *ws.outcomes):
            assert optional is None or _flat(optional) in flat_source, (ws.slug, optional)
    for project in data.projects:
        assert project.aim is None or _flat(project.aim) in flat_source, project.slug
        assert project.lead is None or _flat(project.lead) in flat_source, project.slug


def test_every_principle_is_the_source_documents(source_text: str, data: ProgrammeData) -> None:
    flat_source = _flat(source_text)
    for principle in data.principles:
        assert f"{principle.number}. {principle.text}" in flat_source


def test_months_are_first_days_of_2022_months(data: ProgrammeData) -> None:
    assert all(
        re.fullmatch(r"2022-0[3-6]-01", u.month.isoformat())
        for p in data.projects
        for u in p.updates
    )


def _raw() -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_PROGRAMME_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw["projects"][0].update(owner="someone"), "Extra inputs"),
        (lambda raw: raw["workstreams"][0].update(colour="blue"), "Extra inputs"),
        (lambda raw: raw["projects"][0].update(workstream="nowhere"), "unknown workstream"),
        (lambda raw: raw["projects"][0]["updates"][0].update(month="June 2022"), "YYYY-MM"),
        (lambda raw: raw["projects"][0]["updates"][0].update(month="2021-06"), "not in 2022"),
        (lambda raw: raw["projects"][0].update(stage="paused"), "stage"),
        (lambda raw: raw["projects"][1].update(slug=raw["projects"][0]["slug"]), "duplicate"),
        (lambda raw: raw["projects"][1]["aliases"].append("Alloy"), "duplicate project name"),
        (lambda raw: raw["projects"][0]["updates"][0].update(rag="purple"), "rag"),
    ],
)
def test_the_file_is_validated(change: Any, message: str) -> None:
    raw = _raw()
    change(raw)
    with pytest.raises(ValidationError, match=message):
        ProgrammeData.model_validate(raw)


# --- loading it ----------------------------------------------------------------------------


def _rows_in(data: ProgrammeData) -> int:
    updates = sum(len(p.updates) for p in data.projects)
    return len(data.workstreams) + len(data.projects) + updates + len(data.principles)


async def _snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[Any]]:
    snapshot = {}
    async with sessions() as session:
        for table in TABLES:
            rows = await session.exec(select(table))
            snapshot[table.__name__] = sorted(
                (row.model_dump() for row in rows), key=lambda row: row["id"]
            )
    return snapshot


async def _overview_updates(session: AsyncSession, *, slug: str) -> list[ProjectUpdate]:
    rows = await session.exec(
        select(ProjectUpdate)
        .join(Project, col(Project.id) == col(ProjectUpdate.project_id))
        .where(Project.slug == slug, ProjectUpdate.source == OVERVIEW_SOURCE)
        .order_by(col(ProjectUpdate.month))
    )
    return list(rows)


async def _project(session: AsyncSession, *, slug: str) -> Project:
    return (await session.exec(select(Project).where(Project.slug == slug))).one()


async def test_the_seeded_database_has_the_file(
    sessions: async_sessionmaker[AsyncSession], data: ProgrammeData
) -> None:
    async with sessions() as session:
        workstreams = list(
            await session.exec(select(Workstream).order_by(col(Workstream.position)))
        )
        projects = list(await session.exec(select(Project).order_by(col(Project.position))))
        principles = list(await session.exec(select(DesignPrinciple)))
        overview = list(
            await session.exec(select(ProjectUpdate).where(ProjectUpdate.source == OVERVIEW_SOURCE))
        )
        alloy = await _overview_updates(session, slug="alloy")
        tascomi = await _overview_updates(session, slug="tascomi")
        mir = await _overview_updates(session, slug="making-it-real")
        heating = await _overview_updates(session, slug="heating-and-health")
        alloy_row = await _project(session, slug="alloy")
    assert [ws.slug for ws in workstreams] == [ws.slug for ws in data.workstreams]
    assert [p.slug for p in projects] == [p.slug for p in data.projects]
    assert len(projects) == 20 and len(workstreams) == 5 and len(principles) == 7
    assert len(overview) == sum(len(p.updates) for p in data.projects)
    ws_slugs = {ws.id: ws.slug for ws in workstreams}
    assert {p.slug: ws_slugs[p.workstream_id] for p in projects} == {
        p.slug: p.workstream for p in data.projects
    }

    assert (alloy[-1].month, alloy[-1].text) == (date(2022, 6, 1), "Currently in delivery")
    assert alloy[-1].author == "Our Cambridge overview (June 2022)"
    assert (alloy_row.current_status, alloy_row.current_status_month, alloy_row.rag) == (
        "Currently in delivery",
        date(2022, 6, 1),
        None,
    )
    assert (tascomi[-1].month, tascomi[-1].text) == (date(2022, 6, 1), "Currently in delivery")
    assert {date(2022, m, 1) for m in (4, 5, 6)} <= {u.month for u in mir}
    assert heating == []


async def test_seeding_again_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], data: ProgrammeData
) -> None:
    before = await _snapshot(sessions)
    report = await seed_programme(sessions)
    assert (report.created, report.updated, report.unchanged) == (0, 0, _rows_in(data))
    assert await _snapshot(sessions) == before


async def test_seeding_brings_edited_rows_into_line(
    sessions: async_sessionmaker[AsyncSession], data: ProgrammeData
) -> None:
    before = await _snapshot(sessions)
    alloy = next(p for p in data.projects if p.slug == "alloy")
    june = alloy.updates[-1].model_copy(update={"text": "Live since June."})
    edited = alloy.model_copy(
        update={"aim": "An edited aim.", "updates": [*alloy.updates[:-1], june]}
    )
    changed = data.model_copy(
        update={"projects": [edited if p.slug == "alloy" else p for p in data.projects]}
    )
    try:
        report = await seed_programme(sessions, changed)
        # The project row (its aim and its current status) and its June update.
        assert (report.created, report.updated) == (0, 2)
        async with sessions() as session:
            row = await _project(session, slug="alloy")
        assert (row.aim, row.current_status) == ("An edited aim.", "Live since June.")
    finally:
        report = await seed_programme(sessions)
    assert (report.created, report.updated) == (0, 2)
    assert await _snapshot(sessions) == before


@pytest.mark.parametrize(
    "month",
    [date(2022, 7, 1), date(2022, 6, 1)],
    ids=["a-later-month", "the-same-month-posted-later"],
)
async def test_an_update_posted_from_teams_survives_a_reseed_and_stays_current(
    sessions: async_sessionmaker[AsyncSession], month: date
) -> None:
    before = await _snapshot(sessions)
    posted = ProjectUpdate(
        project_id=0,
        month=month,
        text="Go-live planned with the supplier.",
        rag="amber",
        author="Programme team",
        source=f"teams:{uuid.uuid4().hex}",
    )
    async with sessions() as session, session.begin():
        posted.project_id = (await _project(session, slug="alloy")).id or 0
        session.add(posted)
    try:
        # The seed finds the newer update and makes it Alloy's current status...
        report = await seed_programme(sessions)
        assert (report.created, report.updated) == (0, 1)
        # ...and a second seed leaves both alone.
        report = await seed_programme(sessions)
        assert (report.created, report.updated) == (0, 0)
        async with sessions() as session:
            alloy = await _project(session, slug="alloy")
            kept = (
                await session.exec(select(ProjectUpdate).where(ProjectUpdate.id == posted.id))
            ).one_or_none()
            overview = await _overview_updates(session, slug="alloy")
        assert kept is not None and kept.text == "Go-live planned with the supplier."
        assert (alloy.current_status, alloy.current_status_month, alloy.rag) == (
            "Go-live planned with the supplier.",
            month,
            "amber",
        )
        assert overview[-1].text == "Currently in delivery", "the overview's June is kept too"
    finally:
        # Leave the shared database as the other tests expect it.
        async with sessions() as session, session.begin():
            row = await session.get(ProjectUpdate, posted.id)
            if row is not None:
                await session.delete(row)
        await seed_programme(sessions)
    assert await _snapshot(sessions) == before


@pytest.fixture
async def empty_sqlite(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


async def test_a_first_seed_creates_every_row(
    empty_sqlite: async_sessionmaker[AsyncSession], data: ProgrammeData
) -> None:
    report = await seed_programme(empty_sqlite, data)
    assert (report.created, report.updated, report.unchanged) == (_rows_in(data), 0, 0)
    report = await seed_programme(empty_sqlite, data)
    assert (report.created, report.updated, report.unchanged) == (0, 0, _rows_in(data))
    async with empty_sqlite() as session:
        heating = await _project(session, slug="heating-and-health")
        planning = await _project(session, slug="planning-transformation")
    assert heating.current_status is None and heating.current_status_month is None
    assert planning.current_status_month == date(2022, 6, 1)
    assert planning.inward_dependency
