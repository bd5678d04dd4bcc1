"""Queries and rules for workstreams, projects and their monthly updates."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from rapidfuzz import fuzz, process
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit
from storage.forms import as_text
from storage.models import (
    RAG_VALUES,
    DesignPrinciple,
    Person,
    Project,
    ProjectUpdate,
    Workstream,
)
from storage.views import ProjectView, UpdateView, WorkstreamView

MAX_UPDATE_LENGTH = 4000

# A query scoring at least this against a project's names is taken as meaning it;
# two projects within CLOSE_MARGIN of each other are both offered.
MATCH_SCORE = 80
CLOSE_MARGIN = 4
# When nothing matches, the nearest names are offered; below this score a name shares no
# nothing with the query ("qqqq" scores 0 against every project), so it is not offered.
SUGGEST_SCORE = 10


class ProjectNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ProjectName:
    slug: str
    name: str
    aliases: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, self.slug.replace("-", " "), *self.aliases)


@dataclass(frozen=True)
class ProjectMatch:
    """The outcome of looking a project up by what somebody typed."""

    found: tuple[str, ...]  # one slug: that project; several: let the user choose
    suggestions: tuple[str, ...]  # nearest names when nothing matched


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def match_project(query: str, projects: Sequence[ProjectName]) -> ProjectMatch:
    """Find the project meant by `query`: exact name or alias, then words, then spelling.

    Pure (no I/O) so it can be tested exhaustively; the caller loads `projects` once.
    """
    wanted = normalise(query)
    if not wanted:
        return ProjectMatch(found=(), suggestions=())
    exact = [p.slug for p in projects if wanted in {normalise(n) for n in p.names}]
    if exact:
        return ProjectMatch(found=tuple(exact), suggestions=())

    # Every typed word starts a word of one of the project's names ("org design", "website").
    by_words = [p.slug for p in projects if any(_words_match(wanted, n) for n in p.names)]
    if len(by_words) == 1:
        return ProjectMatch(found=tuple(by_words), suggestions=())

    scores = _scores(wanted, projects)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if by_words:
        ranked = [item for item in ranked if item[0] in by_words]
        return ProjectMatch(found=tuple(slug for slug, _ in ranked[:5]), suggestions=())
    best_score = ranked[0][1] if ranked else 0
    if best_score >= MATCH_SCORE:
        close = [slug for slug, score in ranked if score >= best_score - CLOSE_MARGIN]
        return ProjectMatch(found=tuple(close[:5]), suggestions=())
    names = {p.slug: p.name for p in projects}
    near = [slug for slug, score in ranked[:3] if score >= SUGGEST_SCORE]
    return ProjectMatch(found=(), suggestions=tuple(names[slug] for slug in near))


def _words_match(wanted: str, name: str) -> bool:
    words = normalise(name).split()
    return all(any(word.startswith(part) for word in words) for part in wanted.split())


def _scores(wanted: str, projects: Sequence[ProjectName]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for project in projects:
        choices = [normalise(n) for n in project.names]
        # ratio catches misspellings of a whole name ("tascommi"); token_set_ratio
        # catches a misspelt word of a longer name ("orgnisational design").
        best = process.extractOne(wanted, choices, scorer=fuzz.ratio)
        token = process.extractOne(wanted, choices, scorer=fuzz.token_set_ratio)
        scores[project.slug] = max(best[1] if best else 0, (token[1] - 5) if token else 0)
    return scores


def search_names(query: str, projects: Sequence[ProjectName], *, limit: int) -> list[str]:
    """Slugs for a compose-box search: prefix and substring hits first, then near spellings."""
    wanted = normalise(query)
    if not wanted:
        return [p.slug for p in projects][:limit]
    hits = [p.slug for p in projects if any(_words_match(wanted, n) for n in p.names)]
    hits += [
        p.slug
        for p in projects
        if p.slug not in hits and any(wanted in normalise(n) for n in p.names)
    ]
    if len(hits) < limit:
        ranked = sorted(_scores(wanted, projects).items(), key=lambda i: i[1], reverse=True)
        hits += [slug for slug, score in ranked if score >= MATCH_SCORE and slug not in hits]
    return hits[:limit]


async def project_names(session: AsyncSession) -> list[ProjectName]:
    # The three columns, not the Project rows: every `status` asks for all twenty-odd
    # projects, and building ORM objects of whole rows was most of that query's cost.
    rows = await session.exec(
        select(Project.slug, Project.name, Project.aliases).order_by(col(Project.position))
    )
    return [
        ProjectName(slug=slug, name=name, aliases=tuple(aliases)) for slug, name, aliases in rows
    ]


async def find_project(session: AsyncSession, *, query: str) -> ProjectMatch:
    return match_project(query, await project_names(session))


async def get_project(session: AsyncSession, *, slug: str) -> ProjectView:
    """A project with its whole history, newest update first."""
    row = (
        await session.exec(
            select(Project, Workstream)
            .join(Workstream, col(Project.workstream_id) == col(Workstream.id))
            .where(Project.slug == slug)
        )
    ).first()
    if row is None:
        raise ProjectNotFound(slug)
    project, workstream = row
    updates = await session.exec(
        select(ProjectUpdate)
        .where(ProjectUpdate.project_id == project.id)
        .order_by(col(ProjectUpdate.month).desc(), col(ProjectUpdate.created_at).desc())
    )
    views = [_update_view(u) for u in updates]
    return _project_view(project, workstream, views[:1], tuple(views[1:]))


async def get_projects(session: AsyncSession, *, slugs: Sequence[str]) -> list[ProjectView]:
    """Projects in the order of `slugs`, each with its latest update only."""
    by_slug = {p.slug: p for ws in await list_workstreams(session) for p in ws.projects}
    return [by_slug[slug] for slug in slugs if slug in by_slug]


async def list_workstreams(session: AsyncSession) -> list[WorkstreamView]:
    """Every workstream with its projects and each project's latest update (no history)."""
    workstreams = list(await session.exec(select(Workstream).order_by(col(Workstream.position))))
    projects = list(await session.exec(select(Project).order_by(col(Project.position))))
    latest = await _latest_updates(session)
    by_workstream: dict[int, list[ProjectView]] = defaultdict(list)
    ws_by_id = {ws.id: ws for ws in workstreams}
    for project in projects:
        update = latest.get(project.id or 0)
        view = _project_view(
            project, ws_by_id[project.workstream_id], [update] if update else [], ()
        )
        by_workstream[project.workstream_id].append(view)
    return [
        WorkstreamView(
            slug=ws.slug,
            name=ws.name,
            board=ws.board,
            purpose=ws.purpose,
            inward_dependency=ws.inward_dependency,
            projects=tuple(by_workstream[ws.id or 0]),
        )
        for ws in workstreams
    ]


def match_workstream(query: str, workstreams: Sequence[WorkstreamView]) -> WorkstreamView | None:
    wanted = normalise(query)
    names = {ws.slug: [ws.name, ws.slug.replace("-", " "), ws.board or ""] for ws in workstreams}
    for ws in workstreams:
        if any(_words_match(wanted, n) for n in names[ws.slug] if n):
            return ws
    choices = {ws.slug: normalise(" ".join(names[ws.slug])) for ws in workstreams}
    best = process.extractOne(wanted, choices, scorer=fuzz.token_set_ratio)
    if best and best[1] >= MATCH_SCORE:
        return next(ws for ws in workstreams if ws.slug == best[2])
    return None


async def reporting_month(session: AsyncSession) -> date | None:
    """The latest month any project has reported on: the programme's current month."""
    return (await session.exec(select(func.max(ProjectUpdate.month)))).one()


async def design_principles(session: AsyncSession) -> list[str]:
    rows = await session.exec(select(DesignPrinciple).order_by(col(DesignPrinciple.number)))
    return [p.text for p in rows]


@dataclass(frozen=True)
class PostedUpdate:
    project: ProjectView
    created: bool  # False: this form's update was stored before (a repeated submission)


FORM_ID = re.compile(r"[0-9a-f]{32}")


def new_form_id() -> str:
    """A one-off id for an update form; the update it posts is stored under it."""
    return uuid.uuid4().hex


def form_source(form_id: object) -> str | None:
    """The update source for a form id carried in a card, or None if it is not one of ours."""
    if isinstance(form_id, str) and FORM_ID.fullmatch(form_id):
        return f"teams-form:{form_id}"
    return None


async def add_update(
    session: AsyncSession,
    *,
    slug: str,
    month: date,
    text: str,
    rag: str | None,
    author: str,
    author_aad_id: str | None,
    source: str,
) -> PostedUpdate:
    """Record a new monthly update; history is kept and the newest month becomes current.

    `source` names where the update came from (one form, one source): a second call with
    the same source, such as a double-clicked Post button, stores nothing and reports it.
    """
    project = (await session.exec(select(Project).where(Project.slug == slug))).first()
    if project is None:
        raise ProjectNotFound(slug)
    if rag is not None and rag not in RAG_VALUES:
        raise ValueError(f"RAG must be one of {', '.join(RAG_VALUES)}")
    earlier = (
        await session.exec(select(ProjectUpdate).where(ProjectUpdate.source == source))
    ).first()
    if earlier is not None:
        return PostedUpdate(project=await get_project(session, slug=slug), created=False)
    posted = ProjectUpdate(
        project_id=project.id or 0,
        month=month.replace(day=1),
        text=text,
        rag=rag,
        author=author,
        author_aad_id=author_aad_id,
        source=source,
    )
    session.add(posted)
    if project.current_status_month is None or month >= project.current_status_month:
        project.current_status = text
        project.current_status_month = month.replace(day=1)
        project.rag = rag
        session.add(project)
    await session.flush()
    author_id = (
        (await session.exec(select(Person.id).where(Person.aad_object_id == author_aad_id))).first()
        if author_aad_id
        else None
    )
    await audit.record(
        session,
        action="project.update",
        actor_id=author_id,
        actor="person" if author_aad_id else "system",
        subject=f"project:{project.id}",
        detail={"update": posted.id, "month": f"{posted.month:%Y-%m}", "rag": rag},
    )
    return PostedUpdate(project=await get_project(session, slug=slug), created=True)


async def _latest_updates(session: AsyncSession) -> dict[int, UpdateView]:
    updates = await session.exec(
        select(ProjectUpdate).order_by(
            col(ProjectUpdate.month).desc(), col(ProjectUpdate.created_at).desc()
        )
    )
    latest: dict[int, UpdateView] = {}
    for update in updates:
        latest.setdefault(update.project_id, _update_view(update))
    return latest


def _update_view(update: ProjectUpdate) -> UpdateView:
    return UpdateView(month=update.month, text=update.text, rag=update.rag, author=update.author)


def _project_view(
    project: Project,
    workstream: Workstream,
    latest: Iterable[UpdateView],
    history: tuple[UpdateView, ...],
) -> ProjectView:
    return ProjectView(
        slug=project.slug,
        name=project.name,
        aliases=tuple(project.aliases),
        workstream_slug=workstream.slug,
        workstream_name=workstream.name,
        board=workstream.board,
        aim=project.aim,
        lead=project.lead,
        stage=project.stage,
        inward_dependency=project.inward_dependency,
        rag=project.rag,
        latest=next(iter(latest), None),
        history=history,
    )


@dataclass(frozen=True)
class UpdateSubmission:
    text: str
    rag: str
    month: date


def recent_months(today: date, *, count: int = 12) -> list[date]:
    """The months an update can report on: this one and the ones before it, newest first."""
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def check_update_form(
    values: dict[str, object], *, today: date
) -> tuple[UpdateSubmission | None, dict[str, str], list[str]]:
    """Validate a submitted update form on the server (the card's own checks can be bypassed).

    Returns the submission (or None), the entries as typed (to show the form again with them
    kept) and the reasons the form was refused.
    """
    entries = {key: as_text(values.get(key)) for key in ("text", "rag", "month")}
    errors: list[str] = []
    text = entries["text"].strip()
    if not text:
        errors.append("Write the status update: it can't be empty.")
    elif len(text) > MAX_UPDATE_LENGTH:
        errors.append(
            f"The status update is {len(text):,} characters; keep it under {MAX_UPDATE_LENGTH:,}."
        )
    rag = entries["rag"].strip().lower()
    if rag not in RAG_VALUES:
        errors.append("Choose a RAG status: Red, Amber or Green.")
    month = _parse_month(entries["month"])
    allowed = recent_months(today)
    if month is None:
        errors.append("Choose the month this update reports on.")
    elif month > allowed[0]:
        errors.append("The month can't be in the future.")
    elif month < allowed[-1]:
        errors.append("Updates can be posted for the last twelve months only.")
    if errors or month is None:
        return None, entries, errors
    return UpdateSubmission(text=text, rag=rag, month=month), entries, []


def _parse_month(value: str) -> date | None:
    match = re.fullmatch(r"\s*(\d{4})-(\d{1,2})(?:-\d{1,2})?\s*", value)
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or year < 1:
        return None
    return date(year, month, 1)
