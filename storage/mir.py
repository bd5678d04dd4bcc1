"""Making It Real: the rules for Change Makers' sessions and the actions their teams agree.

Forms are checked here, on the server, because a card's own checks can be bypassed; each
check returns what was typed, so the form can be shown again with it kept, and the reasons
keyed by input id, so each reason sits next to its field. Every query takes the caller's
person id and refuses (NotAllowed) a session or action that is not theirs, whatever id a card
carries. "today" is always passed in (the council's date), so nothing here reads the clock.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time

from sqlalchemy import true, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit
from storage.forms import as_text
from storage.models import ConversationReference, MirAction, MirSession, Person, utcnow
from storage.people import name_of, roles_of
from storage.views import (
    ActionView,
    ChangeMakerSummary,
    FeedbackView,
    MirStats,
    SessionView,
    StatsBlock,
)

# Limits, stated in the forms' error texts (and in the cards' own checks).
MAX_TEAM = 120
MAX_ATTENDEES = 500
MAX_THEMES = 1000
MAX_CHANGE = 300
MAX_CHANGES = 15
MAX_FEEDBACK = 1000
MAX_REASON = 500
MAX_OWNER = 120

TOP_THEMES = 5
LATEST_FEEDBACK = 3
WHOLE_PROGRAMME = "Whole programme"
NO_SERVICE_AREA = "No service area"

# Ids are 32-bit integers in both databases; a bigger one from a forged card is refused
# here rather than by the driver.
_MAX_ID = 2**31 - 1

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::\d{2})?", re.ASCII)
# Input.Number sends "8"; some clients send 8 or 8.0.
_WHOLE_NUMBER = re.compile(r"(\d{1,6})(?:\.0*)?", re.ASCII)
_THEME_SEPARATORS = re.compile(r"[,;\r\n]+")

OPEN_STATUSES = ("open", "in_progress")
NEW_ACTION_STATUSES = ("in_progress", "done", "dropped")


class NotAllowed(PermissionError):
    """The session or action is not the caller's, does not exist, or is not in a state that
    allows this. One error for all three, so a forged id learns nothing."""


class AlreadyLogged(Exception):
    """The scheduled session was logged by another submission in the meantime."""


class NotFound(LookupError):
    """The person asked about is not known."""


@dataclass(frozen=True)
class ScheduleSubmission:
    session_date: date
    start_time: time
    team: str
    expected_attendees: int


@dataclass(frozen=True)
class LogSubmission:
    scheduled_session_id: int | None  # the scheduled session that was held, if one was
    held_on: date
    team: str
    attendees: int
    themes: str
    changes: tuple[str, ...]  # one follow-up action each, in this order
    went_well: str | None
    to_change: str | None
    rating: int


# --- checking forms (pure) ------------------------------------------------------------------

SCHEDULE_INPUTS = ("date", "time", "team", "expected")
LOG_INPUTS = (
    "scheduled",
    "date",
    "team",
    "attendees",
    "themes",
    "changes",
    "went_well",
    "to_change",
    "rating",
)


def check_schedule_form(
    values: Mapping[str, object], *, today: date
) -> tuple[ScheduleSubmission | None, dict[str, str], dict[str, str]]:
    """Check a submitted schedule (or reschedule) form: the date must not be in the past."""
    entries = {key: as_text(values.get(key)) for key in SCHEDULE_INPUTS}
    errors: dict[str, str] = {}
    session_date = _parse_date(entries["date"])
    if not entries["date"].strip():
        errors["date"] = "Choose the date of the session."
    elif session_date is None:
        errors["date"] = "The date must be a real date written YYYY-MM-DD."
    elif session_date < today:
        errors["date"] = "The date can't be in the past: choose today or a later date."
    start_time = parse_time(entries["time"])
    if not entries["time"].strip():
        errors["time"] = "Choose the time the session starts."
    elif start_time is None:
        errors["time"] = "The start time must be a time written HH:MM, for example 14:30."
    team, team_error = _check_team(entries["team"])
    if team_error:
        errors["team"] = team_error
    expected = _parse_count(entries["expected"])
    if expected is None:
        errors["expected"] = f"Expected attendees must be a whole number from 1 to {MAX_ATTENDEES}."
    if errors or session_date is None or start_time is None or expected is None:
        return None, entries, errors
    submission = ScheduleSubmission(
        session_date=session_date, start_time=start_time, team=team, expected_attendees=expected
    )
    return submission, entries, {}


def check_log_form(
    values: Mapping[str, object], *, today: date, scheduled_ids: Collection[int]
) -> tuple[LogSubmission | None, dict[str, str], dict[str, str]]:
    """Check a submitted log form: the date held must not be in the future, and a scheduled
    session offered must still be one of the caller's scheduled ones (`scheduled_ids`)."""
    entries = {key: as_text(values.get(key)) for key in LOG_INPUTS}
    errors: dict[str, str] = {}
    scheduled_id: int | None = None
    if entries["scheduled"].strip():
        scheduled_id = _parse_id(entries["scheduled"])
        if scheduled_id is None or scheduled_id not in scheduled_ids:
            scheduled_id = None
            errors["scheduled"] = (
                "That session is not one of your scheduled sessions any more: choose another, "
                "or “Not one I scheduled”."
            )
    held_on = _parse_date(entries["date"])
    if not entries["date"].strip():
        errors["date"] = "Choose the date the session was held."
    elif held_on is None:
        errors["date"] = "The date must be a real date written YYYY-MM-DD."
    elif held_on > today:
        errors["date"] = "The date held can't be in the future: choose today or an earlier date."
    team, team_error = _check_team(entries["team"])
    if team_error:
        errors["team"] = team_error
    attendees = _parse_count(entries["attendees"])
    if attendees is None:
        errors["attendees"] = f"Attendees must be a whole number from 1 to {MAX_ATTENDEES}."
    themes = entries["themes"].strip()
    if not split_themes(themes):
        errors["themes"] = (
            f"Enter the themes discussed (1 to {MAX_THEMES:,} characters), separated by commas."
        )
    elif len(themes) > MAX_THEMES:
        errors["themes"] = _too_long("Themes", MAX_THEMES, len(themes))
    changes, changes_error = _check_changes(entries["changes"])
    if changes_error:
        errors["changes"] = changes_error
    went_well = entries["went_well"].strip() or None
    if went_well and len(went_well) > MAX_FEEDBACK:
        errors["went_well"] = _too_long("What went well", MAX_FEEDBACK, len(went_well))
    to_change = entries["to_change"].strip() or None
    if to_change and len(to_change) > MAX_FEEDBACK:
        errors["to_change"] = _too_long("What to change", MAX_FEEDBACK, len(to_change))
    rating_text = entries["rating"].strip()
    rating = int(rating_text) if rating_text in ("1", "2", "3", "4", "5") else None
    if rating is None:
        errors["rating"] = "Choose a rating from 1 (poor) to 5 (excellent)."
    if errors or held_on is None or attendees is None or rating is None:
        return None, entries, errors
    submission = LogSubmission(
        scheduled_session_id=scheduled_id,
        held_on=held_on,
        team=team,
        attendees=attendees,
        themes=themes,
        changes=changes,
        went_well=went_well,
        to_change=to_change,
        rating=rating,
    )
    return submission, entries, {}


def check_action_details(
    values: Mapping[str, object], *, action_ids: Collection[int]
) -> tuple[dict[int, tuple[str | None, date | None]] | None, dict[str, str], dict[str, str]]:
    """Check the owner (`owner_<id>`) and due date (`due_<id>`) typed for each action.

    Both are optional; a blank one clears what was stored (the card shows the stored values,
    so a blank is what the person left there). Inputs of other actions are ignored.
    """
    entries: dict[str, str] = {}
    errors: dict[str, str] = {}
    details: dict[int, tuple[str | None, date | None]] = {}
    for action_id in sorted(action_ids):
        owner_key, due_key = f"owner_{action_id}", f"due_{action_id}"
        entries[owner_key] = as_text(values.get(owner_key))
        entries[due_key] = as_text(values.get(due_key))
        owner = " ".join(entries[owner_key].split()) or None
        if owner and len(owner) > MAX_OWNER:
            errors[owner_key] = _too_long("The owner's name", MAX_OWNER, len(owner))
        due: date | None = None
        if entries[due_key].strip():
            due = _parse_date(entries[due_key])
            if due is None:
                errors[due_key] = "The due date must be a real date written YYYY-MM-DD."
        details[action_id] = (owner, due)
    if errors:
        return None, entries, errors
    return details, entries, {}


def check_drop_reason(value: object) -> tuple[str | None, str | None]:
    """(the reason, None), or (None, why it was refused): dropping an action needs a reason."""
    reason = as_text(value).strip()
    if not reason:
        return None, f"Say why the action is dropped (1 to {MAX_REASON} characters)."
    if len(reason) > MAX_REASON:
        return None, _too_long("The reason", MAX_REASON, len(reason))
    return reason, None


def check_due_date(value: object) -> tuple[date | None, str | None]:
    """(the new due date, None), or (None, why it was refused)."""
    text = as_text(value)
    if not text.strip():
        return None, "Choose the new due date."
    due = _parse_date(text)
    if due is None:
        return None, "The due date must be a real date written YYYY-MM-DD."
    return due, None


def split_themes(text: str) -> list[str]:
    """The themes of a session's free text: each comma-, semicolon- or line-separated part,
    stripped, each theme once (compared case-insensitively, kept as first written)."""
    themes: dict[str, str] = {}
    for part in _THEME_SEPARATORS.split(text):
        theme = " ".join(part.split())
        if theme:
            themes.setdefault(theme.casefold(), theme)
    return list(themes.values())


def _parse_date(text: str) -> date | None:
    match = _DATE.fullmatch(text.strip())
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_time(text: str) -> time | None:
    """ "9:00", "09:00" or "09:00:00" (what Input.Time sends) as a time, or None."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _parse_count(text: str) -> int | None:
    """A whole number of people, 1..MAX_ATTENDEES, or None."""
    match = _WHOLE_NUMBER.fullmatch(text.strip())
    if not match:
        return None
    count = int(match.group(1))
    return count if 1 <= count <= MAX_ATTENDEES else None


def _parse_id(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 1 <= value <= _MAX_ID else None


def _check_team(text: str) -> tuple[str, str | None]:
    # One line on every card: runs of spaces and line breaks become one space.
    team = " ".join(text.split())
    if not team:
        return team, f"Enter the team or service area (1 to {MAX_TEAM} characters)."
    if len(team) > MAX_TEAM:
        return team, _too_long("The team or service area", MAX_TEAM, len(team))
    return team, None


def _check_changes(text: str) -> tuple[tuple[str, ...], str | None]:
    """Each non-empty line is one change (none at all is fine)."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    changes = [(number, line) for number, line in lines if line]
    if len(changes) > MAX_CHANGES:
        return (), (f"List at most {MAX_CHANGES} changes, one per line (this has {len(changes)}).")
    long_lines = [number for number, line in changes if len(line) > MAX_CHANGE]
    if long_lines:
        where = (
            f"line {long_lines[0]} is longer"
            if len(long_lines) == 1
            else f"lines {', '.join(map(str, long_lines[:-1]))} and {long_lines[-1]} are longer"
        )
        return (), f"Each change must be {MAX_CHANGE} characters or fewer: {where}."
    return tuple(line for _, line in changes), None


def _too_long(what: str, limit: int, length: int) -> str:
    return f"{what} must be {limit:,} characters or fewer (this is {length:,})."


# --- sessions -------------------------------------------------------------------------------


async def schedule_session(
    session: AsyncSession,
    *,
    change_maker_id: int,
    submission: ScheduleSubmission,
    form_id: str,
) -> tuple[SessionView, bool]:
    """Put a session in the diary. A form id already stored (a second press of the button)
    stores nothing and returns that session, with False."""
    person = await _change_maker(session, change_maker_id)
    earlier = (
        await session.exec(select(MirSession).where(MirSession.schedule_form_id == form_id))
    ).first()
    if earlier is not None:
        if earlier.change_maker_id != change_maker_id:
            raise NotAllowed("that form belongs to someone else")
        return session_view(earlier, person), False
    mir_session = MirSession(
        change_maker_id=change_maker_id,
        status="scheduled",
        session_date=submission.session_date,
        start_time=submission.start_time,
        team=submission.team,
        expected_attendees=submission.expected_attendees,
        schedule_form_id=form_id,
    )
    session.add(mir_session)
    await session.flush()
    return session_view(mir_session, person), True


async def reschedule_session(
    session: AsyncSession,
    *,
    session_id: int,
    change_maker_id: int,
    submission: ScheduleSubmission,
) -> SessionView:
    """Move a scheduled session (its team and expected numbers may change too)."""
    mir_session = await _own_session(session, session_id, change_maker_id)
    if mir_session.status != "scheduled":
        raise NotAllowed("only a scheduled session can be rescheduled")
    mir_session.session_date = submission.session_date
    mir_session.start_time = submission.start_time
    mir_session.team = submission.team
    mir_session.expected_attendees = submission.expected_attendees
    mir_session.updated_at = utcnow()
    session.add(mir_session)
    await session.flush()
    return session_view(mir_session, await session.get(Person, change_maker_id))


async def cancel_session(
    session: AsyncSession, *, session_id: int, change_maker_id: int
) -> SessionView:
    """Cancel a scheduled session. Cancelling it again changes nothing (a second press);
    a held session cannot be cancelled."""
    mir_session = await _own_session(session, session_id, change_maker_id)
    if mir_session.status == "held":
        raise NotAllowed("a held session cannot be cancelled")
    if mir_session.status == "scheduled":
        mir_session.status = "cancelled"
        mir_session.updated_at = utcnow()
        session.add(mir_session)
        await session.flush()
        await audit.record(
            session,
            action="mir_session.status",
            actor_id=change_maker_id,
            actor="person",
            subject=f"mir_session:{mir_session.id}",
            detail={"from": "scheduled", "to": "cancelled"},
            at=mir_session.updated_at,
        )
    return session_view(mir_session, await session.get(Person, change_maker_id))


async def get_session(
    session: AsyncSession, *, session_id: int, change_maker_id: int
) -> SessionView:
    mir_session = await _own_session(session, session_id, change_maker_id)
    return session_view(mir_session, await session.get(Person, change_maker_id))


async def scheduled_sessions(session: AsyncSession, *, change_maker_id: int) -> list[SessionView]:
    """The Change Maker's scheduled sessions of any date (past ones await their log),
    earliest first."""
    rows = await session.exec(
        select(MirSession).where(
            MirSession.change_maker_id == change_maker_id, MirSession.status == "scheduled"
        )
    )
    person = await session.get(Person, change_maker_id)
    return [session_view(row, person) for row in sorted(rows, key=_session_order)]


async def my_sessions(session: AsyncSession, *, change_maker_id: int) -> list[SessionView]:
    """Scheduled and held sessions (cancelled ones are left out), newest date first."""
    rows = await session.exec(
        select(MirSession).where(
            MirSession.change_maker_id == change_maker_id,
            col(MirSession.status).in_(("scheduled", "held")),
        )
    )
    person = await session.get(Person, change_maker_id)
    return [session_view(row, person) for row in sorted(rows, key=_session_order, reverse=True)]


async def log_session(
    session: AsyncSession,
    *,
    change_maker_id: int,
    submission: LogSubmission,
    form_id: str,
) -> tuple[SessionView, list[ActionView], bool]:
    """Record a held session and turn each agreed change into a follow-up action.

    The scheduled session named in the submission becomes held (it must be the caller's and
    still scheduled); without one, a new held session is recorded. A form id already stored
    (a second press) stores nothing and returns that session and its actions, with False;
    their `overdue` is then as of the date held, since no today is passed in.
    """
    person = await _change_maker(session, change_maker_id)
    earlier = (
        await session.exec(select(MirSession).where(MirSession.log_form_id == form_id))
    ).first()
    if earlier is not None:
        if earlier.change_maker_id != change_maker_id:
            raise NotAllowed("that form belongs to someone else")
        actions = await _actions_of_session(session, earlier.id or 0)
        views = [action_view(a, earlier, today=submission.held_on) for a in actions]
        return session_view(earlier, person), views, False
    from_status = None
    if submission.scheduled_session_id is not None:
        mir_session = await _own_session(session, submission.scheduled_session_id, change_maker_id)
        from_status = mir_session.status
        if mir_session.status != "scheduled":
            raise NotAllowed("only a scheduled session can be logged as held")
        # Claim it with one conditional UPDATE: of two presses of the same form racing (two
        # replicas), only one finds it still scheduled; PostgreSQL re-checks the WHERE after
        # the first one's commit, SQLite runs the writers one at a time.
        claimed = await session.exec(
            update(MirSession)
            .where(
                col(MirSession.id) == mir_session.id,
                col(MirSession.change_maker_id) == change_maker_id,
                col(MirSession.status) == "scheduled",
            )
            .values(status="held", log_form_id=form_id)
        )
        if claimed.rowcount != 1:
            raise AlreadyLogged(form_id)
        await session.refresh(mir_session)
    else:
        mir_session = MirSession(
            change_maker_id=change_maker_id,
            session_date=submission.held_on,
            team=submission.team,
        )
    now = utcnow()
    mir_session.status = "held"
    mir_session.session_date = submission.held_on
    mir_session.team = submission.team
    mir_session.attendees = submission.attendees
    mir_session.themes = submission.themes
    mir_session.went_well = submission.went_well
    mir_session.to_change = submission.to_change
    mir_session.rating = submission.rating
    mir_session.log_form_id = form_id
    mir_session.logged_at = now
    mir_session.updated_at = now
    session.add(mir_session)
    await session.flush()
    actions = [
        MirAction(
            session_id=mir_session.id or 0,
            change_maker_id=change_maker_id,
            position=position,
            text=change,
        )
        for position, change in enumerate(submission.changes)
    ]
    session.add_all(actions)
    await session.flush()
    await audit.record(
        session,
        action="mir_session.status",
        actor_id=change_maker_id,
        actor="person",
        subject=f"mir_session:{mir_session.id}",
        detail={"from": from_status, "to": "held", "actions": len(actions)},
        at=now,
    )
    views = [action_view(a, mir_session, today=submission.held_on) for a in actions]
    return session_view(mir_session, person), views, True


# --- follow-up actions ----------------------------------------------------------------------


async def session_actions(
    session: AsyncSession, *, session_id: int, change_maker_id: int, today: date
) -> list[ActionView]:
    """The actions of one of the caller's sessions, in the order the changes were listed."""
    mir_session = await _own_session(session, session_id, change_maker_id)
    actions = await _actions_of_session(session, session_id)
    return [action_view(a, mir_session, today=today) for a in actions]


async def set_action_details(
    session: AsyncSession,
    *,
    change_maker_id: int,
    details: Mapping[int, tuple[str | None, date | None]],
    today: date,
) -> list[ActionView]:
    """Store who owns each action and when it is due. All of them must be the caller's, or
    none is changed."""
    actions = await _own_actions(session, list(details), change_maker_id)
    now = utcnow()
    for action in actions:
        action.owner, action.due_date = details[action.id or 0]
        action.updated_at = now
        session.add(action)
    await session.flush()
    sessions_by_id = await _sessions_by_id(session, {a.session_id for a in actions})
    ordered = sorted(actions, key=lambda a: (a.session_id, a.position, a.id or 0))
    return [action_view(a, sessions_by_id[a.session_id], today=today) for a in ordered]


async def my_actions(
    session: AsyncSession, *, change_maker_id: int, today: date
) -> list[ActionView]:
    """The caller's open actions (open or in progress): overdue first, then by due date
    (undated last), then oldest first."""
    rows = await session.exec(
        select(MirAction, MirSession)
        .join(MirSession, col(MirAction.session_id) == col(MirSession.id))
        .where(
            MirAction.change_maker_id == change_maker_id,
            col(MirAction.status).in_(OPEN_STATUSES),
        )
    )
    views = [action_view(action, mir_session, today=today) for action, mir_session in rows]
    return sorted(views, key=action_order)


def action_order(action: ActionView) -> tuple[bool, bool, date, int]:
    """Most pressing first: overdue, then due soonest, then undated; oldest first within."""
    return (not action.overdue, action.due_date is None, action.due_date or date.max, action.id)


async def set_action_status(
    session: AsyncSession,
    *,
    action_id: int,
    change_maker_id: int,
    status: str,
    reason: str | None,
    today: date,
) -> ActionView:
    """Mark an action in progress, done or dropped; dropping needs a reason."""
    if status not in NEW_ACTION_STATUSES:
        raise ValueError(f"status must be one of {', '.join(NEW_ACTION_STATUSES)}")
    reason = (reason or "").strip() or None
    if status == "dropped" and reason is None:
        raise ValueError("dropping an action needs a reason")
    (action,) = await _own_actions(session, [action_id], change_maker_id)
    from_status = action.status
    action.status = status
    action.status_reason = reason if status == "dropped" else None
    action.updated_at = utcnow()
    session.add(action)
    await session.flush()
    if from_status != status:
        await audit.record(
            session,
            action="mir_action.status",
            actor_id=change_maker_id,
            actor="person",
            subject=f"mir_action:{action.id}",
            detail={"from": from_status, "to": status},
            at=action.updated_at,
        )
    return action_view(action, await _session_of(session, action), today=today)


async def set_action_due(
    session: AsyncSession, *, action_id: int, change_maker_id: int, due: date, today: date
) -> ActionView:
    (action,) = await _own_actions(session, [action_id], change_maker_id)
    action.due_date = due
    action.updated_at = utcnow()
    session.add(action)
    await session.flush()
    return action_view(action, await _session_of(session, action), today=today)


# --- what leaders, the programme team and the reminders see ---------------------------------


@dataclass(frozen=True)
class PersonActivity:
    """A person with all their sessions and actions: what the leader view, the figures and
    the reminders are all worked out from, so they agree."""

    person: Person
    sessions: tuple[MirSession, ...]
    actions: tuple[MirAction, ...]
    reachable: bool

    @property
    def name(self) -> str:
        return name_of(self.person)

    @property
    def is_change_maker(self) -> bool:
        return "change_maker" in roles_of(self.person)

    def has_nothing_scheduled(self) -> bool:
        """No session held and none scheduled (of any date); cancelled ones do not count."""
        return not any(s.status in ("scheduled", "held") for s in self.sessions)

    def sessions_in_diary(self, today: date) -> list[MirSession]:
        return sorted(
            (s for s in self.sessions if s.status == "scheduled" and s.session_date >= today),
            key=_session_order,
        )

    def awaiting_log(self, today: date) -> list[MirSession]:
        return sorted(
            (s for s in self.sessions if s.status == "scheduled" and s.session_date < today),
            key=_session_order,
        )

    def held(self) -> list[MirSession]:
        return sorted((s for s in self.sessions if s.status == "held"), key=_session_order)

    def open_actions(self) -> list[MirAction]:
        return [a for a in self.actions if a.status in OPEN_STATUSES]

    def overdue_actions(self, today: date) -> list[MirAction]:
        return [a for a in self.actions if is_overdue(a, today)]


async def people_activity(
    session: AsyncSession,
    *,
    change_makers_only: bool = True,
    leader_id: int | None = None,
) -> list[PersonActivity]:
    """Every Change Maker (their leader's only, given `leader_id`) with their sessions and
    actions, by name. With `change_makers_only=False`, also anyone else who has sessions
    (someone whose role changed after logging them): their sessions still happened."""
    statement = select(Person).where(col(Person.in_roster) == true())
    if leader_id is not None:
        statement = statement.where(Person.leader_id == leader_id)
    found = {p.id or 0: p for p in await session.exec(statement) if "change_maker" in roles_of(p)}
    session_rows = list(
        await session.exec(
            select(MirSession).where(col(MirSession.change_maker_id).in_(list(found)))
            if change_makers_only
            else select(MirSession)
        )
    )
    extra = {s.change_maker_id for s in session_rows} - set(found)
    if extra:
        for person in await session.exec(select(Person).where(col(Person.id).in_(list(extra)))):
            found[person.id or 0] = person
    action_rows = await session.exec(
        select(MirAction).where(col(MirAction.change_maker_id).in_(list(found)))
    )
    reachable = set(
        await session.exec(
            select(ConversationReference.person_id).where(
                col(ConversationReference.conversation_type) == "personal",
                col(ConversationReference.person_id).in_(list(found)),
            )
        )
    )
    sessions_of: dict[int, list[MirSession]] = defaultdict(list)
    for mir_session in session_rows:
        sessions_of[mir_session.change_maker_id].append(mir_session)
    actions_of: dict[int, list[MirAction]] = defaultdict(list)
    for action in action_rows:
        actions_of[action.change_maker_id].append(action)
    activity = [
        PersonActivity(
            person=person,
            sessions=tuple(sessions_of[person_id]),
            actions=tuple(actions_of[person_id]),
            reachable=person_id in reachable,
        )
        for person_id, person in found.items()
    ]
    return sorted(activity, key=lambda a: (a.name.casefold(), a.person.id or 0))


async def change_maker_summaries(
    session: AsyncSession, *, today: date, leader_id: int | None = None
) -> list[ChangeMakerSummary]:
    """Every Change Maker (given `leader_id`, only that leader's), by name."""
    return [
        summary(activity, today=today)
        for activity in await people_activity(session, leader_id=leader_id)
    ]


def summary(activity: PersonActivity, *, today: date) -> ChangeMakerSummary:
    diary = activity.sessions_in_diary(today)
    return ChangeMakerSummary(
        person_id=activity.person.id or 0,
        name=activity.name,
        service_area=activity.person.service_area,
        sessions_held=len(activity.held()),
        next_session=session_view(diary[0], activity.person) if diary else None,
        awaiting_log=len(activity.awaiting_log(today)),
        open_actions=len(activity.open_actions()),
        overdue_actions=len(activity.overdue_actions(today)),
        reachable=activity.reachable,
        nothing_scheduled=activity.has_nothing_scheduled(),
    )


async def can_view(
    session: AsyncSession, *, viewer_id: int, viewer_is_admin: bool, subject_id: int
) -> bool:
    """Whether the viewer may see the subject's details or nudge them: an admin may, and so
    may the subject's own Change Leader (per the roster). Checked on the server for every
    request, whatever the card says."""
    subject = await session.get(Person, subject_id) if 1 <= subject_id <= _MAX_ID else None
    if subject is None:
        return False
    if viewer_is_admin:
        return True
    if subject.leader_id is None or subject.leader_id != viewer_id:
        return False
    viewer = await session.get(Person, viewer_id)
    return viewer is not None and "change_leader" in roles_of(viewer)


async def mir_stats(session: AsyncSession, *, today: date) -> MirStats:
    """The programme's figures: the whole programme, then each service area (by name,
    "No service area" last), then the Change Makers the bot cannot reach yet."""
    everyone = await people_activity(session, change_makers_only=False)
    areas: dict[str | None, list[PersonActivity]] = defaultdict(list)
    for activity in everyone:
        areas[_area_key(activity.person.service_area)].append(activity)
    by_area = []
    for key, members in sorted(areas.items(), key=lambda item: (item[0] is None, item[0] or "")):
        spellings = {" ".join((m.person.service_area or "").split()) for m in members}
        label = min(spellings, key=lambda s: (s.casefold(), s)) if key else NO_SERVICE_AREA
        by_area.append(stats_block(label, members, today=today))
    return MirStats(
        overall=stats_block(WHOLE_PROGRAMME, everyone, today=today),
        by_area=tuple(by_area),
        unreachable=tuple(a.name for a in everyone if a.is_change_maker and not a.reachable),
    )


def stats_block(label: str, members: Sequence[PersonActivity], *, today: date) -> StatsBlock:
    """The figures for a group of people (in name order): Change Makers counts people of that
    role; sessions and actions count everyone's."""
    change_makers = [m for m in members if m.is_change_maker]
    held = [s for m in members for s in m.held()]
    actions = [a for m in members for a in m.actions]
    ratings = [s.rating for s in held if s.rating is not None]
    feedback = sorted(
        (s for s in held if s.went_well or s.to_change),
        key=lambda s: (s.session_date, s.id or 0),
        reverse=True,
    )
    return StatsBlock(
        label=label,
        change_makers=len(change_makers),
        sessions_held=len(held),
        sessions_in_diary=sum(len(m.sessions_in_diary(today)) for m in members),
        awaiting_log=sum(len(m.awaiting_log(today)) for m in members),
        nothing_scheduled=tuple(m.name for m in change_makers if m.has_nothing_scheduled()),
        actions_agreed=len(actions),
        actions_done=sum(1 for a in actions if a.status == "done"),
        actions_overdue=sum(1 for a in actions if is_overdue(a, today)),
        top_themes=top_themes(s.themes or "" for s in sorted(held, key=_session_order)),
        average_rating=sum(ratings) / len(ratings) if ratings else None,
        ratings=len(ratings),
        latest_feedback=tuple(
            FeedbackView(
                session_date=s.session_date,
                team=s.team,
                rating=s.rating,
                went_well=s.went_well,
                to_change=s.to_change,
            )
            for s in feedback[:LATEST_FEEDBACK]
        ),
    )


def top_themes(
    themes_texts: Iterable[str], *, limit: int = TOP_THEMES
) -> tuple[tuple[str, int], ...]:
    """(theme, sessions mentioning it), most first, ties by name; each theme as first written
    in the texts' order."""
    counts: dict[str, int] = defaultdict(int)
    shown: dict[str, str] = {}
    for text in themes_texts:
        for theme in split_themes(text):
            key = theme.casefold()
            shown.setdefault(key, theme)
            counts[key] += 1
    ranked = sorted(counts, key=lambda key: (-counts[key], key))
    return tuple((shown[key], counts[key]) for key in ranked[:limit])


def _area_key(service_area: str | None) -> str | None:
    return " ".join((service_area or "").split()).casefold() or None


# --- read models and shared pieces ----------------------------------------------------------


def is_overdue(action: MirAction, today: date) -> bool:
    return (
        action.status in OPEN_STATUSES and action.due_date is not None and action.due_date < today
    )


def session_view(mir_session: MirSession, person: Person | None) -> SessionView:
    return SessionView(
        id=mir_session.id or 0,
        change_maker_name=name_of(person),
        status=mir_session.status,
        session_date=mir_session.session_date,
        start_time=mir_session.start_time,
        team=mir_session.team,
        expected_attendees=mir_session.expected_attendees,
        attendees=mir_session.attendees,
        themes=mir_session.themes,
        went_well=mir_session.went_well,
        to_change=mir_session.to_change,
        rating=mir_session.rating,
    )


def action_view(action: MirAction, mir_session: MirSession, *, today: date) -> ActionView:
    return ActionView(
        id=action.id or 0,
        session_id=action.session_id,
        session_date=mir_session.session_date,
        session_team=mir_session.team,
        text=action.text,
        owner=action.owner,
        due_date=action.due_date,
        status=action.status,
        status_reason=action.status_reason,
        overdue=is_overdue(action, today),
    )


def _session_order(mir_session: MirSession) -> tuple[date, time, int]:
    return (mir_session.session_date, mir_session.start_time or time.min, mir_session.id or 0)


async def _change_maker(session: AsyncSession, person_id: int) -> Person:
    """The person, who must be a Change Maker to schedule or log a session."""
    person = await session.get(Person, person_id) if 1 <= person_id <= _MAX_ID else None
    if person is None:
        raise NotFound(f"person {person_id}")
    if "change_maker" not in roles_of(person):
        raise NotAllowed("only Change Makers schedule and log sessions")
    return person


async def get_action(
    session: AsyncSession, *, action_id: int, change_maker_id: int, today: date
) -> ActionView:
    """One of the caller's actions (NotAllowed for anyone else's or one that does not exist)."""
    (action,) = await _own_actions(session, [action_id], change_maker_id)
    mir_session = await session.get(MirSession, action.session_id)
    assert mir_session is not None  # the foreign key holds it
    return action_view(action, mir_session, today=today)


async def _own_session(session: AsyncSession, session_id: int, change_maker_id: int) -> MirSession:
    mir_session = await session.get(MirSession, session_id) if 1 <= session_id <= _MAX_ID else None
    if mir_session is None or mir_session.change_maker_id != change_maker_id:
        raise NotAllowed("not one of the caller's sessions")
    return mir_session


async def _own_actions(
    session: AsyncSession, action_ids: Sequence[int], change_maker_id: int
) -> list[MirAction]:
    """The actions, in the order asked for; NotAllowed unless every one is the caller's."""
    wanted = list(dict.fromkeys(action_ids))
    if not all(1 <= action_id <= _MAX_ID for action_id in wanted):
        raise NotAllowed("not one of the caller's actions")
    rows = {
        a.id: a for a in await session.exec(select(MirAction).where(col(MirAction.id).in_(wanted)))
    }
    if any(rows.get(i) is None or rows[i].change_maker_id != change_maker_id for i in wanted):
        raise NotAllowed("not one of the caller's actions")
    return [rows[i] for i in wanted]


async def _actions_of_session(session: AsyncSession, session_id: int) -> list[MirAction]:
    rows = await session.exec(
        select(MirAction)
        .where(MirAction.session_id == session_id)
        .order_by(col(MirAction.position), col(MirAction.id))
    )
    return list(rows)


async def _sessions_by_id(session: AsyncSession, ids: Collection[int]) -> dict[int, MirSession]:
    rows = await session.exec(select(MirSession).where(col(MirSession.id).in_(list(ids))))
    return {row.id or 0: row for row in rows}


async def _session_of(session: AsyncSession, action: MirAction) -> MirSession:
    mir_session = await session.get(MirSession, action.session_id)
    if mir_session is None:  # the foreign key makes this impossible
        raise NotFound(f"session {action.session_id}")
    return mir_session
