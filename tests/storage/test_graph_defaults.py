"""What Microsoft Graph features rely on in storage: a directory department mapped onto the
ideas' service areas (pure), and the Change Makers the bot cannot message yet."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import people
from storage.db import transaction
from storage.ideas import SERVICE_AREAS, service_area_for
from storage.models import ConversationReference, Person
from tests.support.people import add_person


@pytest.mark.parametrize(
    ("department", "area"),
    [
        ("Housing", "Housing"),  # the same words
        ("HOUSING", "Housing"),  # in any case
        ("  housing ", "Housing"),
        ("Revenues & Benefits", "Revenues and Benefits"),
        ("Housing Services", "Housing"),  # an area within the department
        ("Waste and Recycling Team", "Waste and Recycling"),
        ("ICT", "ICT and Digital"),  # the department within an area
        ("Legal", "Legal and Democratic Services"),
        ("Other", "Other"),  # "Other" only when it is said
    ],
)
def test_a_department_that_names_one_service_area_maps_to_it(department: str, area: str) -> None:
    assert service_area_for(department) == area


@pytest.mark.parametrize(
    "department",
    [
        None,
        "",
        "   ",
        "Services",  # in several areas
        "Housing and Finance",  # names two areas
        "Museums",  # names none
        "Brothers",  # "other" is in it, but not as a word
        "Finances",  # a different word, however close
        "and",
    ],
)
def test_a_department_that_names_no_single_area_maps_to_none(department: str | None) -> None:
    assert service_area_for(department) is None


def test_every_service_area_maps_to_itself() -> None:
    assert [service_area_for(area) for area in SERVICE_AREAS] == list(SERVICE_AREAS)


async def test_change_makers_without_chat_are_those_reminders_cannot_reach(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = fresh_sessions
    await add_person(sessions, "Una", email="una@cambridge.gov.uk")
    await add_person(sessions, "Rob", email="rob@cambridge.gov.uk", reachable=True)
    await add_person(sessions, "Lia", email="lia@cambridge.gov.uk", role="change_leader")
    await add_person(sessions, "Sal", email="sal@cambridge.gov.uk", role=None)  # staff
    in_channel = await add_person(sessions, "Cy", email="cy@cambridge.gov.uk")
    async with transaction(sessions) as session:
        # A channel conversation is no 1:1 chat: reminders cannot use it.
        session.add(
            ConversationReference(
                conversation_id="19:channel-of-cy@thread.tacv2",
                conversation_type="channel",
                service_url="https://smba.trafficmanager.net/uk/",
                person_id=in_channel,
                reference={},
            )
        )

    async with sessions() as session:
        found = await people.change_makers_without_chat(session)

    assert [(p.email, p.directory_id) for p in found] == [
        ("cy@cambridge.gov.uk", "cy@cambridge.gov.uk"),
        ("una@cambridge.gov.uk", "una@cambridge.gov.uk"),
    ]
    assert [p.person_id for p in found][0] == in_channel


async def test_a_known_object_id_is_how_the_directory_finds_someone(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    known = await add_person(fresh_sessions, "Kit", email="kit@cambridge.gov.uk")
    async with transaction(fresh_sessions) as session:
        person = await session.get(Person, known)
        assert person is not None
        person.aad_object_id = "aad-kit"
        session.add(person)

    async with fresh_sessions() as session:
        (found,) = await people.change_makers_without_chat(session)

    assert (found.aad_object_id, found.directory_id) == ("aad-kit", "aad-kit")


async def test_the_latest_address_is_the_tenants_most_recent_conversation(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with fresh_sessions() as session:
        assert await people.latest_address(session, tenant_id="tenant-a") is None
    for conversation_id, tenant_id, service_url in (
        ("a:first", "tenant-a", "https://smba.trafficmanager.net/uk/"),
        ("a:other", "tenant-b", "https://smba.trafficmanager.net/amer/"),
        ("a:second", "TENANT-A", "https://smba.trafficmanager.net/emea/"),
    ):
        async with transaction(fresh_sessions) as session:
            await people.save_conversation_reference(
                session,
                conversation_id=conversation_id,
                conversation_type="personal",
                tenant_id=tenant_id,
                service_url=service_url,
                reference={"conversation": {"id": conversation_id}},
            )

    async with fresh_sessions() as session:
        latest = await people.latest_address(session, tenant_id="Tenant-A")

    assert latest == (
        "https://smba.trafficmanager.net/emea/",
        {"conversation": {"id": "a:second"}},
    )
