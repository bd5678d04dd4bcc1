"""SQLModel tables. Alembic migrations in `storage/migrations` own the schema built from these."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

RAG_VALUES = ("red", "amber", "green")
# Roles a roster gives; anyone not in the roster is "staff" (no role).
ROLES = ("change_maker", "change_leader", "admin")
SESSION_STATUSES = ("scheduled", "held", "cancelled")
ACTION_STATUSES = ("open", "in_progress", "done", "dropped")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A stored timestamp with its zone: SQLite hands them back without one (they were
    stored in UTC); PostgreSQL keeps it."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _timestamp(*, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=False, index=index)


class Workstream(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True, max_length=80)
    name: str = Field(max_length=200)
    board: str | None = Field(default=None, max_length=200)
    purpose: str = Field(sa_column=Column(Text, nullable=False))
    aim: str | None = Field(default=None, sa_column=Column(Text))
    outcomes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    inward_dependency: bool = False
    position: int = 0


class Project(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True, max_length=80)
    name: str = Field(max_length=200)
    aliases: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    workstream_id: int = Field(foreign_key="workstream.id", index=True)
    aim: str | None = Field(default=None, sa_column=Column(Text))
    lead: str | None = Field(default=None, max_length=200)
    stage: str = Field(default="active", max_length=40)
    current_status: str | None = Field(default=None, sa_column=Column(Text))
    current_status_month: date | None = None
    rag: str | None = Field(default=None, max_length=10)
    inward_dependency: bool = False
    position: int = 0


class ProjectUpdate(SQLModel, table=True):
    __tablename__ = "project_update"
    __table_args__ = (
        # The seed's updates are keyed by (project, month, source) so reloading changes nothing;
        # updates posted from Teams use a unique source each, so history is always kept.
        UniqueConstraint("project_id", "month", "source", name="uq_project_update_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    month: date
    text: str = Field(sa_column=Column(Text, nullable=False))
    rag: str | None = Field(default=None, max_length=10)
    author: str = Field(max_length=200)
    author_aad_id: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=120)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class DesignPrinciple(SQLModel, table=True):
    __tablename__ = "design_principle"

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True)
    text: str = Field(sa_column=Column(Text, nullable=False))


class Person(SQLModel, table=True):
    """Someone the bot knows: from the roster (by email) and/or from Teams (by AAD id)."""

    # Stored lower-cased and unique, so the roster's key and Teams' UPN meet on one row.
    __table_args__ = (UniqueConstraint("email", name="uq_person_email"),)

    id: int | None = Field(default=None, primary_key=True)
    aad_object_id: str | None = Field(default=None, unique=True, max_length=64)
    teams_id: str | None = Field(default=None, index=True, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_area: str | None = Field(default=None, max_length=200)
    leader_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    in_roster: bool = False
    reminders_enabled: bool = True
    # When Teams was last asked for this person's email (TeamsInfo.get_member), so people
    # the roster does not know are not looked up on every turn.
    directory_checked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class MirSession(SQLModel, table=True):
    """A Making It Real session of one Change Maker: scheduled, then held (or cancelled)."""

    __tablename__ = "mir_session"

    id: int | None = Field(default=None, primary_key=True)
    change_maker_id: int = Field(foreign_key="person.id", index=True)
    status: str = Field(default="scheduled", max_length=20, index=True)
    # The planned date while scheduled; the date it was held once held.
    session_date: date = Field(index=True)
    start_time: time | None = None
    team: str = Field(max_length=200)
    expected_attendees: int | None = None
    attendees: int | None = None
    themes: str | None = Field(default=None, sa_column=Column(Text))
    went_well: str | None = Field(default=None, sa_column=Column(Text))
    to_change: str | None = Field(default=None, sa_column=Column(Text))
    rating: int | None = None
    # The one-off id of the form that created or logged it: a repeated press stores once.
    schedule_form_id: str | None = Field(default=None, unique=True, max_length=64)
    log_form_id: str | None = Field(default=None, unique=True, max_length=64)
    logged_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class MirAction(SQLModel, table=True):
    """A small change a team agreed at a session, followed up by its Change Maker."""

    __tablename__ = "mir_action"

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="mir_session.id", index=True)
    change_maker_id: int = Field(foreign_key="person.id", index=True)
    position: int = 0
    text: str = Field(sa_column=Column(Text, nullable=False))
    owner: str | None = Field(default=None, max_length=200)
    due_date: date | None = None
    status: str = Field(default="open", max_length=20, index=True)
    status_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class OutboxMessage(SQLModel, table=True):
    """A message the bot sends on its own, written here first and delivered by a worker.

    `dedupe_key` names what the message is for (a reminder of one session, a nudge of one
    day): enqueueing the same key again does nothing, so a job run twice sends once.
    """

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=300)
    conversation_id: str = Field(max_length=400, index=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    sent_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # Set by each claim; only the holder of the current claim may record the outcome.
    claim_token: str | None = Field(default=None, max_length=32)
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # Times a worker died (or lost its claim) after starting to send this message, so that
    # Teams may have posted it before the retry: the one way a message can arrive twice.
    unknown_outcomes: int = 0


class DeliveryAttempt(SQLModel, table=True):
    """Every request the outbox worker makes to the Bot Connector, written just before it is
    made. The log is shared by every replica: it is what keeps the bot within Teams' rate
    limits (bot/proactive.py) and what tells a retry whether an earlier attempt had started.
    Rows older than the longest rate window are pruned."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (
        UniqueConstraint("outbox_id", "attempt", name="uq_delivery_attempt_outbox_attempt"),
        Index("ix_delivery_attempt_conversation_at", "conversation_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int  # no foreign key: outbox rows may be purged before this log is
    attempt: int
    conversation_id: str = Field(max_length=400)
    at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))


class DigestSubscription(SQLModel, table=True):
    """A channel that gets the weekly digest, and when (a weekday and a local time in the
    bot's TIMEZONE). Ended subscriptions are kept (active false) with why they ended."""

    __tablename__ = "digest_subscription"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(unique=True, max_length=400)  # the channel's id
    team_id: str | None = Field(default=None, index=True, max_length=400)
    weekday: int = 0  # 0 Monday ... 6 Sunday
    send_time: str = Field(default="09:00", max_length=5)  # HH:MM, local
    active: bool = Field(default=True, index=True)
    subscribed_by: int | None = Field(default=None, foreign_key="person.id")
    # Scheduled times before this do not count: subscribing on Monday at 10:00 does not
    # send that Monday's 09:00 digest as "missed".
    schedule_changed_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    end_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class JobRun(SQLModel, table=True):
    """One run of a scheduled job for one period (a day, a week): the replica that inserts
    the row runs the job; the others see it and skip."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "period", name="uq_job_run_period"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=80)
    period: str = Field(max_length=40)
    started_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class ConversationReference(SQLModel, table=True):
    """Where the bot can write to later. Teams' tenant id is kept beside the reference because
    botbuilder's ConversationReference drops `conversation.tenantId` when it serialises."""

    __tablename__ = "conversation_reference"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(unique=True, max_length=400)
    conversation_type: str = Field(max_length=40)
    tenant_id: str | None = Field(default=None, max_length=64)
    service_url: str = Field(max_length=400)
    team_id: str | None = Field(default=None, index=True, max_length=400)
    channel_id: str | None = Field(default=None, max_length=400)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    reference: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class BotState(SQLModel, table=True):
    """Documents of the bot's Storage (dialog and conversation state), with an e-tag each."""

    __tablename__ = "bot_state"

    key: str = Field(sa_column=Column(Text, primary_key=True))
    document: str = Field(sa_column=Column(Text, nullable=False))
    etag: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class ProcessedActivity(SQLModel, table=True):
    """Activities already handled, so a repeated delivery of the same one is processed once."""

    __tablename__ = "processed_activity"

    key: str = Field(sa_column=Column(Text, primary_key=True))
    received_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))


# --- Small improvements ------------------------------------------------------------------------
# Constraints are named so a later migration can drop or change them on SQLite too (batch mode
# rebuilds the table and needs the names).


class Idea(SQLModel, table=True):
    """A small improvement a member of staff suggested, and where it is in the workflow.

    The submitter is always kept, even for an anonymous idea, so they see it in `my ideas` and
    hear about every change; the read models never show them to anyone else.
    """

    __tablename__ = "idea"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_idea"),
        # The one-off id of the form that submitted it: a second press (or a redelivered
        # activity) stores nothing more. Per submitter, so two people filling in one form card
        # posted in a group chat each get their own idea.
        UniqueConstraint("submitter_id", "form_id", name="uq_idea_submitter_form"),
        # A change agreed at a Making It Real session becomes at most one idea.
        UniqueConstraint("mir_action_id", name="uq_idea_mir_action"),
        ForeignKeyConstraint(["submitter_id"], ["person.id"], name="fk_idea_submitter_id_person"),
        ForeignKeyConstraint(["duplicate_of_id"], ["idea.id"], name="fk_idea_duplicate_of_id_idea"),
        ForeignKeyConstraint(
            ["mir_action_id"], ["mir_action.id"], name="fk_idea_mir_action_id_mir_action"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=120)
    problem: str = Field(sa_column=Column(Text, nullable=False))
    suggestion: str = Field(sa_column=Column(Text, nullable=False))
    service_area: str = Field(max_length=80, index=True)
    principles: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    benefits: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    benefit_other: str | None = Field(default=None, max_length=200)
    anonymous: bool = False
    submitter_id: int = Field(index=True)
    # One of storage.ideas.STATUSES.
    status: str = Field(default="new", max_length=20, index=True)
    duplicate_of_id: int | None = None
    form_id: str = Field(max_length=64)
    mir_action_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    status_changed_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class IdeaSupport(SQLModel, table=True):
    """A colleague's "Support" of an idea: once per person (the unique constraint makes a
    second press, even a simultaneous one, store nothing)."""

    __tablename__ = "idea_support"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_idea_support"),
        UniqueConstraint("idea_id", "person_id", name="uq_idea_support_person"),
        ForeignKeyConstraint(["idea_id"], ["idea.id"], name="fk_idea_support_idea_id_idea"),
        ForeignKeyConstraint(["person_id"], ["person.id"], name="fk_idea_support_person_id_person"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idea_id: int
    person_id: int = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class IdeaEvent(SQLModel, table=True):
    """One step of an idea's history: submitted (no from_status), then each status change with
    who made it and why."""

    __tablename__ = "idea_event"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_idea_event"),
        ForeignKeyConstraint(["idea_id"], ["idea.id"], name="fk_idea_event_idea_id_idea"),
        ForeignKeyConstraint(["actor_id"], ["person.id"], name="fk_idea_event_actor_id_person"),
        ForeignKeyConstraint(
            ["duplicate_of_id"], ["idea.id"], name="fk_idea_event_duplicate_of_id_idea"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    idea_id: int = Field(index=True)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    # Who made the change; None for the submission itself (the idea names its submitter).
    actor_id: int | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    duplicate_of_id: int | None = None
    at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class IdeaTriagePost(SQLModel, table=True):
    """Where an idea's triage card was posted, so it can be updated in place."""

    __tablename__ = "idea_triage_post"
    __table_args__ = (
        PrimaryKeyConstraint("idea_id", name="pk_idea_triage_post"),
        ForeignKeyConstraint(["idea_id"], ["idea.id"], name="fk_idea_triage_post_idea_id_idea"),
    )

    idea_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    conversation_id: str = Field(max_length=400)
    activity_id: str = Field(max_length=400)
    posted_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class Setting(SQLModel, table=True):
    """A setting the bot's users change from Teams (the triage channel), by key."""

    __tablename__ = "setting"
    __table_args__ = (PrimaryKeyConstraint("key", name="pk_setting"),)

    key: str = Field(primary_key=True, max_length=80)
    value: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class AuditEntry(SQLModel, table=True):
    """One admin action or status change, for the audit trail (`ourcambridge audit list`).

    Written in the same transaction as the change it records. It names what was done and to
    what by ids only: `detail` holds counts and statuses, never names, emails or free text, so
    the trail survives an erasure without keeping the person. `actor_id` has no foreign key:
    an erased person's id stays in the trail, meaningless but harmless.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (PrimaryKeyConstraint("id", name="pk_audit_entry"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))
    action: str = Field(max_length=60, index=True)
    actor: str = Field(max_length=20)  # "person", "cli" or "system"
    actor_id: int | None = None
    subject: str | None = Field(default=None, max_length=100)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
