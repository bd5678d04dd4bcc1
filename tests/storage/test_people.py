"""Matching a Teams account to its roster entry: by AAD id once known, by the email Teams
reports on first contact, and a staff row merged into the roster row it turns out to be."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import people, roster
from storage.db import transaction
from storage.models import ConversationReference, Person, utcnow


@dataclass
class FakeDirectory:
    """Teams' member lookup (TeamsInfo.get_member) for one account: what it answers, and
    how often it was asked."""

    email: str | None = None
    fails: bool = False
    calls: int = 0

    async def lookup_email(self) -> str | None:
        self.calls += 1
        if self.fails:
            raise RuntimeError("Teams said 404 for someone@cambridge.gov.uk")
        return self.email


@dataclass(frozen=True)
class Account:
    aad_object_id: str
    teams_id: str
    name: str


def _account(name: str = "Tom Hughes") -> Account:
    unique = uuid.uuid4().hex
    return Account(aad_object_id=f"aad-{unique}", teams_id=f"29:{unique}", name=name)


def _email() -> str:
    return f"tom.{uuid.uuid4().hex[:10]}@cambridge.gov.uk"


async def _identify(
    sessions: async_sessionmaker[AsyncSession],
    account: Account,
    directory: FakeDirectory,
    *,
    now: datetime | None = None,
) -> Person:
    async with transaction(sessions) as session:
        return await people.identify_person(
            session,
            aad_object_id=account.aad_object_id,
            teams_id=account.teams_id,
            name=account.name,
            lookup_email=directory.lookup_email,
            now=now or utcnow(),
        )


async def _add_to_roster(
    sessions: async_sessionmaker[AsyncSession], email: str, role: str = "change_leader"
) -> Person:
    rows, errors = roster.parse_roster(
        f"name,email,role,leader_email,service_area\nTom Hughes,{email},{role},,Planning\n"
    )
    assert errors == []
    async with transaction(sessions) as session:
        await roster.import_roster(session, rows)
        return (await session.exec(select(Person).where(Person.email == email))).one()


async def _get(sessions: async_sessionmaker[AsyncSession], person_id: int | None) -> Person | None:
    async with sessions() as session:
        return await session.get(Person, person_id)


async def test_first_contact_finds_the_roster_entry_by_email_then_by_aad_id(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = _email()
    listed = await _add_to_roster(sessions, email)
    account = _account("Tom H (Teams)")
    directory = FakeDirectory(email=email.upper())

    person = await _identify(sessions, account, directory)
    assert person.id == listed.id and directory.calls == 1
    assert (person.aad_object_id, person.teams_id) == (account.aad_object_id, account.teams_id)
    assert person.name == "Tom Hughes"  # the roster's name, the one leaders know
    assert people.roles_of(person) == frozenset({"change_leader"})

    # Later contacts: found by the AAD id, and Teams is not asked again.
    again = await _identify(sessions, account, FakeDirectory(fails=True))
    assert again.id == listed.id
    moved = Account(account.aad_object_id, f"29:new-{uuid.uuid4().hex}", account.name)
    directory = FakeDirectory(fails=True)
    found = await _identify(sessions, moved, directory)
    assert found.id == listed.id and found.teams_id == moved.teams_id and directory.calls == 0


async def test_someone_not_in_the_roster_is_staff_with_their_email_kept(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = _email()
    directory = FakeDirectory(email=f"  {email.upper()} ")
    person = await _identify(sessions, _account(), directory)
    assert person.id is not None and not person.in_roster
    assert people.roles_of(person) == frozenset()
    assert person.email == email and person.directory_checked_at is not None

    # Added to the roster later: the import finds the same row by that email.
    listed = await _add_to_roster(sessions, email, role="admin")
    assert listed.id == person.id and listed.aad_object_id == person.aad_object_id


async def test_a_staff_row_is_merged_into_the_roster_row_with_its_conversations(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = _email()
    account = _account()
    start = utcnow()
    # First contact before the roster lists them (Teams gives no email, as for a guest).
    staff = await _identify(sessions, account, FakeDirectory(email=None), now=start)
    assert not staff.in_roster and staff.email is None
    conversation_id = f"a:personal-{uuid.uuid4().hex}"
    async with transaction(sessions) as session:
        await people.save_conversation_reference(
            session,
            conversation_id=conversation_id,
            conversation_type="personal",
            tenant_id="tenant",
            service_url="https://smba.example/",
            reference={"conversation": {"id": conversation_id}},
            person_id=staff.id,
        )
    listed = await _add_to_roster(sessions, email, role="admin")

    # The next day Teams gives the email the roster now has.
    directory = FakeDirectory(email=email)
    person = await _identify(sessions, account, directory, now=start + timedelta(days=1))
    assert directory.calls == 1
    assert person.id == listed.id and person.in_roster
    assert person.aad_object_id == account.aad_object_id
    assert await _get(sessions, staff.id) is None
    async with sessions() as session:
        owners = await session.exec(
            select(ConversationReference.person_id).where(
                ConversationReference.conversation_id == conversation_id
            )
        )
        assert list(owners) == [listed.id]
    # And from now on the account is the roster person's, with no lookup.
    again = FakeDirectory(fails=True)
    assert (await _identify(sessions, account, again)).id == listed.id and again.calls == 0


async def test_teams_is_asked_again_after_a_day_not_before(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    account = _account()
    start = utcnow()
    directory = FakeDirectory(email=None)
    staff = await _identify(sessions, account, directory, now=start)
    for later in (timedelta(minutes=5), timedelta(hours=23)):
        assert (await _identify(sessions, account, directory, now=start + later)).id == staff.id
    assert directory.calls == 1
    await _identify(sessions, account, directory, now=start + timedelta(days=1, seconds=1))
    assert directory.calls == 2


async def test_a_lookup_that_fails_leaves_them_staff_and_is_tried_again_an_hour_later(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    email = _email()
    listed = await _add_to_roster(sessions, email, role="change_leader")
    account = _account()
    start = utcnow()
    failing = FakeDirectory(fails=True)
    with caplog.at_level("INFO", logger="storage.people"):
        staff = await _identify(sessions, account, failing, now=start)
        again = await _identify(sessions, account, failing, now=start + timedelta(minutes=30))
    assert failing.calls == 1, "not asked on every turn while Teams is failing"
    assert not staff.in_roster and again.id == staff.id
    assert "RuntimeError" in caplog.text
    assert "cambridge.gov.uk" not in caplog.text and account.name not in caplog.text

    working = FakeDirectory(email=email)
    person = await _identify(sessions, account, working, now=start + timedelta(minutes=61))
    assert working.calls == 1 and person.id == listed.id
    assert await _get(sessions, staff.id) is None


async def test_the_upn_matches_a_roster_that_lists_it_rather_than_the_email(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    upn = _email()
    listed = await _add_to_roster(sessions, upn, role="change_leader")
    account = _account()

    async def email_then_upn() -> list[str]:
        return [f"preferred.{upn}", upn.upper()]

    async with transaction(sessions) as session:
        person = await people.identify_person(
            session,
            aad_object_id=account.aad_object_id,
            teams_id=account.teams_id,
            name=account.name,
            lookup_email=email_then_upn,
            now=utcnow(),
        )
    assert person.id == listed.id and person.in_roster


async def test_an_email_another_row_has_is_not_stored_twice(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = _email()
    first = await _identify(sessions, _account(), FakeDirectory(email=email))
    second = await _identify(sessions, _account(), FakeDirectory(email=email))
    assert first.email == email and second.email is None and second.id != first.id


async def test_the_small_helpers(sessions: async_sessionmaker[AsyncSession]) -> None:
    email = _email()
    listed = await _add_to_roster(sessions, email)
    assert listed.id is not None
    async with transaction(sessions) as session:
        assert await people.display_name(session, person_id=listed.id) == "Tom Hughes"
        assert await people.service_area_of(session, person_id=listed.id) == "Planning"
        await people.set_reminders(session, person_id=listed.id, enabled=False)
    stored = await _get(sessions, listed.id)
    assert stored is not None and stored.reminders_enabled is False
    # Roles come from the roster only.
    assert people.roles_of(Person(roles=["admin"], in_roster=False)) == frozenset()
