"""Load the programme's reviewed data file (storage/data/programme.yaml) idempotently."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import transaction
from storage.models import DesignPrinciple, Project, ProjectUpdate, Workstream

logger = logging.getLogger(__name__)

DEFAULT_PROGRAMME_FILE = Path(__file__).parent / "data" / "programme.yaml"
OVERVIEW_SOURCE = "overview"

RowT = TypeVar("RowT", bound=SQLModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkstreamData(_Strict):
    slug: str
    name: str
    board: str | None
    purpose: str
    aim: str | None
    outcomes: list[str]
    inward_dependency: bool


class UpdateData(_Strict):
    month: date
    text: str
    rag: Literal["red", "amber", "green"] | None = None

    @field_validator("month", mode="before")
    @classmethod
    def _year_month(cls, value: Any) -> Any:
        # YAML reads 2022-06 as a string; the file gives months, not days.
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}", value):
            year, month = value.split("-")
            return date(int(year), int(month), 1)
        return value


class ProjectData(_Strict):
    slug: str
    name: str
    workstream: str
    aliases: list[str]
    aim: str | None
    lead: str | None
    stage: Literal["active", "closing"]
    inward_dependency: bool
    updates: list[UpdateData]


class PrincipleData(_Strict):
    number: int
    text: str


class ProgrammeData(_Strict):
    year: int
    workstreams: list[WorkstreamData]
    projects: list[ProjectData]
    principles: list[PrincipleData]

    @model_validator(mode="after")
    def _consistent(self) -> ProgrammeData:
        workstreams = {ws.slug for ws in self.workstreams}
        for project in self.projects:
            if project.workstream not in workstreams:
                raise ValueError(f"{project.slug}: unknown workstream {project.workstream!r}")
            months = [u.month for u in project.updates]
            if len(months) != len(set(months)):
                raise ValueError(f"{project.slug}: two updates for one month")
        for kind, keys in (
            ("workstream", [ws.slug for ws in self.workstreams]),
            ("project", [p.slug for p in self.projects]),
            ("principle", [str(p.number) for p in self.principles]),
        ):
            if len(keys) != len(set(keys)):
                raise ValueError(f"duplicate {kind} in the programme file")
        return self


@dataclass
class SeedReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def read_programme(path: Path = DEFAULT_PROGRAMME_FILE) -> ProgrammeData:
    with path.open(encoding="utf-8") as file:
        return ProgrammeData.model_validate(yaml.safe_load(file))


async def seed_programme(
    sessions: async_sessionmaker[AsyncSession], data: ProgrammeData | None = None
) -> SeedReport:
    """Upsert the file's rows by natural key; never delete (Teams updates must survive)."""
    data = data or read_programme()
    report = SeedReport()
    async with transaction(sessions) as session:
        workstream_ids: dict[str, int] = {}
        for position, ws in enumerate(data.workstreams):
            workstream = await _upsert(
                session,
                report,
                select(Workstream).where(Workstream.slug == ws.slug),
                Workstream,
                {**ws.model_dump(), "position": position},
            )
            workstream_ids[ws.slug] = workstream.id or 0

        for position, project in enumerate(data.projects):
            fields = project.model_dump(exclude={"updates", "workstream"})
            fields |= {"workstream_id": workstream_ids[project.workstream], "position": position}
            project_row = await _upsert(
                session,
                report,
                select(Project).where(Project.slug == project.slug),
                Project,
                fields,
            )
            for update in project.updates:
                await _upsert(
                    session,
                    report,
                    select(ProjectUpdate).where(
                        ProjectUpdate.project_id == project_row.id,
                        ProjectUpdate.month == update.month,
                        ProjectUpdate.source == OVERVIEW_SOURCE,
                    ),
                    ProjectUpdate,
                    {
                        "project_id": project_row.id,
                        "month": update.month,
                        "text": update.text,
                        "rag": update.rag,
                        "author": f"Our Cambridge overview ({update.month:%B %Y})",
                        "source": OVERVIEW_SOURCE,
                    },
                )
            await _refresh_current_status(session, project_row)

        for principle in data.principles:
            await _upsert(
                session,
                report,
                select(DesignPrinciple).where(DesignPrinciple.number == principle.number),
                DesignPrinciple,
                principle.model_dump(),
            )
    logger.info(
        "Programme data: %d created, %d updated, %d unchanged",
        report.created,
        report.updated,
        report.unchanged,
    )
    return report


async def _upsert(
    session: AsyncSession,
    report: SeedReport,
    query: Any,
    model: type[RowT],
    fields: dict[str, Any],
) -> RowT:
    row = (await session.exec(query)).first()
    if row is None:
        row = model(**fields)
        session.add(row)
        report.created += 1
    elif any(getattr(row, key) != value for key, value in fields.items()):
        for key, value in fields.items():
            setattr(row, key, value)
        session.add(row)
        report.updated += 1
    else:
        report.unchanged += 1
    await session.flush()
    return row


async def _refresh_current_status(session: AsyncSession, project: Project) -> None:
    """The project's current status is its newest update, whichever source posted it."""
    latest = (
        await session.exec(
            select(ProjectUpdate)
            .where(ProjectUpdate.project_id == project.id)
            .order_by(col(ProjectUpdate.month).desc(), col(ProjectUpdate.created_at).desc())
        )
    ).first()
    current = (latest.text, latest.month, latest.rag) if latest else (None, None, None)
    if (project.current_status, project.current_status_month, project.rag) != current:
        project.current_status, project.current_status_month, project.rag = current
        session.add(project)
        await session.flush()
