"""The programme's data file: faithful to the source document, and loaded idempotently."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import programme
from storage.models import DesignPrinciple, Project, ProjectUpdate, Workstream
from storage.seed import read_programme, seed_programme

# A copy of the programme's source document is kept in the repository, so that the data
# file can be checked against it anywhere.
SOURCE = Path(__file__).resolve().parents[2] / "docs" / "source" / "our-cambridge-programme.txt"


def _flat(text: str) -> str:
    return " ".join(text.replace("**", "").split())


@pytest.fixture(scope="module")
def source_text() -> str:
    if not SOURCE.exists():
        pytest.fail(f"the programme's source document is missing at {SOURCE}")
    return SOURCE.read_text(encoding="utf-8")


def _june_projects(source_text: str) -> list[str]:
    """The project names listed on the page "Our Cambridge – Projects (June)"."""
    page = source_text.split("Our Cambridge – Projects (June)", 1)[1].split("Data and Digital", 1)[
        0
    ]
    names = [line[2:].strip() for line in page.splitlines() if line.startswith("- ")]
    return names + ["Planning Transformation"]


def test_file_has_every_june_project(source_text: str) -> None:
    data = read_programme()
    assert len(data.workstreams) == 5
    assert len(data.principles) == 7
    names = {p.name for p in data.projects} | {a for p in data.projects for a in p.aliases}
    june = _june_projects(source_text)
    assert len(june) == 20
    assert [name for name in june if name not in names] == []
    assert len(data.projects) == 20


def test_every_update_is_the_source_documents_text(source_text: str) -> None:
    flat_source = _flat(source_text)
    for project in read_programme().projects:
        for update in project.updates:
            for paragraph in update.text.split("\n"):
                assert _flat(paragraph) in flat_source, (project.slug, update.month, paragraph)


def test_every_principle_is_the_source_documents(source_text: str) -> None:
    flat_source = _flat(source_text)
    for principle in read_programme().principles:
        assert f"{principle.number}. {principle.text}" in flat_source


def test_projects_sit_in_their_workstreams() -> None:
    by_slug = {p.slug: p for p in read_programme().projects}
    assert by_slug["alloy"].workstream == "transforming-delivery"
    assert by_slug["making-it-real"].workstream == "organisational-change"
    assert by_slug["city-portrait"].workstream == "partnerships-and-communities"
    assert by_slug["financial-baselining"].workstream == "programme"
    assert by_slug["planning-transformation"].inward_dependency
    assert by_slug["early-opportunities"].stage == "closing"


async def test_seeded_statuses(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        alloy = await programme.get_project(session, slug="alloy")
        tascomi = await programme.get_project(session, slug="tascomi")
        mir = await programme.get_project(session, slug="making-it-real")
        heating = await programme.get_project(session, slug="heating-and-health")
    assert alloy.latest is not None
    assert (alloy.latest.month, alloy.latest.text) == (date(2022, 6, 1), "Currently in delivery")
    assert tascomi.latest is not None and tascomi.latest.text == "Currently in delivery"
    assert [u.month.month for u in mir.history] == [5, 4, 3]
    assert heating.latest is None and heating.history == ()


async def _counts(session: AsyncSession) -> tuple[int, ...]:
    counts = []
    for table in (Workstream, Project, ProjectUpdate, DesignPrinciple):
        counts.append((await session.exec(select(func.count()).select_from(table))).one())
    return tuple(counts)


async def test_seeding_again_changes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        before = await _counts(session)
    report = await seed_programme(sessions)
    assert (report.created, report.updated) == (0, 0)
    async with sessions() as session:
        assert await _counts(session) == before


async def test_an_update_posted_from_teams_survives_a_reseed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await programme.add_update(
            session,
            slug="heating-and-health",
            month=date(2026, 10, 1),
            text="Winter campaign planned with partners.",
            rag="green",
            author="Programme team",
            author_aad_id=None,
        )
    report = await seed_programme(sessions)
    assert (report.created, report.updated) == (0, 0)
    async with sessions() as session:
        project = await programme.get_project(session, slug="heating-and-health")
    assert project.latest is not None
    assert project.latest.text == "Winter campaign planned with partners."
    assert project.rag == "green"


def test_month_keys_are_year_and_month() -> None:
    assert all(
        re.fullmatch(r"2022-0[3-6]-01", u.month.isoformat())
        for p in read_programme().projects
        for u in p.updates
    )
