"""Read models handed to cards: plain, immutable, no database session attached."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


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
