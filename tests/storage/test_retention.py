"""Retention: each kind of record past its period is deleted or anonymised and a recent one
is kept; a dry run reports exactly what the purge then does and changes nothing; every purge
is in the audit trail, and a second purge straight after the first finds nothing."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit, privacy, retention
from storage.db import transaction
from storage.models import (
    AuditEntry,
    BotState,
    ConversationReference,
    DeliveryAttempt,
    Idea,
    IdeaEvent,
    IdeaSupport,
    MirAction,
    MirSession,
    OutboxMessage,
    Person,
    ProcessedActivity,
)
from storage.retention import RECORD_TYPES, RetentionPolicy, months_before, years_before

NOW = datetime(2026, 11, 29, 3, 30, tzinfo=UTC)
POLICY = RetentionPolicy(
    outbox=timedelta(days=30),
    dialog_state=timedelta(days=30),
    session_notes_months=24,
    idea_people_years=2,
    idle_staff=timedelta(days=365),
    audit_years=6,
)
IDLE = NOW - timedelta(days=366)
SEEN = NOW - timedelta(days=364)
# Two years before NOW, to the day: the session notes' and closed ideas' limit.
TWO_YEARS = date(2024, 11, 29)


# --- calendar arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 29), 24, date(2024, 11, 29)),
        (date(2026, 3, 31), 1, date(2026, 2, 28)),
        (date(2024, 3, 31), 1, date(2024, 2, 29)),
        (date(2026, 1, 15), 13, date(2024, 12, 15)),
    ],
)
def test_months_before_counts_calendar_months(day: date, months: int, expected: date) -> None:
    assert months_before(day, months) == expected


def test_years_before_keeps_the_moment_and_moves_29_february_to_the_28th() -> None:
    assert years_before(NOW, 6) == datetime(2020, 11, 29, 3, 30, tzinfo=UTC)
    assert years_before(datetime(2028, 2, 29, tzinfo=UTC), 2) == datetime(2026, 2, 28, tzinfo=UTC)


# --- the story: for every record type, rows past their period and rows still within it ----


@dataclass
class Story:
    ids: dict[str, Any] = field(default_factory=dict)


def _person(name: str, *, roster: bool, seen: datetime) -> Person:
    unique = uuid.uuid4().hex[:10]
    return Person(
        name=name,
        email=f"{name.lower()}.{unique}@cambridge.gov.uk",
        aad_object_id=f"aad-{unique}",
        teams_id=f"29:{unique}",
        roles=["change_maker"] if roster else [],
        in_roster=roster,
        created_at=seen,
        updated_at=seen,
        directory_checked_at=None if roster else seen,
    )


def _chat(person: Person) -> ConversationReference:
    return ConversationReference(
        conversation_id=f"a:personal-{uuid.uuid4().hex}",
        conversation_type="personal",
        service_url="https://smba.trafficmanager.net/uk/",
        person_id=person.id,
        reference={"user": {"name": person.name}},
        created_at=IDLE,
        updated_at=IDLE,
    )


def _idea(title: str, submitter: Person, *, status: str, changed: datetime) -> Idea:
    return Idea(
        title=title,
        problem="The form asks for the same address twice.",
        suggestion="Ask once.",
        service_area="Revenues and Benefits",
        submitter_id=submitter.id or 0,
        status=status,
        form_id=uuid.uuid4().hex,
        created_at=changed - timedelta(days=60),
        updated_at=changed,
        status_changed_at=changed,
    )


async def _tell_story(sessions: async_sessionmaker[AsyncSession]) -> Story:
    story = Story()
    async with transaction(sessions) as session:
        # The bot's own working records.
        session.add_all(
            [
                ProcessedActivity(key="old-activity", received_at=NOW - timedelta(days=3)),
                ProcessedActivity(key="new-activity", received_at=NOW - timedelta(days=1)),
                DeliveryAttempt(
                    outbox_id=1, attempt=1, conversation_id="a:1", at=NOW - timedelta(hours=7)
                ),
                DeliveryAttempt(
                    outbox_id=2, attempt=1, conversation_id="a:1", at=NOW - timedelta(hours=5)
                ),
                BotState(
                    key="old-state", document="{}", etag="1", updated_at=NOW - timedelta(days=31)
                ),
                BotState(
                    key="new-state", document="{}", etag="2", updated_at=NOW - timedelta(days=29)
                ),
            ]
        )
        outbox_rows = {
            "old-sent": OutboxMessage(
                dedupe_key="old-sent",
                conversation_id="a:1",
                payload={"text": "Hello Sam"},
                status="sent",
                created_at=NOW - timedelta(days=32),
                last_attempt_at=NOW - timedelta(days=31),
                sent_at=NOW - timedelta(days=31),
            ),
            "old-failed": OutboxMessage(
                dedupe_key="old-failed",
                conversation_id="a:1",
                payload={"text": "Hello Sam"},
                status="failed",
                created_at=NOW - timedelta(days=40),
                last_attempt_at=NOW - timedelta(days=39),
            ),
            "new-sent": OutboxMessage(
                dedupe_key="new-sent",
                conversation_id="a:1",
                payload={"text": "Hello Sam"},
                status="sent",
                created_at=NOW - timedelta(days=35),  # retried: last tried within the period
                last_attempt_at=NOW - timedelta(days=29),
                sent_at=NOW - timedelta(days=29),
            ),
            "old-pending": OutboxMessage(
                dedupe_key="old-pending",
                conversation_id="a:1",
                payload={"text": "Hello Sam"},
                status="pending",
                created_at=NOW - timedelta(days=100),
                next_attempt_at=NOW - timedelta(days=100),
            ),
        }
        session.add_all(outbox_rows.values())

        # Making It Real: notes of a session held more than two years ago go; the same day
        # two years ago is still within the period.
        maker = _person("Morgan", roster=True, seen=IDLE)
        session.add(maker)
        await session.flush()
        sessions_held = {
            name: MirSession(
                change_maker_id=maker.id or 0,
                status="held",
                session_date=day,
                team="Revenues",
                attendees=6,
                themes="Duplicate forms",
                went_well=notes,
                to_change=notes,
                rating=4,
            )
            for name, day, notes in [
                ("old", TWO_YEARS - timedelta(days=1), "Sam was frank about the backlog"),
                ("edge", TWO_YEARS, "Sam was frank about the backlog"),
                ("old-no-notes", TWO_YEARS - timedelta(days=100), None),
            ]
        }
        session.add_all(sessions_held.values())
        await session.flush()
        actions = {
            name: MirAction(
                session_id=sessions_held[held].id or 0,
                change_maker_id=maker.id or 0,
                text="Merge the two address fields",
                owner="Sam Jones",
                status=status,
                status_reason="Superseded" if status == "dropped" else None,
            )
            for name, held, status in [
                ("old-dropped", "old", "dropped"),
                ("old-open", "old", "open"),
                ("edge-done", "edge", "done"),
            ]
        }
        session.add_all(actions.values())

        # Staff (not in the roster): idle ones lose their 1:1 chat unless an open idea still
        # needs it, and their row when nothing else refers to it.
        people = {
            "lone": _person("Lone", roster=False, seen=IDLE),
            "old-submitter": _person("Olive", roster=False, seen=IDLE),
            "old-supporter": _person("Otto", roster=False, seen=IDLE),
            "open-submitter": _person("Opal", roster=False, seen=IDLE),
            "triager": _person("Tess", roster=False, seen=IDLE),
            "recent": _person("Rae", roster=False, seen=SEEN),
            "idle-roster": _person("Rita", roster=True, seen=IDLE),
        }
        session.add_all(people.values())
        await session.flush()
        chats = {name: _chat(person) for name, person in people.items()}
        channel = ConversationReference(
            conversation_id="19:channel@thread.tacv2",
            conversation_type="channel",
            service_url="https://smba.trafficmanager.net/uk/",
            reference={},
            created_at=IDLE,
            updated_at=IDLE,
        )
        session.add_all([*chats.values(), channel])

        ideas = {
            "old-closed": _idea(
                "Ask for the address once",
                people["old-submitter"],
                status="implemented",
                changed=datetime(2024, 11, 28, tzinfo=UTC),
            ),
            "edge-closed": _idea(
                "Ask for the postcode once",
                people["old-submitter"],
                status="not_taken_forward",
                changed=datetime(2024, 11, 29, 4, tzinfo=UTC),
            ),
            "old-open": _idea(
                "Print fewer letters",
                people["open-submitter"],
                status="under_review",
                changed=datetime(2023, 1, 1, tzinfo=UTC),
            ),
        }
        session.add_all(ideas.values())
        await session.flush()
        supports = {
            "old-closed": IdeaSupport(
                idea_id=ideas["old-closed"].id or 0, person_id=people["old-supporter"].id or 0
            ),
            "edge-closed": IdeaSupport(
                idea_id=ideas["edge-closed"].id or 0, person_id=people["old-supporter"].id or 0
            ),
        }
        session.add_all(supports.values())
        session.add(
            IdeaEvent(
                idea_id=ideas["old-closed"].id or 0,
                from_status="accepted",
                to_status="implemented",
                actor_id=people["triager"].id,
                at=datetime(2024, 11, 28, tzinfo=UTC),
            )
        )
        await session.flush()

        # The audit trail: six years.
        await audit.record(
            session,
            action="test.old",
            actor_id=None,
            actor="system",
            at=years_before(NOW, 6) - timedelta(minutes=1),
        )
        await audit.record(
            session, action="test.kept", actor_id=None, actor="system", at=years_before(NOW, 6)
        )

        story.ids = {
            "outbox": {name: row.id for name, row in outbox_rows.items()},
            "mir_session": {name: row.id for name, row in sessions_held.items()},
            "mir_action": {name: row.id for name, row in actions.items()},
            "person": {name: row.id for name, row in people.items()},
            "chat": {name: row.conversation_id for name, row in chats.items()},
            "idea": {name: row.id for name, row in ideas.items()},
            "support": {name: row.id for name, row in supports.items()},
        }
    return story


EXPECTED = {
    "processed_activity": 1,
    "delivery_attempt": 1,
    "outbox": 2,
    "bot_state": 1,
    "mir_session_notes": 1,
    "mir_action_owner": 1,
    "idea_submitter": 1,
    "idea_support": 1,
    # lone, old-submitter, old-supporter, triager; not open-submitter (an open idea),
    # recent, idle-roster nor the channel.
    "conversation_reference": 4,
    # lone only: the others are still linked to an idea (or, the triager, to a decision).
    "person": 1,
    "audit_entry": 1,
}


async def _purge(
    sessions: async_sessionmaker[AsyncSession],
    *,
    dry_run: bool,
    now: datetime = NOW,
    policy: RetentionPolicy = POLICY,
) -> retention.PurgeReport:
    async with transaction(sessions) as session:
        return await retention.purge(session, policy=policy, now=now, dry_run=dry_run)


async def _snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    async with sessions() as session:
        connection = await session.connection()
        return {
            table.name: sorted(
                repr(tuple(row)) for row in await connection.execute(sqlalchemy.select(table))
            )
            for table in SQLModel.metadata.sorted_tables
        }


async def _purges(sessions: async_sessionmaker[AsyncSession]) -> list[audit.AuditEntryView]:
    async with sessions() as session:
        return await audit.list_entries(session, action=retention.AUDIT_ACTION)


# --- the tests ---------------------------------------------------------------------------------


async def test_a_dry_run_reports_what_the_purge_then_does_and_changes_nothing(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _tell_story(fresh_sessions)
    before = await _snapshot(fresh_sessions)

    dry = await _purge(fresh_sessions, dry_run=True)

    assert dry.dry_run and dry.counts == EXPECTED
    assert await _snapshot(fresh_sessions) == before, "a dry run changed the database"
    assert await _purges(fresh_sessions) == [], "a dry run is not recorded"

    done = await _purge(fresh_sessions, dry_run=False)
    assert not done.dry_run and done.counts == dry.counts
    assert list(done.counts) == list(RECORD_TYPES)


async def test_what_is_past_its_period_goes_and_what_is_within_it_stays(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    story = await _tell_story(fresh_sessions)
    await _purge(fresh_sessions, dry_run=False)
    ids = story.ids

    async with fresh_sessions() as session:

        async def values(column: Any) -> set[Any]:
            return set((await session.exec(select(column))).all())

        assert await values(col(ProcessedActivity.key)) == {"new-activity"}
        assert await values(col(DeliveryAttempt.outbox_id)) == {2}
        assert await values(col(BotState.key)) == {"new-state"}
        assert await values(col(OutboxMessage.id)) == {
            ids["outbox"]["new-sent"],
            ids["outbox"]["old-pending"],
        }

        held = {row.id: row for row in (await session.exec(select(MirSession))).all()}
        assert len(held) == 3, "sessions stay: they count in the programme's figures"
        old = held[ids["mir_session"]["old"]]
        assert (old.went_well, old.to_change) == (None, None)
        assert (old.themes, old.attendees, old.rating) == ("Duplicate forms", 6, 4)
        edge = held[ids["mir_session"]["edge"]]
        assert edge.went_well == edge.to_change == "Sam was frank about the backlog"

        actions = {row.id: row for row in (await session.exec(select(MirAction))).all()}
        dropped = actions[ids["mir_action"]["old-dropped"]]
        assert (dropped.owner, dropped.status_reason, dropped.text) == (
            None,
            None,
            "Merge the two address fields",
        )
        assert actions[ids["mir_action"]["old-open"]].owner == "Sam Jones", "still being done"
        assert actions[ids["mir_action"]["edge-done"]].owner == "Sam Jones"

        ideas = {row.id: row for row in (await session.exec(select(Idea))).all()}
        assert len(ideas) == 3, "ideas stay, with their text and status"
        handed_over = ideas[ids["idea"]["old-closed"]]
        placeholder = await session.get(Person, handed_over.submitter_id)
        assert placeholder is not None and placeholder.id == await privacy.placeholder_id(session)
        assert (placeholder.name, placeholder.email, placeholder.aad_object_id) == (
            privacy.ERASED_NAME,
            None,
            None,
        )
        assert (handed_over.status, handed_over.title) == (
            "implemented",
            "Ask for the address once",
        )
        assert handed_over.form_id == f"erased:{handed_over.id}"
        assert ideas[ids["idea"]["edge-closed"]].submitter_id == ids["person"]["old-submitter"]
        assert ideas[ids["idea"]["old-open"]].submitter_id == ids["person"]["open-submitter"]
        supports = {
            row.id: row.person_id for row in (await session.exec(select(IdeaSupport))).all()
        }
        assert supports == {ids["support"]["edge-closed"]: ids["person"]["old-supporter"]}
        events = (await session.exec(select(IdeaEvent))).all()
        assert [event.actor_id for event in events] == [ids["person"]["triager"]]

        chats = set(
            (
                await session.exec(
                    select(ConversationReference.conversation_id).where(
                        col(ConversationReference.conversation_type) == "personal"
                    )
                )
            ).all()
        )
        assert chats == {ids["chat"][name] for name in ("open-submitter", "recent", "idle-roster")}
        channels = await session.exec(
            select(ConversationReference).where(
                col(ConversationReference.conversation_type) == "channel"
            )
        )
        assert len(channels.all()) == 1

        people = set((await session.exec(select(Person.id))).all())
        person = ids["person"]
        assert person["lone"] not in people
        # Still linked to the idea within its period (as its submitter and a supporter).
        assert {person["old-submitter"], person["old-supporter"]} <= people
        assert {person["open-submitter"], person["triager"], person["recent"]} <= people
        assert person["idle-roster"] in people, "the roster's people are never purged"

        actions_left = set((await session.exec(select(AuditEntry.action))).all())
        assert "test.kept" in actions_left and "test.old" not in actions_left


async def test_people_whose_last_links_went_are_deleted_by_the_same_purge(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A staff member whose only idea (and support) passed its period is unlinked from it,
    then, with nothing left referring to them, deleted: in one purge, not the next."""
    story = await _tell_story(fresh_sessions)
    # Move the second closed idea past its period too: both submitter and supporter are free.
    async with transaction(fresh_sessions) as session:
        idea = await session.get(Idea, story.ids["idea"]["edge-closed"])
        assert idea is not None
        idea.status_changed_at = datetime(2024, 11, 29, 3, 29, tzinfo=UTC)
        session.add(idea)

    report = await _purge(fresh_sessions, dry_run=False)

    assert (report.counts["idea_submitter"], report.counts["idea_support"]) == (2, 2)
    assert report.counts["person"] == 3
    async with fresh_sessions() as session:
        people = set((await session.exec(select(Person.id))).all())
    assert story.ids["person"]["old-submitter"] not in people
    assert story.ids["person"]["old-supporter"] not in people
    assert story.ids["person"]["triager"] in people


async def test_every_purge_is_in_the_audit_trail_and_a_second_finds_nothing(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _tell_story(fresh_sessions)
    first = await _purge(fresh_sessions, dry_run=False)
    second = await _purge(fresh_sessions, dry_run=False)

    assert second.counts == dict.fromkeys(RECORD_TYPES, 0)
    entries = await _purges(fresh_sessions)
    assert [entry.detail for entry in entries] == [second.counts, first.counts]
    assert {(entry.actor, entry.actor_id, entry.subject) for entry in entries} == {
        ("system", None, None)
    }
    assert entries[1].at == NOW
    assert "Sam" not in repr(entries), "the trail holds counts, no personal data"


async def test_the_report_reads_per_record_type(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _tell_story(fresh_sessions)
    lines = (await _purge(fresh_sessions, dry_run=True)).lines()
    assert lines[0].startswith("Dry run, nothing was changed")
    assert "      2  sent or failed outbox messages deleted" in lines
    assert lines[-1] == f"{sum(EXPECTED.values()):>7}  in all"
    assert len(lines) == len(RECORD_TYPES) + 2


async def test_ideas_go_to_the_same_placeholder_as_erasures_and_it_is_never_purged(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Consistent with an erasure (storage/privacy.py): an idea past its period is left as an
    erased person's idea is, with the one shared placeholder; an idea an erasure handed over
    already is not counted again; the placeholder itself is not idle staff to delete, even a
    year after it was made with nothing pointing at it."""
    story = await _tell_story(fresh_sessions)
    async with transaction(fresh_sessions) as session:
        # An erasure a year and a half ago made the placeholder and handed it an open idea.
        made = await privacy.erased_person_id(session, now=NOW - timedelta(days=550))
        idea = await session.get(Idea, story.ids["idea"]["old-open"])
        assert idea is not None
        idea.submitter_id = made
        session.add(idea)

    report = await _purge(fresh_sessions, dry_run=False)

    assert report.counts["idea_submitter"] == 1
    async with fresh_sessions() as session:
        assert await privacy.placeholder_id(session) == made
        assert await session.get(Person, made) is not None
        submitters = {row.id: row.submitter_id for row in (await session.exec(select(Idea))).all()}
    assert submitters[story.ids["idea"]["old-closed"]] == made
    assert submitters[story.ids["idea"]["old-open"]] == made

    # With nothing left pointing at it, the placeholder still stays.
    async with transaction(fresh_sessions) as session:
        for idea_id in (story.ids["idea"]["old-closed"], story.ids["idea"]["old-open"]):
            idea = await session.get(Idea, idea_id)
            assert idea is not None
            idea.submitter_id = story.ids["person"]["idle-roster"]
            session.add(idea)
    # (Ideas kept linked for longer, so that none is handed to the placeholder again.)
    later = await _purge(
        fresh_sessions,
        dry_run=False,
        now=NOW + timedelta(days=400),
        policy=dataclasses.replace(POLICY, idea_people_years=50),
    )
    assert later.counts["idea_submitter"] == 0
    assert later.counts["person"] >= 1, "others idle by then are purged"
    async with fresh_sessions() as session:
        assert await session.get(Person, made) is not None
