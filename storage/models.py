"""SQLModel tables. Alembic migrations in `storage/migrations` own the schema built from these."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

RAG_VALUES = ("red", "amber", "green")


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    id: int | None = Field(default=None, primary_key=True)
    aad_object_id: str | None = Field(default=None, unique=True, max_length=64)
    teams_id: str | None = Field(default=None, index=True, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, index=True, max_length=320)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


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
