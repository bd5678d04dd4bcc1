"""Retention: how long each kind of record is kept, and the daily purge that applies it.

Each rule names one kind of record, which of them have outlived their period, and what
happens to those: deleted, when nothing needs the row any more; anonymised (the personal
fields cleared, the row kept), when the row still counts for something (a session in the
programme's figures, an idea). The periods come from the settings
(RETENTION_*; docs/privacy.md says why each default is what it is), except two kept only as
long as the bot's own working needs them: handled activity ids and the rate-limit log.

A dry run makes the same changes and rolls them back: its counts are what a purge would
do, and nothing changes. Every rule touches only rows that still hold what it removes, so
a second purge straight after the first finds nothing.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    String,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    update,
)
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit, privacy, ratelimit
from storage.db import PRIVACY_LOCK, hold_transaction_lock
from storage.ideas import OPEN_STATUSES
from storage.models import (
    AuditEntry,
    BotState,
    ConversationReference,
    DeliveryAttempt,
    Idea,
    IdeaSupport,
    MirAction,
    MirSession,
    OutboxMessage,
    Person,
    ProcessedActivity,
)

AUDIT_ACTION = "retention.purge"
# Teams redelivers an activity within minutes; two days covers any retry (bot/app.py also
# prunes these every hour).
PROCESSED_ACTIVITY_KEEP = timedelta(days=2)
# Finished actions: the ones whose owner and reason are cleared with the session's notes.
FINISHED_ACTION_STATUSES = ("done", "dropped")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of record is kept (the settings' RETENTION_* values)."""

    outbox: timedelta  # sent and failed outbox messages, from when they were last tried
    dialog_state: timedelta  # dialog state not touched for this long
    session_notes_months: int  # a session's free-text notes, after its date
    idea_people_years: int  # a closed idea's submitter and supporters, after it closed
    idle_staff: timedelta  # people the roster does not list, not seen for this long
    audit_years: int  # audit entries
    processed_activities: timedelta = PROCESSED_ACTIVITY_KEEP
    delivery_attempts: timedelta = ratelimit.KEEP


# The report's record types, in the order a purge handles them.
RECORD_TYPES = (
    "processed_activity",
    "delivery_attempt",
    "outbox",
    "bot_state",
    "mir_session_notes",
    "mir_action_owner",
    "idea_submitter",
    "idea_support",
    "conversation_reference",
    "person",
    "audit_entry",
)

# What the purge does to each record type, as the command line and the docs say it.
EFFECTS = {
    "processed_activity": "handled activity ids deleted",
    "delivery_attempt": "rate-limit log entries deleted",
    "outbox": "sent or failed outbox messages deleted",
    "bot_state": "idle dialog states deleted",
    "mir_session_notes": "session notes cleared",
    "mir_action_owner": "finished actions' owner and reason cleared",
    "idea_submitter": "closed ideas handed to the erased-person placeholder",
    "idea_support": "closed ideas' supports deleted",
    "conversation_reference": "idle staff's 1:1 chats forgotten",
    "person": "idle staff deleted",
    "audit_entry": "audit entries deleted",
}


@dataclass
class PurgeReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_TYPES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """One line per record type, for the command line."""
        heading = "Purged:"
        if self.dry_run:
            heading = "Dry run, nothing was changed. A purge now would do this:"
        rows = [f"{self.counts[kind]:>7}  {EFFECTS[kind]}" for kind in RECORD_TYPES]
        return [heading, *rows, f"{self.total:>7}  in all"]


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier (the month's last day if it is shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def years_before(moment: datetime, years: int) -> datetime:
    """The same moment `years` years earlier (29 February becomes the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


async def purge(
    session: AsyncSession,
    *,
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool,
    actor: str = "system",
) -> PurgeReport:
    """Delete or anonymise what `policy` no longer allows to be kept, in the caller's
    transaction, and record the counts in the audit trail (`retention.purge`).

    A dry run makes the very same changes inside a savepoint and rolls them back, so its
    counts are exactly what a purge would do now (a later rule sees what an earlier one
    did: a person whose last idea lost its link to them is then unreferenced), and nothing
    is changed or recorded."""
    # Erasures' lock: a purge waits for an erasure (and another purge) rather than change the
    # same rows at once, and only one of them can create the erased-person placeholder.
    await hold_transaction_lock(session, PRIVACY_LOCK)
    report = PurgeReport(dry_run=dry_run)
    rules = _rules(policy, now, placeholder_id=await privacy.placeholder_id(session))
    if dry_run:
        savepoint = await session.begin_nested()
        try:
            await _apply(session, rules, report)
        finally:
            await savepoint.rollback()
        return report
    await _apply(session, rules, report)
    await audit.record(
        session, action=AUDIT_ACTION, actor_id=None, actor=actor, detail=dict(report.counts), at=now
    )
    return report


class _Step(Protocol):
    @property
    def record_type(self) -> str: ...

    async def apply(self, session: AsyncSession) -> int: ...


async def _apply(session: AsyncSession, rules: list[_Step], report: PurgeReport) -> None:
    for rule in rules:
        report.counts[rule.record_type] = await rule.apply(session)


@dataclass(frozen=True)
class _Rule:
    """Rows of `table` matching `where`: deleted, or (with `clear`) given those values."""

    record_type: str
    table: Any
    where: tuple[ColumnElement[bool], ...]
    clear: dict[str, Any] | None = None

    async def apply(self, session: AsyncSession) -> int:
        if self.clear is None:
            statement: Any = delete(self.table).where(*self.where)
        else:
            statement = update(self.table).where(*self.where).values(**self.clear)
        result = await session.exec(statement.execution_options(synchronize_session=False))
        return int(result.rowcount)


@dataclass(frozen=True)
class _HandOver:
    """Closed ideas past their period: from now on submitted by the erased-person
    placeholder, as an erasure leaves them (storage/privacy.py); the form id, which was the
    submitter's, is replaced. The placeholder is made only when an idea needs it."""

    where: tuple[ColumnElement[bool], ...]
    now: datetime
    record_type: str = "idea_submitter"

    async def apply(self, session: AsyncSession) -> int:
        due = (await session.exec(select(func.count()).select_from(Idea).where(*self.where))).one()
        if not due:
            return 0
        placeholder = await privacy.erased_person_id(session, now=self.now)
        result = await session.exec(
            update(Idea)
            .where(*self.where)
            .values(
                submitter_id=placeholder,
                form_id=literal("erased:") + cast(col(Idea.id), String),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)


def _rules(policy: RetentionPolicy, now: datetime, *, placeholder_id: int | None) -> list[_Step]:
    today = now.date()
    notes_before = months_before(today, policy.session_notes_months)
    ideas_closed_before = years_before(now, policy.idea_people_years)
    idle_since = now - policy.idle_staff
    idle_staff = (
        col(Person.in_roster) == false(),
        col(Person.updated_at) < idle_since,
        or_(
            col(Person.directory_checked_at).is_(None),
            col(Person.directory_checked_at) < idle_since,
        ),
    )
    closed_idea = (
        col(Idea.status).not_in(OPEN_STATUSES),
        col(Idea.status_changed_at) < ideas_closed_before,
    )
    not_placeholder: tuple[ColumnElement[bool], ...] = ()
    if placeholder_id is not None:
        not_placeholder = (col(Person.id) != placeholder_id,)
    rules: list[_Step] = [
        _Rule(
            "processed_activity",
            ProcessedActivity,
            (col(ProcessedActivity.received_at) < now - policy.processed_activities,),
        ),
        _Rule(
            "delivery_attempt",
            DeliveryAttempt,
            (col(DeliveryAttempt.at) < now - policy.delivery_attempts,),
        ),
        _Rule(
            "outbox",
            OutboxMessage,
            (
                col(OutboxMessage.status).in_(("sent", "failed")),
                func.coalesce(
                    col(OutboxMessage.sent_at),
                    col(OutboxMessage.last_attempt_at),
                    col(OutboxMessage.created_at),
                )
                < now - policy.outbox,
            ),
        ),
        _Rule("bot_state", BotState, (col(BotState.updated_at) < now - policy.dialog_state,)),
        _Rule(
            "mir_session_notes",
            MirSession,
            (
                col(MirSession.session_date) < notes_before,
                or_(col(MirSession.went_well).is_not(None), col(MirSession.to_change).is_not(None)),
            ),
            clear={"went_well": None, "to_change": None},
        ),
        _Rule(
            "mir_action_owner",
            MirAction,
            (
                col(MirAction.status).in_(FINISHED_ACTION_STATUSES),
                col(MirAction.session_id).in_(
                    select(col(MirSession.id)).where(col(MirSession.session_date) < notes_before)
                ),
                or_(col(MirAction.owner).is_not(None), col(MirAction.status_reason).is_not(None)),
            ),
            clear={"owner": None, "status_reason": None},
        ),
        _HandOver((*closed_idea, *_submitted_by_someone(placeholder_id)), now),
        _Rule(
            "idea_support",
            IdeaSupport,
            (col(IdeaSupport.idea_id).in_(select(col(Idea.id)).where(*closed_idea)),),
        ),
        _Rule(
            "conversation_reference",
            ConversationReference,
            (
                col(ConversationReference.conversation_type) == "personal",
                col(ConversationReference.person_id).in_(
                    select(col(Person.id)).where(*idle_staff, ~_has_open_idea())
                ),
            ),
        ),
        # After the rules above, which may have removed the last references to them.
        _Rule("person", Person, (*idle_staff, *not_placeholder, *_unreferenced("person"))),
        _Rule(
            "audit_entry", AuditEntry, (col(AuditEntry.at) < years_before(now, policy.audit_years),)
        ),
    ]
    return rules


def _submitted_by_someone(placeholder_id: int | None) -> tuple[ColumnElement[bool], ...]:
    if placeholder_id is None:
        return ()
    return (col(Idea.submitter_id) != placeholder_id,)


def _has_open_idea() -> ColumnElement[bool]:
    """The person (of the enclosing query) submitted or supports an idea still open: they
    hear about its every change, so the bot must still be able to write to them."""
    submitted = exists().where(
        col(Idea.submitter_id) == col(Person.id), col(Idea.status).in_(OPEN_STATUSES)
    )
    supported = exists().where(
        col(IdeaSupport.person_id) == col(Person.id),
        col(IdeaSupport.idea_id) == col(Idea.id),
        col(Idea.status).in_(OPEN_STATUSES),
    )
    return or_(submitted, supported)


def _unreferenced(table_name: str) -> list[ColumnElement[bool]]:
    """Nothing points at the row of `table_name` (the enclosing statement's) through any
    foreign key. Read from the models, so a table added later that refers to people keeps its
    people from being deleted."""
    target = SQLModel.metadata.tables[table_name]
    conditions: list[ColumnElement[bool]] = []
    for table in SQLModel.metadata.sorted_tables:
        for foreign_key in table.foreign_keys:
            if foreign_key.column.table is not target:
                continue
            referring = table.alias()
            conditions.append(
                ~exists().where(
                    referring.c[foreign_key.parent.name] == target.c[foreign_key.column.name]
                )
            )
    return conditions
