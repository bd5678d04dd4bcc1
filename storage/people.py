"""People who talk to the bot, and the conversations the bot can write to later."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, true, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    ROLES,
    ConversationReference,
    MirAction,
    MirSession,
    Person,
    aware,
    utcnow,
)

logger = logging.getLogger(__name__)

# How soon Teams is asked again who someone is after it failed to say.
FAILED_LOOKUP_RETRY = timedelta(hours=1)

# Every column that points at a person. A staff row merged into a roster row has only
# conversations to hand over (sessions, actions and leaders come with a roster role), but
# moving them all keeps the delete safe whatever the row collected.
_PERSON_REFERENCES = (
    (ConversationReference, col(ConversationReference.person_id)),
    (MirSession, col(MirSession.change_maker_id)),
    (MirAction, col(MirAction.change_maker_id)),
    (Person, col(Person.leader_id)),
)


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
) -> tuple[str, str | None, int | None] | None:
    """(service URL, tenant id, person id) stored for a conversation, or None if none is."""
    found = await session.exec(
        select(
            ConversationReference.service_url,
            ConversationReference.tenant_id,
            ConversationReference.person_id,
        ).where(ConversationReference.conversation_id == conversation_id)
    )
    row = found.first()
    return (row[0], row[1], row[2]) if row else None


def roles_of(person: Person) -> frozenset[str]:
    """The person's roster roles; empty for staff (anyone the roster does not list)."""
    if not person.in_roster:
        return frozenset()
    return frozenset(role for role in person.roles if role in ROLES)


async def identify_person(
    session: AsyncSession,
    *,
    aad_object_id: str | None,
    teams_id: str,
    name: str | None,
    lookup_email: Callable[[], Awaitable[str | Sequence[str] | None]],
    now: datetime,
    recheck_after: timedelta = timedelta(days=1),
) -> Person:
    """The person behind a Teams account: their roster row when the roster lists them,
    else a staff row (created on first contact).

    The roster knows people by email and Teams by account, so when an account is first seen
    Teams is asked for its email (`lookup_email`), and again once `recheck_after` has passed
    for people the roster did not list then (they may have been added since). When the email
    is in the roster, the roster row takes the account over, with the conversations already
    recorded for it. Teams may give the email and the UPN: either can match the roster. A
    lookup that fails is tried again after FAILED_LOOKUP_RETRY.
    """
    person = await _find_by_account(session, aad_object_id=aad_object_id, teams_id=teams_id)
    if person is not None:
        _link_account(person, aad_object_id=aad_object_id, teams_id=teams_id, now=now)
        # The roster's name is the one leaders know; Teams' display name fills a gap only.
        if name and person.name != name and not (person.in_roster and person.name):
            person.name = name
            person.updated_at = now
        if person.in_roster or not _lookup_due(person, now=now, recheck_after=recheck_after):
            session.add(person)
            await session.flush()
            return person

    answered, addresses = await _addresses_from_teams(lookup_email)
    owner = None
    email = addresses[0] if addresses else None
    for address in addresses:  # the email, then the UPN: a roster may list either
        found = (await session.exec(select(Person).where(Person.email == address))).first()
        if found is not None and found.in_roster:
            owner, email = found, address
            break
        if found is not None and address == email:
            owner = found
    if owner is not None and owner.in_roster:
        return await _merge_into_roster_row(
            session,
            roster_person=owner,
            staff_person=person,
            aad_object_id=aad_object_id,
            teams_id=teams_id,
            now=now,
        )
    if person is None:
        person = Person(aad_object_id=aad_object_id, teams_id=teams_id, name=name)
    if email is not None and owner is None:
        person.email = email  # unless another row has it: emails are unique
    # Asked again after `recheck_after`; after a failed lookup, after FAILED_LOOKUP_RETRY,
    # so a Teams hiccup costs an hour at most and a broken lookup is not made on every turn.
    person.directory_checked_at = (
        now if answered else now - recheck_after + min(FAILED_LOOKUP_RETRY, recheck_after)
    )
    person.updated_at = now
    session.add(person)
    await session.flush()
    return person


async def _find_by_account(
    session: AsyncSession, *, aad_object_id: str | None, teams_id: str
) -> Person | None:
    if aad_object_id:
        person = (
            await session.exec(select(Person).where(Person.aad_object_id == aad_object_id))
        ).first()
        if person is not None:
            return person
    return (await session.exec(select(Person).where(Person.teams_id == teams_id))).first()


def _link_account(
    person: Person, *, aad_object_id: str | None, teams_id: str, now: datetime
) -> None:
    if person.teams_id != teams_id or (aad_object_id and person.aad_object_id != aad_object_id):
        person.teams_id = teams_id
        person.aad_object_id = aad_object_id or person.aad_object_id
        person.updated_at = now


def _lookup_due(person: Person, *, now: datetime, recheck_after: timedelta) -> bool:
    checked = person.directory_checked_at
    if checked is None:
        return True
    return now - aware(checked) >= recheck_after


async def _addresses_from_teams(
    lookup_email: Callable[[], Awaitable[str | Sequence[str] | None]],
) -> tuple[bool, list[str]]:
    """(whether Teams answered, the addresses it gave, lower-cased, in its order)."""
    try:
        answer = await lookup_email()
    except Exception as error:
        # Neither the account nor the error text: either may hold personal data.
        logger.info("Teams did not say who a member is (%s); staff for now", type(error).__name__)
        return False, []
    given = [answer] if isinstance(answer, str) else list(answer or [])
    addresses: list[str] = []
    for address in given:
        cleaned = (address or "").strip().lower()
        if cleaned and cleaned not in addresses:
            addresses.append(cleaned)
    return True, addresses


async def _merge_into_roster_row(
    session: AsyncSession,
    *,
    roster_person: Person,
    staff_person: Person | None,
    aad_object_id: str | None,
    teams_id: str,
    now: datetime,
) -> Person:
    """Give the roster row this Teams account, moving over what the staff row had."""
    if staff_person is not None and staff_person.id is not None:
        staff_id, roster_id = staff_person.id, roster_person.id
        # The AAD object id is unique: the staff row lets go of it before the roster row
        # takes it.
        staff_person.aad_object_id = None
        session.add(staff_person)
        await session.flush()
        for table, column in _PERSON_REFERENCES:
            await session.exec(update(table).where(column == staff_id).values({column: roster_id}))
        await session.delete(staff_person)
        await session.flush()
        logger.info("A staff row was merged into its roster row (person %s)", roster_id)
    roster_person.aad_object_id = aad_object_id or roster_person.aad_object_id
    roster_person.teams_id = teams_id
    roster_person.directory_checked_at = now
    roster_person.updated_at = now
    session.add(roster_person)
    await session.flush()
    return roster_person


def name_of(person: Person | None) -> str:
    """The name to show someone by: the roster's (or Teams'), else their email, else
    "Someone"."""
    if person is None:
        return "Someone"
    return person.name or person.email or "Someone"


async def display_name(session: AsyncSession, *, person_id: int) -> str:
    """name_of the person with this id."""
    return name_of(await session.get(Person, person_id))


async def service_area_of(session: AsyncSession, *, person_id: int) -> str | None:
    """The person's service area from the roster (a form's default team), if any."""
    person = await session.get(Person, person_id)
    return person.service_area if person else None


@dataclass(frozen=True)
class Unreachable:
    """A roster Change Maker the bot has no 1:1 chat with."""

    person_id: int
    email: str
    aad_object_id: str | None  # known once Teams has told the bot who they are

    @property
    def directory_id(self) -> str:
        """How Microsoft Graph finds them: their object id when known, else the roster's
        email (which must then be their user principal name)."""
        return self.aad_object_id or self.email


async def change_makers_without_chat(session: AsyncSession) -> list[Unreachable]:
    """The roster's Change Makers the bot has no 1:1 chat with (they never opened the app,
    or removed it, so reminders cannot reach them), in email order."""
    with_chat = select(ConversationReference.person_id).where(
        col(ConversationReference.conversation_type) == "personal",
        col(ConversationReference.person_id).is_not(None),
    )
    found = await session.exec(
        select(Person)
        .where(col(Person.in_roster) == true(), col(Person.id).not_in(with_chat))
        .order_by(col(Person.email))
    )
    return [
        Unreachable(
            person_id=person.id or 0, email=person.email, aad_object_id=person.aad_object_id
        )
        for person in found
        if person.email and "change_maker" in roles_of(person)
    ]


async def latest_address(
    session: AsyncSession, *, tenant_id: str
) -> tuple[str, dict[str, Any]] | None:
    """(service URL, reference) of the conversation of this tenant the bot heard from most
    recently, or None. Teams serves a tenant from one service URL, so a chat the bot learns
    of some other way (from Microsoft Graph) is reached there too."""
    found = await session.exec(
        select(ConversationReference.service_url, ConversationReference.reference)
        .where(func.lower(col(ConversationReference.tenant_id)) == tenant_id.lower())
        .order_by(
            col(ConversationReference.updated_at).desc(), col(ConversationReference.id).desc()
        )
        .limit(1)
    )
    row = found.first()
    return (row[0], dict(row[1])) if row else None


async def set_reminders(session: AsyncSession, *, person_id: int, enabled: bool) -> None:
    """Turn the reminders the bot sends this person on or off (`stop reminders`)."""
    person = await session.get(Person, person_id)
    if person is not None and person.reminders_enabled != enabled:
        person.reminders_enabled = enabled
        person.updated_at = utcnow()
        session.add(person)
        await session.flush()
