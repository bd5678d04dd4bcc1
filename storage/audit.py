"""The audit trail: admin actions and status changes, read with `ourcambridge audit list`.

Each entry is written with `record` in the same transaction as the change it records, so the
trail holds exactly what was committed. Entries name people and records by id only
(`subject="idea:12"`, `actor_id=7`); `detail` is a small JSON of counts, statuses and ids and
never holds names, emails or free text, so the trail needs no erasing when a person is erased.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AuditEntry, aware, utcnow

ACTORS = ("person", "cli", "system")

# Keys that would carry personal data; `record` refuses them so a careless caller fails in
# tests rather than writing a name into the trail.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"name", "email", "text", "title", "reason", "problem", "suggestion", "notes", "comment"}
)


@dataclass(frozen=True)
class AuditEntryView:
    id: int
    at: datetime
    action: str
    actor: str
    actor_id: int | None
    subject: str | None
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "action": self.action,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "subject": self.subject,
            "detail": self.detail,
        }


async def record(
    session: AsyncSession,
    *,
    action: str,
    actor_id: int | None,
    actor: str,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add an audit entry to the session's transaction (the caller commits it with the change).

    `actor` is "person" (with `actor_id`), "cli" or "system"; `subject` is what it was done
    to, by id ("idea:12", "person:7"); `detail` holds no personal data.
    """
    if actor not in ACTORS:
        raise ValueError(f"unknown audit actor {actor!r}; expected one of {ACTORS}")
    if not action or len(action) > 60:
        raise ValueError("an audit action is a dotted name of 1 to 60 characters")
    if subject is not None and len(subject) > 100:
        raise ValueError("an audit subject is an id of at most 100 characters")
    detail = dict(detail or {})
    forbidden = FORBIDDEN_DETAIL_KEYS.intersection(detail)
    if forbidden:
        raise ValueError(f"audit detail must not hold personal data: {sorted(forbidden)}")
    session.add(
        AuditEntry(
            at=at or utcnow(),
            action=action,
            actor=actor,
            actor_id=actor_id,
            subject=subject,
            detail=detail,
        )
    )
    await session.flush()


async def list_entries(
    session: AsyncSession,
    *,
    since: datetime | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEntryView]:
    """The latest `limit` entries, newest first; `action` matches a name ("idea.status") or a
    prefix ending in a dot ("idea.")."""
    query = select(AuditEntry)
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if action:
        if action.endswith("."):
            query = query.where(col(AuditEntry.action).startswith(action))
        else:
            query = query.where(AuditEntry.action == action)
    query = query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc()).limit(limit)
    entries = (await session.exec(query)).all()
    return [
        AuditEntryView(
            id=entry.id or 0,
            at=aware(entry.at),
            action=entry.action,
            actor=entry.actor,
            actor_id=entry.actor_id,
            subject=entry.subject,
            detail=dict(entry.detail or {}),
        )
        for entry in entries
    ]
