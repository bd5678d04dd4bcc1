"""Load the programme's reviewed data file (storage/data/programme.yaml) idempotently.

Rows are matched by natural key (workstream and project by slug, design principle by number,
an overview update by project, month and source) and brought into line with the file; nothing
is ever deleted, so updates posted from Teams survive a re-seed. Loading the same file twice
changes nothing the second time.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import SEED_LOCK, hold_transaction_lock, transaction
from storage.models import DesignPrinciple, Project, ProjectUpdate, Workstream, aware

logger = logging.getLogger(__name__)

DEFAULT_PROGRAMME_FILE = Path(__file__).parent / "data" / "programme.yaml"

# The source of every update the seed writes; updates posted from Teams have their own.
OVERVIEW_SOURCE = "overview"

# English month names, whatever the process's locale (strftime's %B follows the locale).
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

RowT = TypeVar("RowT", bound=SQLModel)
Outcome = Literal["created", "updated", "unchanged"]

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
Rag = Literal["red", "amber", "green"]

_MONTH = re.compile(r"(\d{4})-(\d{2})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkstreamData(_Strict):
    slug: Slug
    name: Name
    board: Name | None
    purpose: Text
    aim: Text | None
    outcomes: list[Text]
    inward_dependency: bool


class UpdateData(_Strict):
    month: date  # the first day of the month the update reports on
    text: Text
    rag: Rag | None = None

    @field_validator("month", mode="before")
    @classmethod
    def _year_month(cls, value: Any) -> Any:
        """The file gives months as `YYYY-MM` (which YAML reads as a string), not days."""
        if isinstance(value, date):
            if value.day != 1:
                raise ValueError("an update's month is the first day of that month")
            return value
        match = _MONTH.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"month must be written YYYY-MM, not {value!r}")
        return date(int(match[1]), int(match[2]), 1)


class ProjectData(_Strict):
    slug: Slug
    name: Name
    workstream: Slug
    aliases: list[Name]
    aim: Text | None
    lead: Name | None
    stage: Literal["active", "closing"]
    inward_dependency: bool
    updates: list[UpdateData]


class PrincipleData(_Strict):
    number: int
    text: Text


class ProgrammeData(_Strict):
    year: int
    workstreams: list[WorkstreamData]
    projects: list[ProjectData]
    principles: list[PrincipleData]

    @model_validator(mode="after")
    def _consistent(self) -> ProgrammeData:
        _unique("workstream slug", [ws.slug for ws in self.workstreams])
        _unique("project slug", [p.slug for p in self.projects])
        _unique("principle number", [p.number for p in self.principles])
        # A name or alias must point at one project only, or looking projects up is ambiguous.
        _unique(
            "project name or alias",
            [name for p in self.projects for name in {_folded(n) for n in (p.name, *p.aliases)}],
        )
        workstreams = {ws.slug for ws in self.workstreams}
        for project in self.projects:
            if project.workstream not in workstreams:
                raise ValueError(f"{project.slug}: unknown workstream {project.workstream!r}")
            _unique(f"{project.slug} update month", [u.month for u in project.updates])
            for update in project.updates:
                if update.month.year != self.year:
                    raise ValueError(f"{project.slug}: {update.month:%Y-%m} is not in {self.year}")
        return self


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def _unique(what: str, keys: list[Any]) -> None:
    duplicates = sorted(str(key) for key, count in Counter(keys).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what} in the programme file: {', '.join(duplicates)}")


@dataclass
class SeedReport:
    """How many rows the seed created, changed and found already as the file has them."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


def read_programme(path: Path = DEFAULT_PROGRAMME_FILE) -> ProgrammeData:
    with path.open(encoding="utf-8") as file:
        return ProgrammeData.model_validate(yaml.safe_load(file))


def overview_posted_at(month: date) -> datetime:
    """When a monthly overview update counts as posted: noon on the month's last day. The
    programme's reports carry no time of their own; this dates them in their month, so a
    digest of a past week (`digest preview --week 2022-W24`) sees the updates of that time."""
    last_day = calendar.monthrange(month.year, month.month)[1]
    return datetime(month.year, month.month, last_day, 12, tzinfo=UTC)


def overview_author(month: date) -> str:
    return f"Our Cambridge overview ({MONTH_NAMES[month.month - 1]} {month.year})"


async def seed_programme(
    sessions: async_sessionmaker[AsyncSession], data: ProgrammeData | None = None
) -> SeedReport:
    """Upsert the file's rows by natural key in one transaction; never delete anything."""
    if data is None:
        data = read_programme()
    report = SeedReport()
    async with transaction(sessions) as session:
        # Replicas seeding at once would both insert the same new rows; the second waits
        # and then finds them.
        await hold_transaction_lock(session, SEED_LOCK)
        workstream_ids = await _seed_workstreams(session, data=data, report=report)
        await _seed_projects(session, data=data, workstream_ids=workstream_ids, report=report)
        await _seed_principles(session, data=data, report=report)
    logger.info(
        "Programme data loaded: %d rows created, %d updated, %d unchanged",
        report.created,
        report.updated,
        report.unchanged,
    )
    return report


async def _seed_workstreams(
    session: AsyncSession, *, data: ProgrammeData, report: SeedReport
) -> dict[str, int]:
    existing = {ws.slug: ws for ws in await session.exec(select(Workstream))}
    rows: dict[str, Workstream] = {}
    for position, ws in enumerate(data.workstreams):
        row, outcome = _upsert(
            session,
            existing=existing.get(ws.slug),
            model=Workstream,
            fields={**ws.model_dump(), "position": position},
        )
        report.count(outcome)
        rows[ws.slug] = row
    await session.flush()
    return {slug: _id(row) for slug, row in rows.items()}


async def _seed_projects(
    session: AsyncSession,
    *,
    data: ProgrammeData,
    workstream_ids: Mapping[str, int],
    report: SeedReport,
) -> None:
    existing = {p.slug: p for p in await session.exec(select(Project))}
    projects: list[tuple[Project, Outcome]] = []
    for position, project in enumerate(data.projects):
        fields = project.model_dump(exclude={"updates", "workstream"})
        fields |= {"workstream_id": workstream_ids[project.workstream], "position": position}
        projects.append(
            _upsert(session, existing=existing.get(project.slug), model=Project, fields=fields)
        )
    await session.flush()

    overview = {
        (u.project_id, u.month): u
        for u in await session.exec(
            select(ProjectUpdate).where(ProjectUpdate.source == OVERVIEW_SOURCE)
        )
    }
    for (row, _), project in zip(projects, data.projects, strict=True):
        for update in project.updates:
            project_id = _id(row)
            _, outcome = _upsert(
                session,
                existing=overview.get((project_id, update.month)),
                model=ProjectUpdate,
                fields={
                    "project_id": project_id,
                    "month": update.month,
                    "text": update.text,
                    "rag": update.rag,
                    "author": overview_author(update.month),
                    "created_at": overview_posted_at(update.month),
                    "source": OVERVIEW_SOURCE,
                },
            )
            report.count(outcome)
    await session.flush()

    # A project's current status is its newest update from any source, so an update posted
    # from Teams for a later month (or later in the same month) stays current.
    latest = await _latest_updates(session, project_ids=[_id(row) for row, _ in projects])
    for row, outcome in projects:
        newest = latest.get(_id(row))
        status_changed = _apply(
            row,
            {
                "current_status": newest.text if newest else None,
                "current_status_month": newest.month if newest else None,
                "rag": newest.rag if newest else None,
            },
        )
        report.count("updated" if outcome == "unchanged" and status_changed else outcome)
    await session.flush()


async def _latest_updates(
    session: AsyncSession, *, project_ids: list[int]
) -> dict[int, ProjectUpdate]:
    updates = await session.exec(
        select(ProjectUpdate)
        .where(col(ProjectUpdate.project_id).in_(project_ids))
        .order_by(
            col(ProjectUpdate.month).desc(),
            col(ProjectUpdate.created_at).desc(),
            col(ProjectUpdate.id).desc(),
        )
    )
    latest: dict[int, ProjectUpdate] = {}
    for update in updates:
        latest.setdefault(update.project_id, update)
    return latest


async def _seed_principles(
    session: AsyncSession, *, data: ProgrammeData, report: SeedReport
) -> None:
    existing = {p.number: p for p in await session.exec(select(DesignPrinciple))}
    for principle in data.principles:
        _, outcome = _upsert(
            session,
            existing=existing.get(principle.number),
            model=DesignPrinciple,
            fields=principle.model_dump(),
        )
        report.count(outcome)
    await session.flush()


def _upsert(
    session: AsyncSession,
    *,
    existing: RowT | None,
    model: type[RowT],
    fields: Mapping[str, Any],
) -> tuple[RowT, Outcome]:
    """Create the row, or bring the existing one into line with `fields`."""
    if existing is None:
        row = model(**fields)
        session.add(row)
        return row, "created"
    return existing, "updated" if _apply(existing, fields) else "unchanged"


def _apply(row: SQLModel, fields: Mapping[str, Any]) -> bool:
    """Set the fields that differ; True if any did."""
    changed = False
    for key, value in fields.items():
        if _comparable(getattr(row, key)) != _comparable(value):
            setattr(row, key, value)
            changed = True
    return changed


def _comparable(value: Any) -> Any:
    return aware(value) if isinstance(value, datetime) else value


def _id(row: Workstream | Project) -> int:
    if row.id is None:
        raise RuntimeError(f"{type(row).__name__} {row.slug!r} has no id after a flush")
    return row.id
