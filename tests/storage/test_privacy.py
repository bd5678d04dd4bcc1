"""Subject access and erasure: the export finds everything held about a person, anonymous
ideas included and marked; the erasure leaves no trace of them in any column of any table,
keeps their ideas and the figures of the sessions they held, leaves an audit entry, and a
second erasure changes nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import ideas, privacy
from storage.db import transaction
from storage.models import (
    AuditEntry,
    BotState,
    ConversationReference,
    IdeaEvent,
    IdeaSupport,
    MirAction,
    MirSession,
    OutboxMessage,
    Person,
    ProjectUpdate,
    Setting,
    utcnow,
)
from tests.support.ideas import idea_about
from tests.support.people import add_person
from tests.support.personal_data import Seeded, seed_person_everywhere, traces


@pytest.fixture
async def seeded(sessions: async_sessionmaker[AsyncSession]) -> Seeded:
    return await seed_person_everywhere(sessions)


async def _export(sessions: async_sessionmaker[AsyncSession], email: str) -> dict[str, object]:
    async with transaction(sessions) as session:
        return await privacy.export_person(session, email)


async def _erase(sessions: async_sessionmaker[AsyncSession], email: str) -> privacy.ErasureReport:
    async with transaction(sessions) as session:
        return await privacy.erase_person(session, email, now=utcnow())


# --- export ---------------------------------------------------------------------------------


async def test_the_export_holds_everything_about_them_whatever_the_emails_case(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    export = await _export(sessions, f"  {seeded.email.upper()} ")
    json.dumps(export)  # ready to write as it is

    person = export["person"]
    assert isinstance(person, dict)
    assert person["id"] == seeded.person_id
    assert (person["name"], person["email"]) == (seeded.name, seeded.email)
    assert (person["aad_object_id"], person["teams_id"]) == (
        seeded.aad_object_id,
        seeded.teams_id,
    )
    assert person["service_area"] == "Planning"
    assert export["roles"] == ["change_maker", "admin"]
    assert export["leads_person_ids"] == [seeded.led_id]

    by_id = {idea["id"]: idea for idea in export["ideas"]}  # type: ignore[attr-defined]
    assert set(by_id) == {seeded.idea_id, seeded.anonymous_idea_id}
    assert by_id[seeded.anonymous_idea_id]["anonymous"] is True
    assert by_id[seeded.idea_id]["anonymous"] is False
    assert by_id[seeded.anonymous_idea_id]["reference"] == ideas.reference(seeded.anonymous_idea_id)
    assert [s["idea"] for s in export["supports"]] == [  # type: ignore[attr-defined]
        ideas.reference(seeded.colleague_idea_id)
    ]
    (event,) = export["idea_events"]  # type: ignore[misc]
    assert event["idea"] == ideas.reference(seeded.colleague_idea_id)
    assert (event["to_status"], event["reason"]) == (
        "under_review",
        "Looking at it with the post room.",
    )

    sessions_held = {s["id"]: s for s in export["mir_sessions"]}  # type: ignore[attr-defined]
    assert set(sessions_held) == {seeded.held_session_id, seeded.scheduled_session_id}
    held = sessions_held[seeded.held_session_id]
    assert (held["status"], held["attendees"], held["rating"]) == ("held", 8, 4)
    assert held["went_well"].startswith(seeded.name)
    actions = export["mir_actions"]
    assert [a["text"] for a in actions] == ["Scan the post", "Share the rota"]  # type: ignore[attr-defined]
    assert actions[1]["status_reason"] == "Priya's team does it already"  # type: ignore[index]

    (posted,) = export["project_updates"]  # type: ignore[misc]
    assert (posted["author"], posted["text"]) == (seeded.name, "Going well.")
    (subscription,) = export["digest_subscriptions_made"]  # type: ignore[misc]
    assert subscription["conversation_id"] == seeded.channel_conversation
    references = {r["conversation_id"] for r in export["conversation_references"]}  # type: ignore[attr-defined]
    assert references == {seeded.personal_conversation}
    state_keys = {s["key"] for s in export["dialog_state"]}  # type: ignore[attr-defined]
    assert state_keys == {
        f"msteams/conversations/{seeded.personal_conversation}",
        f"msteams/users/{seeded.teams_id}",
        f"msteams/conversations/{seeded.channel_conversation};messageid=1",
    }
    keys = {m["dedupe_key"] for m in export["outbox_messages"]}  # type: ignore[attr-defined]
    assert seeded.other_message_key not in keys
    assert len(keys) == 2  # the reminder to them, and the channel card naming them
    actions_audited = {e["action"] for e in export["audit_entries"]}  # type: ignore[attr-defined]
    assert {"idea.status", "mir_session.status", "mir_action.status"} <= actions_audited


async def test_the_export_is_recorded_in_the_audit_trail_without_them(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    await _export(sessions, seeded.email)
    async with sessions() as session:
        entry = (
            await session.exec(
                select(AuditEntry).where(
                    AuditEntry.action == "privacy.export",
                    AuditEntry.subject == f"person:{seeded.person_id}",
                )
            )
        ).one()
    assert entry.actor == "cli"
    assert entry.detail["ideas"] == 2
    assert all(isinstance(count, int) for count in entry.detail.values())


async def test_nobody_held_under_the_email_is_a_clear_error(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(privacy.PersonNotFound, match="no one with the email"):
        await _export(sessions, "nobody.at.all@cambridge.gov.uk")
    with pytest.raises(privacy.PersonNotFound):
        await _export(sessions, "   ")


# --- erasure --------------------------------------------------------------------------------


async def test_erasure_leaves_no_trace_of_them_in_any_column_of_any_table(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, seeded: Seeded
) -> None:
    assert await traces(engine, seeded.identifying)  # the scan finds them before

    report = await _erase(sessions, seeded.email.upper())

    assert report.found and report.person_id == seeded.person_id
    assert await traces(engine, seeded.identifying) == []
    # Nor of their 1:1 chat: its state, messages, rate-limit log and processed activities.
    assert await traces(engine, (seeded.personal_conversation,)) == []
    assert report.counts["other_actions_owner_cleared"] == 1
    async with sessions() as session:
        assert await session.get(Person, seeded.person_id) is None


async def test_erasure_keeps_their_ideas_without_them_and_anonymity_as_it_was(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    await _erase(sessions, seeded.email)
    async with sessions() as session:
        kept = await ideas.get_idea(session, idea_id=seeded.idea_id)
        anonymous = await ideas.get_idea(session, idea_id=seeded.anonymous_idea_id)
        colleague_idea = await ideas.get_idea(session, idea_id=seeded.colleague_idea_id)
        colleagues = await ideas.my_ideas(session, submitter_id=seeded.colleague_id)
        history = await ideas.history(session, idea_id=seeded.colleague_idea_id)
        supports = (
            await session.exec(
                select(IdeaSupport.idea_id, IdeaSupport.person_id).where(
                    col(IdeaSupport.idea_id).in_([seeded.idea_id, seeded.colleague_idea_id])
                )
            )
        ).all()
    assert kept.title.startswith("Scan post") and kept.submitted_by == privacy.ERASED_NAME
    assert anonymous.submitted_by is None  # still anonymous
    # The colleague's own view is untouched; their support of the erased person's idea
    # stays, the erased person's support of theirs goes.
    assert [idea.id for idea in colleagues] == [seeded.colleague_idea_id]
    assert supports == [(seeded.idea_id, seeded.colleague_id)]
    assert (kept.supporters, colleague_idea.supporters) == (1, 0)
    # The status change they made stays, with its reason, made by nobody nameable.
    assert colleague_idea.status == "under_review"
    assert history[-1].reason == "Looking at it with the post room."
    assert colleague_idea.last_changed_by == privacy.ERASED_NAME


async def test_erasure_keeps_the_figures_of_held_sessions_and_drops_their_notes(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    await _erase(sessions, seeded.email)
    async with sessions() as session:
        held = await session.get(MirSession, seeded.held_session_id)
        scheduled = await session.get(MirSession, seeded.scheduled_session_id)
        actions = (
            await session.exec(
                select(MirAction)
                .where(MirAction.session_id == seeded.held_session_id)
                .order_by(col(MirAction.position))
            )
        ).all()
        placeholder = await session.get(Person, held.change_maker_id if held else 0)
        led = await session.get(Person, seeded.led_id)
    assert held is not None and placeholder is not None
    assert (held.status, held.attendees, held.rating, held.themes, held.team) == (
        "held",
        8,
        4,
        "post, scanning",
        "Planning back office",
    )
    assert (held.went_well, held.to_change) == (None, None)
    assert scheduled is None  # a plan of theirs that never happened
    assert placeholder.name == privacy.ERASED_NAME
    assert (placeholder.email, placeholder.aad_object_id, placeholder.teams_id) == (
        None,
        None,
        None,
    )
    assert not placeholder.in_roster and placeholder.roles == []
    assert [(a.text, a.status, a.owner, a.status_reason) for a in actions] == [
        ("Scan the post", "open", None, None),
        ("Share the rota", "dropped", None, None),
    ]
    assert {a.change_maker_id for a in actions} == {placeholder.id}
    assert led is not None and led.leader_id is None


async def test_erasure_forgets_where_the_bot_reached_them_and_what_it_was_sending(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    report = await _erase(sessions, seeded.email)
    async with sessions() as session:
        references = {
            r.conversation_id: r
            for r in (
                await session.exec(
                    select(ConversationReference).where(
                        col(ConversationReference.conversation_id).in_(
                            [seeded.personal_conversation, seeded.channel_conversation]
                        )
                    )
                )
            ).all()
        }
        messages = (
            await session.exec(
                select(OutboxMessage.dedupe_key).where(
                    OutboxMessage.conversation_id.in_(  # type: ignore[attr-defined]
                        [seeded.personal_conversation, seeded.channel_conversation]
                    )
                )
            )
        ).all()
        updates = (
            await session.exec(
                select(ProjectUpdate).where(ProjectUpdate.author == privacy.ERASED_NAME)
            )
        ).all()
    # Their 1:1 chat is gone; the channel stays (it gets its posts) without its last sender.
    assert list(references) == [seeded.channel_conversation]
    assert references[seeded.channel_conversation].reference["user"] is None
    assert messages == [seeded.other_message_key]
    assert any(u.text == "Going well." and u.author_aad_id is None for u in updates)
    assert report.counts["conversation_references_removed"] == 1
    assert report.counts["conversation_references_scrubbed"] == 1
    assert report.counts["outbox_messages_removed"] == 2
    assert report.counts["state_documents_removed"] == 3
    assert report.counts["supports_removed"] == 1


async def test_erasure_is_audited_with_counts_only_and_a_second_one_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, seeded: Seeded
) -> None:
    first = await _erase(sessions, seeded.email)
    second = await _erase(sessions, seeded.email)

    assert not second.found and second.counts == {}
    assert second.lines() == ["Nothing is held about that email: nothing to erase."]
    async with sessions() as session:
        entries = (
            await session.exec(
                select(AuditEntry).where(AuditEntry.subject == f"person:{seeded.person_id}")
            )
        ).all()
    erasures = [e for e in entries if e.action == "privacy.erase"]
    assert len(erasures) == 1
    (erasure,) = erasures
    assert erasure.actor == "cli" and erasure.detail == first.counts
    assert all(isinstance(count, int) for count in erasure.detail.values())
    assert erasure.detail["ideas_kept_without_submitter"] == 2
    assert erasure.detail["held_sessions_kept_without_notes"] == 1
    assert erasure.detail["sessions_not_held_removed"] == 1
    # The audit trail names nobody: it needs no erasing itself.
    assert await traces(engine, seeded.identifying) == []


async def test_the_plan_of_an_erasure_counts_what_it_would_do_and_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    async with sessions() as session:
        plan = await privacy.plan_erasure(session, seeded.email, now=utcnow())
    async with sessions() as session:
        assert await session.get(Person, seeded.person_id) is not None
        planned = (
            await session.exec(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.subject == f"person:{seeded.person_id}")
            )
        ).one()
    assert planned == 0
    report = await _erase(sessions, seeded.email)
    assert plan.counts == report.counts and plan.person_id == report.person_id


async def test_erasing_everyone_who_shared_a_form_keeps_all_their_ideas(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Two people filling in one form card in a group chat submit under the same form id;
    # both erased, both ideas stay with the one placeholder.
    form_id = uuid.uuid4().hex
    emails = [f"sharer.{uuid.uuid4().hex[:8]}@cambridge.gov.uk" for _ in range(2)]
    idea_ids = []
    for email in emails:
        person_id = await add_person(sessions, "Sharer", role=None, email=email)
        async with transaction(sessions) as session:
            view, _ = await ideas.submit_idea(
                session,
                submitter_id=person_id,
                submission=idea_about("Shared form"),
                form_id=form_id,
            )
            idea_ids.append(view.id)
    for email in emails:
        assert (await _erase(sessions, email)).counts["ideas_kept_without_submitter"] == 1
    async with sessions() as session:
        kept = [await ideas.get_idea(session, idea_id=idea_id) for idea_id in idea_ids]
        events = (
            await session.exec(
                select(func.count())
                .select_from(IdeaEvent)
                .where(col(IdeaEvent.idea_id).in_(idea_ids))
            )
        ).one()
    assert [idea.submitted_by for idea in kept] == [privacy.ERASED_NAME] * 2
    assert events == 2


async def test_the_placeholder_is_one_row_nobody_can_be_found_as(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await add_person(sessions, "First", email=f"f.{uuid.uuid4().hex[:8]}@x.gov.uk")
    second = await add_person(sessions, "Second", email=f"s.{uuid.uuid4().hex[:8]}@x.gov.uk")
    async with sessions() as session:
        emails = [(await session.get(Person, pid)).email for pid in (first, second)]  # type: ignore[union-attr]
    for email in emails:
        assert email is not None
        await _erase(sessions, email)
    async with sessions() as session:
        placeholders = (
            await session.exec(select(Person).where(Person.name == privacy.ERASED_NAME))
        ).all()
    assert len(placeholders) == 1
    (placeholder,) = placeholders
    assert placeholder.email is None and placeholder.teams_id is None
    assert not placeholder.reminders_enabled


async def test_a_setting_they_chose_stays_without_them(
    fresh_sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = f"admin.{uuid.uuid4().hex[:8]}@cambridge.gov.uk"
    admin = await add_person(fresh_sessions, "Triage Admin", role="admin", email=email)
    async with transaction(fresh_sessions) as session:
        await ideas.set_triage_channel(session, conversation_id="19:triage", set_by=admin)
    await _erase(fresh_sessions, email)
    async with fresh_sessions() as session:
        assert await ideas.get_triage_channel(session) == "19:triage"
        setting = await session.get(Setting, ideas.TRIAGE_CHANNEL)
    assert setting is not None and setting.value == {
        "conversation_id": "19:triage",
        "set_by": None,
    }


async def test_a_name_is_matched_as_whole_words_and_a_namesakes_records_stay(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    unique = uuid.uuid4().hex[:8]
    name = f"Zoë Ådams {unique}"
    email = f"zoe.{unique}@cambridge.gov.uk"
    await add_person(sessions, name, email=email)
    namesake_id = await add_person(sessions, name, email=f"zoe.other.{unique}@x.gov.uk")
    async with transaction(sessions) as session:
        session.add_all(
            [
                # Names them: theirs to erase.
                BotState(key=f"k-{unique}-1", document=json.dumps({"who": name}), etag="1"),
                # Only contains the name inside a longer word: someone else's.
                BotState(key=f"k-{unique}-2", document=json.dumps({"who": name + "x"}), etag="2"),
                # A namesake's project update, with the namesake's own Azure AD object id.
                ProjectUpdate(
                    project_id=1,
                    month=utcnow().date().replace(year=2018, day=1),
                    text="The namesake's update.",
                    author=name,
                    author_aad_id=f"aad-namesake-{unique}",
                    source=f"teams-form:namesake-{unique}",
                ),
            ]
        )
    # Someone else's action naming them as its owner, in capitals (not ASCII: SQLite's
    # lower() would not fold it).
    async with transaction(sessions) as session:
        held = MirSession(
            change_maker_id=namesake_id,
            status="held",
            session_date=utcnow().date(),
            team="Elsewhere",
            attendees=3,
            rating=3,
            logged_at=utcnow(),
        )
        session.add(held)
        await session.flush()
        session.add(
            MirAction(
                session_id=held.id or 0,
                change_maker_id=namesake_id,
                text="Ask about the van",
                owner=name.upper(),
            )
        )

    report = await _erase(sessions, email)

    async with sessions() as session:
        keys = set(
            (
                await session.exec(
                    select(BotState.key).where(col(BotState.key).startswith(f"k-{unique}-"))
                )
            ).all()
        )
        update = (
            await session.exec(
                select(ProjectUpdate).where(ProjectUpdate.source == f"teams-form:namesake-{unique}")
            )
        ).one()
        owners = (
            await session.exec(select(MirAction.owner).where(MirAction.session_id == held.id))
        ).all()
    assert keys == {f"k-{unique}-2"}
    assert (update.author, update.author_aad_id) == (name, f"aad-namesake-{unique}")
    assert report.counts["project_updates_kept_without_author"] == 0
    assert owners == [None] and report.counts["other_actions_owner_cleared"] == 1
