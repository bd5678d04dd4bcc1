"""People who talk to the bot, and the conversations the bot can write to later."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ConversationReference, Person, utcnow


async def record_person(
    session: AsyncSession,
    *,
    aad_object_id: str | None,
    teams_id: str,
    name: str | None,
) -> Person:
    """Find the person behind a Teams account (by AAD object id, else Teams id) or add them."""
    person = None
    if aad_object_id:
        person = (
            await session.exec(select(Person).where(Person.aad_object_id == aad_object_id))
        ).first()
    if person is None:
        person = (await session.exec(select(Person).where(Person.teams_id == teams_id))).first()
    if person is None:
        person = Person(aad_object_id=aad_object_id, teams_id=teams_id, name=name)
        session.add(person)
    elif (person.teams_id, person.name) != (teams_id, name) or (
        aad_object_id and person.aad_object_id != aad_object_id
    ):
        person.teams_id = teams_id
        person.name = name or person.name
        person.aad_object_id = aad_object_id or person.aad_object_id
        person.updated_at = utcnow()
        session.add(person)
    await session.flush()
    return person


async def save_conversation_reference(
    session: AsyncSession,
    *,
    conversation_id: str,
    conversation_type: str,
    tenant_id: str | None,
    service_url: str,
    reference: dict[str, Any],
    team_id: str | None = None,
    channel_id: str | None = None,
    person_id: int | None = None,
) -> ConversationReference:
    """Insert or refresh where the bot can write to this conversation later."""
    stored = (
        await session.exec(
            select(ConversationReference).where(
                ConversationReference.conversation_id == conversation_id
            )
        )
    ).first()
    if stored is None:
        stored = ConversationReference(
            conversation_id=conversation_id,
            conversation_type=conversation_type,
            service_url=service_url,
            reference=reference,
        )
    stored.conversation_type = conversation_type
    stored.tenant_id = tenant_id or stored.tenant_id
    stored.service_url = service_url
    stored.reference = reference
    stored.team_id = team_id or stored.team_id
    stored.channel_id = channel_id or stored.channel_id
    stored.person_id = person_id or stored.person_id
    stored.updated_at = utcnow()
    session.add(stored)
    await session.flush()
    return stored


async def conversation_address(
    session: AsyncSession, *, conversation_id: str
) -> tuple[str, str | None] | None:
    """(service URL, tenant id) stored for a conversation, or None if none is stored."""
    found = await session.exec(
        select(ConversationReference.service_url, ConversationReference.tenant_id).where(
            ConversationReference.conversation_id == conversation_id
        )
    )
    row = found.first()
    return (row[0], row[1]) if row else None
