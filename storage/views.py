"""Read models handed to cards: plain, immutable, no database session attached."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time


@dataclass(frozen=True)
class UpdateView:
    month: date  # first day of the month the update reports on
    text: str
    rag: str | None  # "red" | "amber" | "green" | None (not reported)
    author: str


@dataclass(frozen=True)
class ProjectView:
    slug: str
    name: str
    aliases: tuple[str, ...]
    workstream_slug: str
    workstream_name: str
    board: str | None
    aim: str | None
    lead: str | None
    stage: str  # "active" | "closing"
    inward_dependency: bool
    rag: str | None
    latest: UpdateView | None
    history: tuple[UpdateView, ...] = ()  # earlier updates, newest first


@dataclass(frozen=True)
class WorkstreamView:
    slug: str
    name: str
    board: str | None
    purpose: str
    inward_dependency: bool
    projects: tuple[ProjectView, ...] = field(default_factory=tuple)


# --- Making It Real ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    id: int
    change_maker_name: str
    status: str  # "scheduled" | "held" | "cancelled"
    session_date: date  # planned date while scheduled, the date held once held
    start_time: time | None
    team: str
    expected_attendees: int | None
    attendees: int | None  # held sessions only
    themes: str | None
    went_well: str | None
    to_change: str | None
    rating: int | None  # 1..5, held sessions only


@dataclass(frozen=True)
class ActionView:
    id: int
    session_id: int
    session_date: date
    session_team: str
    text: str
    owner: str | None
    due_date: date | None
    status: str  # "open" | "in_progress" | "done" | "dropped"
    status_reason: str | None
    overdue: bool  # still open or in progress, and due before today


@dataclass(frozen=True)
class ChangeMakerSummary:
    """One Change Maker as their Change Leader (or the programme team) sees them."""

    person_id: int
    name: str
    service_area: str | None
    sessions_held: int
    next_session: SessionView | None  # the earliest scheduled session dated today or later
    awaiting_log: int  # scheduled sessions whose date has passed and are not yet logged
    open_actions: int  # open or in progress
    overdue_actions: int
    reachable: bool  # the bot has a 1:1 conversation with them and can send reminders
    nothing_scheduled: bool  # no session held, none scheduled: the people to follow up


@dataclass(frozen=True)
class FeedbackView:
    session_date: date
    team: str
    rating: int | None
    went_well: str | None
    to_change: str | None


@dataclass(frozen=True)
class StatsBlock:
    """MIR figures for the whole programme or one service area."""

    label: str  # "Whole programme" or the service area's name
    change_makers: int
    sessions_held: int
    sessions_in_diary: int  # scheduled, dated today or later
    awaiting_log: int  # scheduled, dated before today, not yet logged
    nothing_scheduled: tuple[str, ...]  # names of Change Makers with nothing held or scheduled
    actions_agreed: int
    actions_done: int
    actions_overdue: int
    top_themes: tuple[tuple[str, int], ...]  # (theme, sessions mentioning it), most first
    average_rating: float | None
    ratings: int  # how many held sessions gave a rating
    latest_feedback: tuple[FeedbackView, ...]  # newest first, at most 3


@dataclass(frozen=True)
class MirStats:
    overall: StatsBlock
    by_area: tuple[StatsBlock, ...]  # one per service area, by name; "No service area" last
    unreachable: tuple[str, ...]  # Change Makers the bot cannot message yet, by name


# --- Small improvements (ideas) ---------------------------------------------------------------
# An anonymous idea's views never name its submitter, in any view made for anyone (the
# submitter's own `my ideas` included: their card says "you"); nor does any change the
# submitter made to it themselves.


@dataclass(frozen=True)
class IdeaView:
    id: int
    reference: str  # "IDEA-0007"
    title: str
    problem: str
    suggestion: str
    service_area: str
    principles: tuple[int, ...]  # design principle numbers, ascending
    benefits: tuple[str, ...]  # keys of storage.ideas.BENEFITS, in that order
    benefit_other: str | None  # what "other" means, when it was chosen
    status: str  # one of storage.ideas.STATUSES
    status_label: str
    submitted_by: str | None  # the submitter's name, or None when anonymous
    supporters: int
    created_at: datetime
    status_changed_at: datetime
    last_reason: str | None  # the reason of the latest status change, if any
    last_changed_by: str | None  # who made the latest change (an admin), None if nobody yet
    duplicate_of: str | None  # reference of the idea it duplicates
    next_statuses: tuple[str, ...]  # where it can move next (storage.ideas.TRANSITIONS)
    from_mir_session: bool = False  # it began as a change agreed at a Making It Real session


@dataclass(frozen=True)
class IdeaEventView:
    """One step of an idea's history: submitted ("new"), then each status change."""

    to_status: str
    status_label: str
    reason: str | None
    by: str | None  # the admin who made the change; None for the submission itself
    at: datetime
