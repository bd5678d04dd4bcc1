"""One person's data in every place the bot keeps personal data, for the privacy tests
(tests/storage/test_privacy.py, tests/bot/test_privacy_cli.py), and `traces`, which finds a
value in any column of any table.

What is made goes through the storage functions the bot itself uses wherever there is one
(ideas, supports, a status change, sessions, an action dropped, a project update, a
subscription), so their audit entries are written as in use; the rest (conversation
references, dialog state, outbox messages, the rate-limit log, handled activities) is
written as the bot writes it. Every value is unique to the call, so a database shared with
other tests holds no other trace of this person.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import ideas, mir, programme, subscriptions
from storage.activities import activity_key
from storage.db import transaction
from storage.models import (
    BotState,
    ConversationReference,
    DeliveryAttempt,
    MirAction,
    OutboxMessage,
    Person,
    ProcessedActivity,
    utcnow,
)
from tests.support import log_scan
from tests.support.ideas import idea_about
from tests.support.people import add_person

TENANT_ID = "72f988bf-0000-4000-8000-00000000cafe"
SERVICE_URL = "https://smba.trafficmanager.net/uk/"


@dataclass(frozen=True)
class Seeded:
    """Ids and values of what `seed_person_everywhere` made."""

    person_id: int
    name: str
    email: str
    aad_object_id: str
    teams_id: str
    led_id: int  # a Change Maker they lead, with an action naming them as its owner
    colleague_id: int  # staff who support their idea, and whose idea they support
    idea_id: int
    anonymous_idea_id: int
    colleague_idea_id: int  # they moved it to under review, with a reason
    held_session_id: int
    scheduled_session_id: int
    personal_conversation: str
    channel_conversation: str  # they subscribed it; its reference names them as last sender
    other_message_key: str  # an outbox message in the channel that does not name them

    @property
    def identifying(self) -> tuple[str, ...]:
        """The values that identify them wherever they are stored."""
        return (self.name, self.email, self.aad_object_id, self.teams_id)


async def seed_person_everywhere(sessions: async_sessionmaker[AsyncSession]) -> Seeded:
    unique = uuid.uuid4().hex[:10]
    name = f"Elowen Tremayne-{unique}"
    email = f"elowen.{unique}@cambridge.gov.uk"
    aad_object_id = str(uuid.uuid4())
    teams_id = f"29:{unique}-teams"
    personal = f"a:personal-{unique}"
    channel = f"19:privacy-{unique}@thread.tacv2"
    log_scan.note_user(name, email)
    today = utcnow().date()

    async with transaction(sessions) as session:
        person = Person(
            name=name,
            email=email,
            aad_object_id=aad_object_id,
            teams_id=teams_id,
            roles=["change_maker", "admin"],
            service_area="Planning",
            in_roster=True,
        )
        session.add(person)
        await session.flush()
        person_id = person.id or 0
    led_id = await add_person(sessions, f"Led Change Maker {unique}", leader_id=person_id)
    colleague_id = await add_person(sessions, f"Colleague {unique}", role=None)

    async with transaction(sessions) as session:
        # Ideas: one in their name, one anonymous, and a colleague's.
        idea, _ = await ideas.submit_idea(
            session,
            submitter_id=person_id,
            submission=idea_about(f"Scan post on arrival {unique}"),
            form_id=f"form-{unique}-1",
        )
        anonymous, _ = await ideas.submit_idea(
            session,
            submitter_id=person_id,
            submission=idea_about(f"Quiet room bookings {unique}", anonymous=True),
            form_id=f"form-{unique}-2",
        )
        colleague_idea, _ = await ideas.submit_idea(
            session,
            submitter_id=colleague_id,
            submission=idea_about(f"Shared van rota {unique}"),
            form_id=f"form-{unique}-3",
        )
        await ideas.support_idea(session, idea_id=idea.id, person_id=colleague_id)
        await ideas.support_idea(session, idea_id=colleague_idea.id, person_id=person_id)
        await ideas.change_status(
            session,
            idea_id=colleague_idea.id,
            to_status="under_review",
            actor_id=person_id,
            reason="Looking at it with the post room.",
        )

        # Making It Real: a session in the diary, and one held with two actions.
        scheduled, _ = await mir.schedule_session(
            session,
            change_maker_id=person_id,
            submission=mir.ScheduleSubmission(
                session_date=today + timedelta(days=7),
                start_time=time(10, 0),
                team="Planning front desk",
                expected_attendees=6,
            ),
            form_id=f"schedule-{unique}",
        )
        held, actions, _ = await mir.log_session(
            session,
            change_maker_id=person_id,
            submission=mir.LogSubmission(
                scheduled_session_id=None,
                held_on=today - timedelta(days=3),
                team="Planning back office",
                attendees=8,
                themes="post, scanning",
                changes=("Scan the post", "Share the rota"),
                went_well=f"{name} kept it short and everyone spoke.",
                to_change="Book a bigger room.",
                rating=4,
            ),
            form_id=f"log-{unique}",
        )
        await session.exec(
            update(MirAction).where(MirAction.id == actions[0].id).values(owner=name)  # type: ignore[arg-type]
        )
        await mir.set_action_status(
            session,
            action_id=actions[1].id,
            change_maker_id=person_id,
            status="dropped",
            reason="Priya's team does it already",
            today=today,
        )
        # The Change Maker they lead agreed an action with them as its owner.
        _, led_actions, _ = await mir.log_session(
            session,
            change_maker_id=led_id,
            submission=mir.LogSubmission(
                scheduled_session_id=None,
                held_on=today - timedelta(days=2),
                team="Housing repairs",
                attendees=5,
                themes="vans",
                changes=("Borrow the van on Fridays",),
                went_well=None,
                to_change=None,
                rating=3,
            ),
            form_id=f"log-led-{unique}",
        )
        await session.exec(
            update(MirAction).where(MirAction.id == led_actions[0].id).values(owner=name)  # type: ignore[arg-type]
        )

        # A project update they posted from Teams, for a month long past (so no project's
        # current status changes for the other tests sharing the database).
        await programme.add_update(
            session,
            slug="making-it-real",
            month=date(2019, 1, 1),
            text="Going well.",
            rag="green",
            author=name,
            author_aad_id=aad_object_id,
            source=f"teams-form:{unique}",
        )
        # A channel they subscribed to the digest.
        await subscriptions.subscribe(
            session,
            conversation_id=channel,
            team_id=f"19:team-{unique}@thread.tacv2",
            person_id=person_id,
            now=utcnow(),
        )

    async with transaction(sessions) as session:
        account = {"id": teams_id, "name": name, "aadObjectId": aad_object_id}
        bot_account = {"id": "28:ourcambridge-bot", "name": "Our Cambridge"}
        session.add_all(
            [
                ConversationReference(
                    conversation_id=personal,
                    conversation_type="personal",
                    tenant_id=TENANT_ID,
                    service_url=SERVICE_URL,
                    person_id=person_id,
                    reference=_reference(personal, "personal", account, bot_account),
                ),
                # A channel's reference is made from whoever spoke there last: them.
                ConversationReference(
                    conversation_id=channel,
                    conversation_type="channel",
                    tenant_id=TENANT_ID,
                    service_url=SERVICE_URL,
                    team_id=f"19:team-{unique}@thread.tacv2",
                    channel_id=channel,
                    reference=_reference(channel, "channel", account, bot_account),
                ),
                BotState(
                    key=f"msteams/conversations/{personal}",
                    document=json.dumps({"DialogState": {"dialogStack": []}}),
                    etag=uuid.uuid4().hex,
                ),
                BotState(
                    key=f"msteams/users/{teams_id}",
                    document=json.dumps({"seen": True}),
                    etag=uuid.uuid4().hex,
                ),
                # A reply thread's form in progress that holds their name.
                BotState(
                    key=f"msteams/conversations/{channel};messageid=1",
                    document=json.dumps({"DialogState": {"owner": name}}),
                    etag=uuid.uuid4().hex,
                ),
            ]
        )
        reminder = OutboxMessage(
            dedupe_key=f"reminder:{unique}",
            conversation_id=personal,
            payload={"type": "message", "text": "Your session is on Monday."},
            status="sent",
            attempts=1,
            sent_at=utcnow(),
        )
        naming = OutboxMessage(
            dedupe_key=f"card:{unique}",
            conversation_id=channel,
            payload={"type": "message", "text": f"Thanks to {name} for the session."},
        )
        other_key = f"digest:{unique}"
        other = OutboxMessage(
            dedupe_key=other_key,
            conversation_id=channel,
            payload={"type": "message", "text": "This week in Our Cambridge."},
        )
        session.add_all([reminder, naming, other])
        await session.flush()
        session.add_all(
            [
                DeliveryAttempt(outbox_id=reminder.id or 0, attempt=1, conversation_id=personal),
                ProcessedActivity(
                    key=activity_key(
                        channel_id="msteams", conversation_id=personal, activity_id=f"act-{unique}"
                    )
                ),
            ]
        )

    return Seeded(
        person_id=person_id,
        name=name,
        email=email,
        aad_object_id=aad_object_id,
        teams_id=teams_id,
        led_id=led_id,
        colleague_id=colleague_id,
        idea_id=idea.id,
        anonymous_idea_id=anonymous.id,
        colleague_idea_id=colleague_idea.id,
        held_session_id=held.id,
        scheduled_session_id=scheduled.id,
        personal_conversation=personal,
        channel_conversation=channel,
        other_message_key=other_key,
    )


def _reference(
    conversation_id: str, kind: str, user: dict[str, str], bot: dict[str, str]
) -> dict[str, Any]:
    """A conversation reference as the bot stores it (botbuilder's, serialised)."""
    return {
        "activityId": None,
        "user": user,
        "bot": bot,
        "conversation": {"id": conversation_id, "conversationType": kind, "tenantId": TENANT_ID},
        "channelId": "msteams",
        "locale": "en-GB",
        "serviceUrl": SERVICE_URL,
    }


async def traces(engine: AsyncEngine, values: tuple[str, ...]) -> list[str]:
    """Where any of `values` appears (whatever its case) in any column of any table, as
    "table.column"; an empty list when nowhere."""
    needles = [value.casefold() for value in values if value]
    found: list[str] = []
    async with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await connection.execute(select(table))).mappings().all()
            for row in rows:
                for column, value in row.items():
                    if value is None:
                        continue
                    text = (
                        json.dumps(value, ensure_ascii=False)
                        if isinstance(value, dict | list)
                        else str(value)
                    ).casefold()
                    if any(needle in text for needle in needles):
                        found.append(f"{table.name}.{column}")
    return found
