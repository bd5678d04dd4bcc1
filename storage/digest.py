"""The weekly digest: what happened in Our Cambridge in a period, for the channels subscribed.

A digest covers a period [start, end) of aware datetimes: "this week". Its "coming up" looks at
the seven days from `end`. A digest sent at T covers [T - 7 days, T); a preview of an ISO week
covers that week from local midnight to local midnight (`week_period`).

Sessions are dated, not timed, so they are counted by the council's dates: held on a day from
the local date of `start` up to (not including) the local date of `end`, coming up on one of the
seven days from the local date of `end`. Consecutive digests therefore count each day once.
Ideas, idea changes and project updates carry a moment and are counted by it.

The digest goes to channels that anyone in a team can read, so nothing here names a person:
sessions are shown by team and date (never their Change Maker), ideas by reference and title
(never their submitter, anonymous or not), project updates without their author.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Generic, TypeVar

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.ideas import OPEN_STATUSES as OPEN_IDEA_STATUSES
from storage.ideas import reference
from storage.mir import mir_stats
from storage.models import (
    Idea,
    IdeaEvent,
    IdeaSupport,
    MirSession,
    Project,
    ProjectUpdate,
    aware,
)

# How many items of each list the digest carries; the rest are only counted ("and N more").
# With every text cut short by the card, this keeps the card small whatever the data.
SHOWN = 3

T = TypeVar("T")

_ISO_WEEK = re.compile(r"(\d{4})-?W(\d{1,2})", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class Listing(Generic[T]):
    """The first few items of a list (at most SHOWN) and how many there are in all."""

    shown: tuple[T, ...]
    total: int


@dataclass(frozen=True)
class DigestSession:
    """A Making It Real session, by its team and date only."""

    session_date: date
    start_time: time | None
    team: str
    attendees: int | None  # held sessions only


@dataclass(frozen=True)
class MirTotals:
    """The programme's running figures as of the digest's end (storage.mir.mir_stats)."""

    change_makers: int
    sessions_held: int
    sessions_in_diary: int  # scheduled for the end's date or later
    nothing_scheduled: int  # Change Makers with no session held or scheduled

    @property
    def has_figures(self) -> bool:
        """Someone is a Change Maker or a session was ever held or scheduled."""
        return bool(self.change_makers or self.sessions_held or self.sessions_in_diary)


@dataclass(frozen=True)
class DigestIdea:
    reference: str  # "IDEA-0007"
    title: str
    service_area: str
    supporters: int  # as of the digest's end
    what_was_done: str | None = None  # implemented ideas: the reason given for the change


@dataclass(frozen=True)
class DigestUpdate:
    """A project update posted in the period, and whether its RAG differs from the update
    before it (the project's previous month, as the project card orders them)."""

    project_name: str
    month: date  # first day of the month it reports on
    text: str
    rag: str | None
    previous_rag: str | None
    rag_changed: bool  # False for a project's first update


@dataclass(frozen=True)
class QuietProject:
    """An active project with no update posted for over a month before the digest's end."""

    name: str
    last_update_on: date | None  # the local date of its latest update; None if it never had one


@dataclass(frozen=True)
class Digest:
    first_day: date  # the first and last local dates of the period ("this week")
    last_day: date
    held: Listing[DigestSession]  # sessions held this week, by date
    people_at_sessions: int  # attendees of all the sessions held this week
    totals: MirTotals
    new_ideas: Listing[DigestIdea]  # newest first
    most_supported: Listing[DigestIdea]  # open ideas with supporters, most first
    implemented: Listing[DigestIdea]  # "You said, we did": latest first
    updates: Listing[DigestUpdate]  # RAG changes first, then newest first
    rag_changes: int  # updates this week whose RAG differs from the one before
    quiet_projects: Listing[QuietProject]  # never updated first, then the longest without
    coming_up: Listing[DigestSession]  # sessions scheduled in the seven days from the end

    @property
    def quiet(self) -> bool:
        """Nothing happened this week (the running figures and lists may still have news)."""
        return not (
            self.held.total or self.new_ideas.total or self.implemented.total or self.updates.total
        )


def week_period(iso_week: str, zone: tzinfo) -> tuple[datetime, datetime]:
    """The ISO week written "2022-W24", from its Monday's local midnight in `zone` to the next
    Monday's, as UTC datetimes (seven days of local time, 167 or 169 hours across a clock
    change). ValueError for text that is not an ISO week."""
    match = _ISO_WEEK.fullmatch(iso_week.strip())
    if match is None:
        raise ValueError(f"“{iso_week}” is not a week: write it like 2022-W24.")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, week, 1)
        next_monday = monday + timedelta(days=7)
    except (ValueError, OverflowError):
        raise ValueError(f"{year} has no week {week}.") from None
    return _local_midnight(monday, zone), _local_midnight(next_monday, zone)


async def build_digest(
    session: AsyncSession, *, start: datetime, end: datetime, zone: tzinfo
) -> Digest:
    """Everything the digest card says about [start, end), read in a few queries."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("a digest's period is given in aware datetimes")
    if end <= start:
        raise ValueError("a digest's period must end after it starts")
    # Timestamps are stored in UTC (SQLite keeps them without an offset), so compare in UTC.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first_day = start.astimezone(zone).date()
    end_day = end.astimezone(zone).date()
    held, people = await _held_sessions(session, first_day, end_day)
    stats = await mir_stats(session, today=end_day)
    updates, rag_changes = await _updates(session, start, end)
    return Digest(
        first_day=first_day,
        last_day=max(first_day, end_day - timedelta(days=1)),
        held=held,
        people_at_sessions=people,
        totals=MirTotals(
            change_makers=stats.overall.change_makers,
            sessions_held=stats.overall.sessions_held,
            sessions_in_diary=stats.overall.sessions_in_diary,
            nothing_scheduled=len(stats.overall.nothing_scheduled),
        ),
        new_ideas=await _new_ideas(session, start, end),
        most_supported=await _most_supported(session, end),
        implemented=await _implemented(session, start, end),
        updates=updates,
        rag_changes=rag_changes,
        quiet_projects=await _quiet_projects(session, end, zone),
        coming_up=await _coming_up(session, end_day),
    )


# --- Making It Real ----------------------------------------------------------------------------


async def _held_sessions(
    session: AsyncSession, first_day: date, end_day: date
) -> tuple[Listing[DigestSession], int]:
    held_this_week = (
        col(MirSession.status) == "held",
        col(MirSession.session_date) >= first_day,
        col(MirSession.session_date) < end_day,
    )
    count, people = (
        await session.exec(
            select(func.count(), func.sum(MirSession.attendees))
            .select_from(MirSession)
            .where(*held_this_week)
        )
    ).one()
    rows = await session.exec(
        select(MirSession).where(*held_this_week).order_by(*_SESSION_ORDER).limit(SHOWN)
    )
    return Listing(shown=tuple(_session(row) for row in rows), total=count), int(people or 0)


async def _coming_up(session: AsyncSession, end_day: date) -> Listing[DigestSession]:
    next_week = (
        col(MirSession.status) == "scheduled",
        col(MirSession.session_date) >= end_day,
        col(MirSession.session_date) < end_day + timedelta(days=7),
    )
    count = (
        await session.exec(select(func.count()).select_from(MirSession).where(*next_week))
    ).one()
    rows = await session.exec(
        select(MirSession).where(*next_week).order_by(*_SESSION_ORDER).limit(SHOWN)
    )
    return Listing(shown=tuple(_session(row) for row in rows), total=count)


# Sessions logged without a start time come first within their day, on both databases.
_SESSION_ORDER = (
    col(MirSession.session_date),
    col(MirSession.start_time).nulls_first(),
    col(MirSession.id),
)


def _session(mir_session: MirSession) -> DigestSession:
    return DigestSession(
        session_date=mir_session.session_date,
        start_time=mir_session.start_time,
        team=mir_session.team,
        attendees=mir_session.attendees,
    )


# --- ideas -------------------------------------------------------------------------------------


async def _new_ideas(session: AsyncSession, start: datetime, end: datetime) -> Listing[DigestIdea]:
    submitted = (col(Idea.created_at) >= start, col(Idea.created_at) < end)
    count = (await session.exec(select(func.count()).select_from(Idea).where(*submitted))).one()
    rows = list(
        await session.exec(
            select(Idea)
            .where(*submitted)
            .order_by(col(Idea.created_at).desc(), col(Idea.id).desc())
            .limit(SHOWN)
        )
    )
    supporters = await _supporters(session, [idea.id or 0 for idea in rows], end)
    return Listing(
        shown=tuple(_idea(idea, supporters.get(idea.id or 0, 0)) for idea in rows), total=count
    )


async def _most_supported(session: AsyncSession, end: datetime) -> Listing[DigestIdea]:
    """Open ideas by their supporters as of `end`, most first (newest first among equals);
    ideas nobody has supported yet are not "most supported"."""
    supported = (
        col(Idea.status).in_(OPEN_IDEA_STATUSES),
        col(Idea.created_at) < end,
        col(IdeaSupport.created_at) < end,
    )
    count = (
        await session.exec(
            select(func.count(func.distinct(IdeaSupport.idea_id)))
            .join(Idea, col(Idea.id) == col(IdeaSupport.idea_id))
            .where(*supported)
        )
    ).one()
    supporters = func.count(col(IdeaSupport.id))
    rows = await session.exec(
        select(Idea, supporters)
        .join(IdeaSupport, col(IdeaSupport.idea_id) == col(Idea.id))
        .where(*supported)
        .group_by(col(Idea.id))
        .order_by(supporters.desc(), col(Idea.id).desc())
        .limit(SHOWN)
    )
    return Listing(shown=tuple(_idea(idea, number) for idea, number in rows), total=count)


async def _implemented(
    session: AsyncSession, start: datetime, end: datetime
) -> Listing[DigestIdea]:
    """Ideas that became implemented in the period, latest first, with what was done (the
    reason given with the change)."""
    became_implemented = (
        col(IdeaEvent.to_status) == "implemented",
        col(IdeaEvent.at) >= start,
        col(IdeaEvent.at) < end,
    )
    count = (
        await session.exec(select(func.count()).select_from(IdeaEvent).where(*became_implemented))
    ).one()
    rows = list(
        await session.exec(
            select(Idea, IdeaEvent.reason)
            .join(IdeaEvent, col(IdeaEvent.idea_id) == col(Idea.id))
            .where(*became_implemented)
            .order_by(col(IdeaEvent.at).desc(), col(IdeaEvent.id).desc())
            .limit(SHOWN)
        )
    )
    supporters = await _supporters(session, [idea.id or 0 for idea, _ in rows], end)
    shown = tuple(
        _idea(idea, supporters.get(idea.id or 0, 0), what_was_done=reason) for idea, reason in rows
    )
    return Listing(shown=shown, total=count)


async def _supporters(session: AsyncSession, idea_ids: list[int], end: datetime) -> dict[int, int]:
    if not idea_ids:
        return {}
    counts = await session.exec(
        select(IdeaSupport.idea_id, func.count())
        .where(col(IdeaSupport.idea_id).in_(idea_ids), col(IdeaSupport.created_at) < end)
        .group_by(col(IdeaSupport.idea_id))
    )
    return {idea_id: count for idea_id, count in counts}


def _idea(idea: Idea, supporters: int, *, what_was_done: str | None = None) -> DigestIdea:
    return DigestIdea(
        reference=reference(idea.id or 0),
        title=idea.title,
        service_area=idea.service_area,
        supporters=supporters,
        what_was_done=what_was_done,
    )


# --- projects ----------------------------------------------------------------------------------


async def _updates(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[Listing[DigestUpdate], int]:
    """The updates posted in the period, RAG changes first, and how many changed the RAG.

    Each is compared with the update before it in its project's history, ordered as the
    project card orders it (month, then when posted); only updates posted before `end` count.
    The texts of the few shown are read last, so a busy week does not load every update's text.
    """
    projects_this_week = select(ProjectUpdate.project_id).where(
        col(ProjectUpdate.created_at) >= start, col(ProjectUpdate.created_at) < end
    )
    history = await session.exec(
        select(
            ProjectUpdate.id, ProjectUpdate.project_id, ProjectUpdate.created_at, ProjectUpdate.rag
        )
        .where(
            col(ProjectUpdate.project_id).in_(projects_this_week),
            col(ProjectUpdate.created_at) < end,
        )
        .order_by(
            col(ProjectUpdate.project_id),
            col(ProjectUpdate.month),
            col(ProjectUpdate.created_at),
            col(ProjectUpdate.id),
        )
    )
    posted: list[_Posted] = []
    previous_project: int | None = None
    previous_rag: str | None = None
    for update_id, project_id, created_at, rag in history:
        first = project_id != previous_project
        if aware(created_at) >= start:
            posted.append(
                _Posted(
                    update_id=update_id or 0,
                    posted_at=aware(created_at),
                    previous_rag=None if first else previous_rag,
                    rag_changed=not first and rag != previous_rag,
                )
            )
        previous_project, previous_rag = project_id, rag
    posted.sort(key=lambda p: (not p.rag_changed, -p.posted_at.timestamp(), -p.update_id))
    chosen = posted[:SHOWN]
    rows = await session.exec(
        select(ProjectUpdate, Project.name)
        .join(Project, col(Project.id) == col(ProjectUpdate.project_id))
        .where(col(ProjectUpdate.id).in_([p.update_id for p in chosen]))
    )
    by_id = {update.id: (update, project_name) for update, project_name in rows}
    shown = []
    for chosen_update in chosen:
        update, project_name = by_id[chosen_update.update_id]
        shown.append(
            DigestUpdate(
                project_name=project_name,
                month=update.month,
                text=update.text,
                rag=update.rag,
                previous_rag=chosen_update.previous_rag,
                rag_changed=chosen_update.rag_changed,
            )
        )
    rag_changes = sum(1 for p in posted if p.rag_changed)
    return Listing(shown=tuple(shown), total=len(posted)), rag_changes


@dataclass(frozen=True)
class _Posted:
    """An update posted in the period, before its text is read."""

    update_id: int
    posted_at: datetime
    previous_rag: str | None
    rag_changed: bool


async def _quiet_projects(
    session: AsyncSession, end: datetime, zone: tzinfo
) -> Listing[QuietProject]:
    """Active projects whose latest update posted before `end` is over a calendar month old
    (in the council's time), or that have none."""
    cutoff = _a_month_before(end, zone)
    latest = func.max(ProjectUpdate.created_at)
    rows = await session.exec(
        select(Project.name, Project.position, Project.id, latest)
        .outerjoin(
            ProjectUpdate,
            (col(ProjectUpdate.project_id) == col(Project.id))
            & (col(ProjectUpdate.created_at) < end),
        )
        .where(col(Project.stage) == "active")
        .group_by(col(Project.id), col(Project.name), col(Project.position))
    )
    quiet = sorted(
        (
            (aware(last) if last is not None else None, position, project_id, name)
            for name, position, project_id, last in rows
            if last is None or aware(last) < cutoff
        ),
        # Never updated first, then the longest without an update, then the programme's order.
        key=lambda row: (row[0] is not None, row[0] or end, row[1], row[2]),
    )
    shown = tuple(
        QuietProject(name=name, last_update_on=last.astimezone(zone).date() if last else None)
        for last, _, _, name in quiet[:SHOWN]
    )
    return Listing(shown=shown, total=len(quiet))


# --- time --------------------------------------------------------------------------------------


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def _a_month_before(moment: datetime, zone: tzinfo) -> datetime:
    """The same local time a calendar month earlier: 31 March becomes 28 (or 29) February."""
    local = moment.astimezone(zone)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)
