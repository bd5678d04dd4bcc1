"""The audit trail: entries read back newest first and filtered; nothing personal can be put in
one; and admin actions and status changes write theirs in the transaction of the change, so a
change rolled back leaves no entry and every committed one has its entry."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit, ideas, mir, programme, roster, subscriptions
from storage.db import transaction
from storage.mir import LogSubmission, ScheduleSubmission
from storage.models import AuditEntry, Person, Project, utcnow
from tests.support.ideas import idea_about
from tests.support.people import add_person


async def _entries(
    sessions: async_sessionmaker[AsyncSession], *, subject: str | None = None, action: str = ""
) -> list[AuditEntry]:
    async with sessions() as session:
        query = select(AuditEntry).order_by(col(AuditEntry.id))
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        if action:
            query = query.where(AuditEntry.action == action)
        return list((await session.exec(query)).all())


# --- recording and reading ------------------------------------------------------------------


async def test_entries_come_back_newest_first_filtered_by_day_action_and_number(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    async with transaction(fresh_sessions) as session:
        for day, action in enumerate(["test.one", "test.two", "test.one", "other.one"]):
            await audit.record(
                session,
                action=action,
                actor_id=day or None,
                actor="person" if day else "system",
                subject=f"idea:{day}",
                detail={"day": day},
                at=start + timedelta(days=day),
            )
    async with fresh_sessions() as session:
        everything = await audit.list_entries(session)
        since = await audit.list_entries(session, since=start + timedelta(days=1, hours=1))
        ones = await audit.list_entries(session, action="test.one")
        family = await audit.list_entries(session, action="test.")
        latest = await audit.list_entries(session, limit=2)
    assert [e.detail["day"] for e in everything] == [3, 2, 1, 0]
    assert [e.detail["day"] for e in since] == [3, 2]
    assert [e.detail["day"] for e in ones] == [2, 0]
    assert [e.action for e in family] == ["test.one", "test.two", "test.one"]
    assert [e.detail["day"] for e in latest] == [3, 2]
    oldest = everything[-1]
    assert (oldest.actor, oldest.actor_id, oldest.subject) == ("system", None, "idea:0")
    assert oldest.at == start  # with its zone, on SQLite too
    assert oldest.as_json() == {
        "id": oldest.id,
        "at": "2026-03-01T09:00:00+00:00",
        "action": "test.one",
        "actor": "system",
        "actor_id": None,
        "subject": "idea:0",
        "detail": {"day": 0},
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"actor": "admin"}, "unknown audit actor"),
        ({"action": ""}, "dotted name"),
        ({"action": "x" * 61}, "dotted name"),
        ({"subject": "idea:" + "1" * 100}, "at most 100"),
        ({"detail": {"name": "Zoë"}}, "personal data"),
        ({"detail": {"email": "zoe@cambridge.gov.uk", "count": 1}}, "personal data"),
        ({"detail": {"reason": "because"}}, "personal data"),
    ],
)
async def test_an_entry_refuses_what_it_must_not_hold(
    sessions: async_sessionmaker[AsyncSession], fields: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"action": "test.refused", "actor_id": None, "actor": "cli"}
    arguments |= fields
    async with sessions() as session:
        with pytest.raises(ValueError, match=message):
            await audit.record(session, **arguments)  # type: ignore[arg-type]


# --- written with the change ----------------------------------------------------------------


async def test_an_idea_status_change_is_audited_and_a_rolled_back_one_is_not(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    submitter = await add_person(sessions, "Sub", role=None)
    admin = await add_person(sessions, "Admin", role="admin")
    async with transaction(sessions) as session:
        idea, _ = await ideas.submit_idea(
            session, submitter_id=submitter, submission=idea_about(), form_id=uuid.uuid4().hex
        )
    subject = f"idea:{idea.id}"
    assert await _entries(sessions, subject=subject) == []  # a submission is not an admin act

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            await ideas.change_status(
                session, idea_id=idea.id, to_status="under_review", actor_id=admin, reason=None
            )
            raise RuntimeError("the card could not be updated")
    assert await _entries(sessions, subject=subject) == []

    async with transaction(sessions) as session:
        await ideas.change_status(
            session, idea_id=idea.id, to_status="under_review", actor_id=admin, reason=None
        )
    async with transaction(sessions) as session:
        await ideas.change_status(
            session,
            idea_id=idea.id,
            to_status="not_taken_forward",
            actor_id=admin,
            reason="Secret reason text",
        )
    entries = await _entries(sessions, subject=subject)
    assert [(e.action, e.actor, e.actor_id, e.detail) for e in entries] == [
        ("idea.status", "person", admin, {"from": "new", "to": "under_review"}),
        ("idea.status", "person", admin, {"from": "under_review", "to": "not_taken_forward"}),
    ]
    assert all("Secret" not in str(e.detail) for e in entries)


async def test_setting_the_triage_channel_is_audited(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    admin = await add_person(fresh_sessions, "Admin", role="admin")
    async with transaction(fresh_sessions) as session:
        await ideas.set_triage_channel(session, conversation_id="19:triage", set_by=admin)
    (entry,) = await _entries(fresh_sessions, action="triage.channel")
    assert (entry.actor, entry.actor_id, entry.subject) == (
        "person",
        admin,
        "setting:triage_channel",
    )


async def test_a_roster_import_is_audited_with_its_counts(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    unique = uuid.uuid4().hex[:8]
    rows, errors = roster.parse_roster(
        "name,email,role,leader_email,service_area\n"
        f"Lena Okafor,lena.{unique}@cambridge.gov.uk,change_leader,,\n"
        f"Tom Hughes,tom.{unique}@cambridge.gov.uk,change_maker,lena.{unique}@cambridge.gov.uk,\n"
    )
    assert errors == []
    for _ in range(2):
        async with transaction(fresh_sessions) as session:
            await roster.import_roster(session, rows)
    entries = await _entries(fresh_sessions, action="roster.import")
    assert [(e.actor, e.actor_id, e.detail) for e in entries] == [
        ("cli", None, {"rows": 2, "created": 2, "updated": 0, "unchanged": 0, "not_in_file": 0}),
        ("cli", None, {"rows": 2, "created": 0, "updated": 0, "unchanged": 2, "not_in_file": 0}),
    ]
    assert all(unique not in str(e.detail) for e in entries)


async def test_a_project_update_posted_from_teams_is_audited_by_its_author(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    aad = str(uuid.uuid4())
    author = await add_person(sessions, "Author", role=None)
    async with transaction(sessions) as session:
        stored = await session.get(Person, author)
        assert stored is not None
        stored.aad_object_id = aad
        session.add(stored)
    async with transaction(sessions) as session:
        project = (await programme.project_names(session))[0]
        project_id = (
            await session.exec(select(Project.id).where(Project.slug == project.slug))
        ).one()
        await programme.add_update(
            session,
            slug=project.slug,
            month=date(2026, 11, 1),
            text="A private-sounding update text",
            rag="amber",
            author="Author",
            author_aad_id=aad,
            source=f"teams-form:{uuid.uuid4().hex}",
        )
    entries = [e for e in await _entries(sessions, action="project.update") if e.actor_id == author]
    (entry,) = entries
    assert entry.actor == "person" and entry.subject == f"project:{project_id}"
    assert entry.detail["month"] == "2026-11" and entry.detail["rag"] == "amber"
    assert "private" not in str(entry.detail)


async def test_digest_subscription_changes_are_audited(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await add_person(fresh_sessions, "Sub", role=None)
    channel = f"19:{uuid.uuid4().hex}@thread.tacv2"
    now = utcnow()
    async with transaction(fresh_sessions) as session:
        subscription, _ = await subscriptions.subscribe(
            session, conversation_id=channel, team_id=None, person_id=person, now=now
        )
        await subscriptions.subscribe(  # already subscribed: nothing changes, nothing audited
            session, conversation_id=channel, team_id=None, person_id=person, now=now
        )
        await subscriptions.change_schedule(
            session, conversation_id=channel, weekday=2, send_time="14:30", now=now, actor_id=person
        )
        await subscriptions.unsubscribe(session, conversation_id=channel, now=now, actor_id=person)
        await subscriptions.subscribe(
            session, conversation_id=channel, team_id=None, person_id=None, now=now
        )
        await subscriptions.end_for_conversation(
            session, conversation_id=channel, now=now, reason="unreachable"
        )
    entries = await _entries(fresh_sessions, subject=f"subscription:{subscription.id}")
    assert [(e.action, e.actor, e.actor_id, e.detail) for e in entries] == [
        ("digest.subscribe", "person", person, {"weekday": 0, "send_time": "09:00"}),
        ("digest.schedule", "person", person, {"weekday": 2, "send_time": "14:30"}),
        ("digest.end", "person", person, {"cause": "unsubscribed"}),
        ("digest.subscribe", "system", None, {"weekday": 2, "send_time": "14:30"}),
        ("digest.end", "system", None, {"cause": "unreachable"}),
    ]


async def test_making_it_real_status_changes_are_audited(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    maker = await add_person(sessions, "Maker")
    today = date(2026, 11, 20)
    async with transaction(sessions) as session:
        planned, _ = await mir.schedule_session(
            session,
            change_maker_id=maker,
            submission=ScheduleSubmission(
                session_date=today, start_time=time(9), team="Housing", expected_attendees=4
            ),
            form_id=uuid.uuid4().hex,
        )
        cancelled, _ = await mir.schedule_session(
            session,
            change_maker_id=maker,
            submission=ScheduleSubmission(
                session_date=today, start_time=time(11), team="Housing", expected_attendees=4
            ),
            form_id=uuid.uuid4().hex,
        )
        await mir.cancel_session(session, session_id=cancelled.id, change_maker_id=maker)
        await mir.cancel_session(session, session_id=cancelled.id, change_maker_id=maker)
        held, actions, _ = await mir.log_session(
            session,
            change_maker_id=maker,
            submission=LogSubmission(
                scheduled_session_id=planned.id,
                held_on=today,
                team="Housing",
                attendees=4,
                themes="repairs",
                changes=("One", "Two"),
                went_well="Private words",
                to_change=None,
                rating=5,
            ),
            form_id=uuid.uuid4().hex,
        )
        await mir.set_action_status(
            session,
            action_id=actions[0].id,
            change_maker_id=maker,
            status="dropped",
            reason="Private reason",
            today=today,
        )
    assert [
        (e.action, e.detail)
        for e in await _entries(sessions, subject=f"mir_session:{cancelled.id}")
    ] == [("mir_session.status", {"from": "scheduled", "to": "cancelled"})]
    assert [
        (e.action, e.detail) for e in await _entries(sessions, subject=f"mir_session:{held.id}")
    ] == [("mir_session.status", {"from": "scheduled", "to": "held", "actions": 2})]
    (dropped,) = await _entries(sessions, subject=f"mir_action:{actions[0].id}")
    assert (dropped.actor_id, dropped.detail) == (maker, {"from": "open", "to": "dropped"})
