"""People for storage tests: roster rows with emails no other test uses."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import roster
from storage.db import create_engine, session_factory, transaction
from storage.models import ConversationReference, Person
from tests.support import log_scan


async def add_person(
    sessions: async_sessionmaker[AsyncSession],
    name: str | None,
    *,
    role: str | None = "change_maker",
    leader_id: int | None = None,
    service_area: str | None = None,
    reachable: bool = False,
    email: str | None = None,
    reminders_enabled: bool = True,
) -> int:
    """A roster person (staff when `role` is None) with an email no other test uses."""
    unique = uuid.uuid4().hex[:12]
    email = email or f"person.{unique}@cambridge.gov.uk"
    log_scan.note_user(name or "", email)  # the logs must never hold them (log_scan.py)
    async with transaction(sessions) as session:
        person = Person(
            name=name,
            email=email,
            roles=[role] if role else [],
            in_roster=role is not None,
            leader_id=leader_id,
            service_area=service_area,
            reminders_enabled=reminders_enabled,
        )
        session.add(person)
        await session.flush()
        if reachable:
            session.add(
                ConversationReference(
                    conversation_id=f"a:personal-{unique}",
                    conversation_type="personal",
                    service_url="https://smba.trafficmanager.net/uk/",
                    person_id=person.id,
                    reference={},
                )
            )
        return person.id or 0


async def import_roster_csv(database_url: str, csv_text: str) -> None:
    """Import a roster CSV that has no bad rows into the database at `database_url`."""
    rows, errors = roster.parse_roster(csv_text)
    assert errors == []
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await roster.import_roster(session, rows)
    finally:
        await engine.dispose()
