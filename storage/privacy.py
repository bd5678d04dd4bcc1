"""Subject access and erasure: everything the bot holds about one person, found by email.

`export_person` gathers it as JSON (`ourcambridge privacy export`); `erase_person` removes it
(`ourcambridge privacy erase`). Both leave an entry in the audit trail (privacy.export,
privacy.erase) naming the person by id only, with counts.

Erasure policy
--------------
The programme keeps what staff gave it (ideas, the figures of sessions that were held) and
forgets who gave it. An erasure, in one transaction:

Removed
- The person's row: name, email, Azure AD object id, Teams id, service area, roles and
  leader. Nothing points at it any more, so it is deleted, not blanked: asked again, the
  bot holds nothing under that email and the second erasure changes nothing.
- Their supports of ideas (the ideas' support counts go down by theirs).
- Their conversation references (the 1:1 chat, and any other conversation stored as theirs),
  the bot's dialog and user state of those conversations and of their Teams account (and any
  state document that names them), the outbox messages addressed to their conversations
  (pending, sent or failed) or whose content names them (a pending card naming them is not
  sent), and the rate-limit log and processed-activity keys of their conversations. Where
  a channel's stored reference names them as its last sender, that sender is cleared and the
  reference kept, so the channel still gets its posts.
- Sessions they had scheduled or cancelled (a plan that never happened, with nothing agreed).

Kept, without the person
- Their ideas, text and status and history included, anonymous or not, with the anonymous
  flag as it was. The submitter becomes the one shared "Erased person" row (a placeholder
  with no email or Teams identity, which nobody can sign in as), so every foreign key stays
  valid, other people's `my ideas` are unchanged and no two erased people's ideas can be
  linked to each other. The idea's one-off form id is replaced, since it was theirs.
- Sessions they held: date, team, attendee counts, rating and themes stay, so the
  programme's figures do not change (they count under "No service area" from then on). What
  went well and what to change are removed: free text, written by them about named teams,
  that could identify people.
- The follow-up actions agreed at those sessions: their text and status stay (a team agreed
  them, and one may have become an idea); the owner's name and a reason for dropping one are
  removed. An action of anyone else naming them as its owner loses that name.
- Status changes they made to ideas, with the reason they gave (it explains the decision to
  the submitter and supporters); they show as made by "Erased person".
- Project updates they posted: the text stays (it is the project's record); the author
  becomes "Erased person" and their Azure AD object id is removed.
- Digest subscriptions they made (the channel's, not theirs) and settings they chose (the
  triage channel) lose who made them; people they led lose their leader (the next roster
  import sets a new one).
- The audit trail: it holds ids and counts only, so entries of their actions stay, naming a
  person id that no longer exists.

Not covered: names typed by anyone into the text of ideas, actions or updates (search and
edit by hand if a request asks for it); the programme's published data, such as a project
lead's name in storage/data/programme.yaml (edit the file and run `ourcambridge seed`); the
roster CSV file (remove the row, or the next import adds them back); messages already
delivered to Teams (held by Microsoft 365 under the council's own retention); database
backups, which age out on their own schedule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit
from storage.db import PRIVACY_LOCK, hold_transaction_lock
from storage.ideas import reference
from storage.models import (
    AuditEntry,
    BotState,
    ConversationReference,
    DeliveryAttempt,
    DigestSubscription,
    Idea,
    IdeaEvent,
    IdeaSupport,
    MirAction,
    MirSession,
    OutboxMessage,
    Person,
    ProcessedActivity,
    ProjectUpdate,
    Setting,
    utcnow,
)

# The one person row that erased people's ideas, held sessions, actions and idea events point
# at. Found through the setting below, never by name: anyone may call themselves this.
ERASED_NAME = "Erased person"
ERASED_PERSON_SETTING = "erased_person"

# Names shorter than this are not searched for in free-form documents (state, outbox
# payloads): "Al" would match half of them. Emails and account ids always are.
MIN_NAME_LENGTH = 4


class PersonNotFound(LookupError):
    """No one with this email is held (never was, or was erased)."""

    def __init__(self, email: str) -> None:
        super().__init__(f"no one with the email {email!r} is held")
        self.email = email


@dataclass
class ErasureReport:
    """What an erasure removed or anonymised; all zero and `person_id` None when nobody with
    the email was held."""

    person_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.person_id is not None

    def add(self, what: str, count: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + count

    def lines(self) -> list[str]:
        if not self.found:
            return ["Nothing is held about that email: nothing to erase."]
        return [f"person:{self.person_id}"] + [
            f"  {what.replace('_', ' ')}: {count}" for what, count in self.counts.items()
        ]


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def find_person(session: AsyncSession, *, email: str) -> Person | None:
    """The person with this email, whatever its case: emails are stored lower-cased (by
    Python, as here), so the unique index finds it, alike on SQLite and PostgreSQL."""
    wanted = normalise_email(email)
    if not wanted:
        return None
    found = await session.exec(select(Person).where(Person.email == wanted))
    return found.first()


# --- export ---------------------------------------------------------------------------------


async def export_person(session: AsyncSession, email: str) -> dict[str, Any]:
    """Everything held about the person with this email, ready for json.dumps.

    Raises PersonNotFound. Adds a privacy.export audit entry to the session's transaction:
    the caller commits it.
    """
    person = await find_person(session, email=email)
    if person is None or person.id is None:
        raise PersonNotFound(email)
    person_id = person.id
    conversations = await _their_conversations(session, person)
    conversation_ids = [c.conversation_id for c in conversations]
    needles = _needles(person)

    leader = await session.get(Person, person.leader_id) if person.leader_id else None
    led = (await session.exec(select(Person.id).where(Person.leader_id == person_id))).all()
    sessions = (
        await session.exec(
            select(MirSession)
            .where(MirSession.change_maker_id == person_id)
            .order_by(col(MirSession.session_date), col(MirSession.id))
        )
    ).all()
    actions = (
        await session.exec(
            select(MirAction)
            .where(MirAction.change_maker_id == person_id)
            .order_by(col(MirAction.session_id), col(MirAction.position))
        )
    ).all()
    ideas = (
        await session.exec(
            select(Idea).where(Idea.submitter_id == person_id).order_by(col(Idea.id))
        )
    ).all()
    supports = (
        await session.exec(
            select(IdeaSupport, Idea)
            .join(Idea, col(Idea.id) == col(IdeaSupport.idea_id))
            .where(IdeaSupport.person_id == person_id)
            .order_by(col(IdeaSupport.id))
        )
    ).all()
    events = (
        await session.exec(
            select(IdeaEvent).where(IdeaEvent.actor_id == person_id).order_by(col(IdeaEvent.id))
        )
    ).all()
    updates = await _their_updates(session, person)
    subscriptions = (
        await session.exec(
            select(DigestSubscription)
            .where(DigestSubscription.subscribed_by == person_id)
            .order_by(col(DigestSubscription.id))
        )
    ).all()
    state = await _their_state(session, person, conversation_ids, needles)
    messages = await _their_messages(session, conversation_ids, needles)
    entries = (
        await session.exec(
            select(AuditEntry)
            .where(
                or_(
                    col(AuditEntry.actor_id) == person_id,
                    col(AuditEntry.subject) == f"person:{person_id}",
                )
            )
            .order_by(col(AuditEntry.at), col(AuditEntry.id))
        )
    ).all()

    export: dict[str, Any] = {
        "exported_at": _json(utcnow()),
        "person": _fields(
            person,
            "id",
            "name",
            "email",
            "aad_object_id",
            "teams_id",
            "service_area",
            "in_roster",
            "reminders_enabled",
            "directory_checked_at",
            "created_at",
            "updated_at",
        ),
        "roles": list(person.roles or []),
        "leader": {"id": leader.id, "name": leader.name} if leader is not None else None,
        "leads_person_ids": sorted(led_id for led_id in led if led_id is not None),
        "mir_sessions": [
            _fields(
                mir_session,
                "id",
                "status",
                "session_date",
                "start_time",
                "team",
                "expected_attendees",
                "attendees",
                "themes",
                "went_well",
                "to_change",
                "rating",
                "logged_at",
                "created_at",
                "updated_at",
            )
            for mir_session in sessions
        ],
        "mir_actions": [
            _fields(
                action,
                "id",
                "session_id",
                "text",
                "owner",
                "due_date",
                "status",
                "status_reason",
                "created_at",
                "updated_at",
            )
            for action in actions
        ],
        "ideas": [
            {"reference": reference(idea.id or 0)}
            | _fields(
                idea,
                "id",
                "title",
                "problem",
                "suggestion",
                "service_area",
                "principles",
                "benefits",
                "benefit_other",
                "anonymous",
                "status",
                "created_at",
                "status_changed_at",
            )
            for idea in ideas
        ],
        "supports": [
            {
                "idea": reference(idea.id or 0),
                "idea_title": idea.title,
                "at": _json(support.created_at),
            }
            for support, idea in supports
        ],
        "idea_events": [
            {"idea": reference(event.idea_id)}
            | _fields(event, "id", "from_status", "to_status", "reason", "at")
            for event in events
        ],
        "project_updates": [
            _fields(posted, "id", "project_id", "month", "text", "rag", "author", "created_at")
            for posted in updates
        ],
        "digest_subscriptions_made": [
            _fields(subscription, "id", "conversation_id", "active", "created_at")
            for subscription in subscriptions
        ],
        "conversation_references": [
            _fields(
                conversation,
                "conversation_id",
                "conversation_type",
                "tenant_id",
                "team_id",
                "channel_id",
                "service_url",
                "reference",
                "created_at",
                "updated_at",
            )
            for conversation in conversations
        ],
        "dialog_state": [
            {
                "key": row.key,
                "document": _document(row.document),
                "updated_at": _json(row.updated_at),
            }
            for row in state
        ],
        "outbox_messages": [
            _fields(
                message,
                "id",
                "dedupe_key",
                "conversation_id",
                "status",
                "payload",
                "created_at",
                "sent_at",
            )
            for message in messages
        ],
        "audit_entries": [
            _fields(entry, "id", "at", "action", "actor", "actor_id", "subject", "detail")
            for entry in entries
        ],
    }
    await audit.record(
        session,
        action="privacy.export",
        actor_id=None,
        actor="cli",
        subject=f"person:{person_id}",
        detail={
            key: len(value)
            for key, value in export.items()
            if isinstance(value, list) and key != "roles"
        },
    )
    return export


# --- erasure --------------------------------------------------------------------------------


async def erase_person(session: AsyncSession, email: str, *, now: datetime) -> ErasureReport:
    """Erase the person with this email under the policy above, in the caller's transaction
    (the caller commits). Nobody with the email: an empty report, and nothing is written."""
    # Before reading anything: a concurrent erasure may be creating the placeholder.
    await hold_transaction_lock(session, PRIVACY_LOCK)
    person = await find_person(session, email=email)
    report = ErasureReport()
    if person is None or person.id is None:
        return report
    person_id = person.id
    report.person_id = person_id
    conversations = await _their_conversations(session, person)
    conversation_ids = [c.conversation_id for c in conversations]
    needles = _needles(person)
    erased_id = await erased_person_id(session, now=now)

    # Ideas: kept, submitted by the placeholder; their form id was theirs.
    ideas = (await session.exec(select(Idea).where(Idea.submitter_id == person_id))).all()
    for idea in ideas:
        idea.submitter_id = erased_id
        idea.form_id = f"erased:{idea.id}"
        idea.updated_at = now
        session.add(idea)
    report.add("ideas_kept_without_submitter", len(ideas))
    report.add(
        "supports_removed",
        await _count(session, delete(IdeaSupport).where(col(IdeaSupport.person_id) == person_id)),
    )
    report.add(
        "idea_status_changes_kept_without_actor",
        await _count(
            session,
            update(IdeaEvent)
            .where(col(IdeaEvent.actor_id) == person_id)
            .values(actor_id=erased_id),
        ),
    )

    # Sessions: plans that never happened go; held ones keep their figures. (Actions are
    # agreed at held sessions only; a session with any is kept whatever its status.)
    await session.flush()
    with_actions = select(MirAction.session_id).where(col(MirAction.change_maker_id) == person_id)
    report.add(
        "sessions_not_held_removed",
        await _count(
            session,
            delete(MirSession).where(
                col(MirSession.change_maker_id) == person_id,
                col(MirSession.status) != "held",
                col(MirSession.id).not_in(with_actions),
            ),
        ),
    )
    report.add(
        "held_sessions_kept_without_notes",
        await _count(
            session,
            update(MirSession)
            .where(col(MirSession.change_maker_id) == person_id)
            .values(change_maker_id=erased_id, went_well=None, to_change=None, updated_at=now),
        ),
    )
    report.add(
        "actions_kept_without_owner",
        await _count(
            session,
            update(MirAction)
            .where(col(MirAction.change_maker_id) == person_id)
            .values(change_maker_id=erased_id, owner=None, status_reason=None, updated_at=now),
        ),
    )
    if person.name:
        # Compared here, not with SQL lower(): SQLite's folds ASCII letters only, so "Zoë"
        # would be missed there and found on PostgreSQL.
        wanted = person.name.strip().casefold()
        owned = (
            await session.exec(
                select(MirAction.id, MirAction.owner).where(col(MirAction.owner).is_not(None))
            )
        ).all()
        named = [id_ for id_, owner in owned if (owner or "").strip().casefold() == wanted]
        if named:
            await session.exec(
                update(MirAction)
                .where(col(MirAction.id).in_(named))
                .values(owner=None, updated_at=now)
            )
        report.add("other_actions_owner_cleared", len(named))

    updates = await _their_updates(session, person)
    for posted in updates:
        posted.author = ERASED_NAME
        posted.author_aad_id = None
        session.add(posted)
    report.add("project_updates_kept_without_author", len(updates))
    report.add(
        "subscriptions_unlinked",
        await _count(
            session,
            update(DigestSubscription)
            .where(col(DigestSubscription.subscribed_by) == person_id)
            .values(subscribed_by=None),
        ),
    )
    for setting in (await session.exec(select(Setting))).all():
        if isinstance(setting.value, dict) and setting.value.get("set_by") == person_id:
            setting.value = {**setting.value, "set_by": None}
            session.add(setting)
    report.add(
        "people_led_unlinked",
        await _count(
            session,
            update(Person).where(col(Person.leader_id) == person_id).values(leader_id=None),
        ),
    )

    # Where the bot could reach them, and what it was saying or about to say.
    state = await _their_state(session, person, conversation_ids, needles)
    report.add(
        "state_documents_removed",
        await _count(
            session, delete(BotState).where(col(BotState.key).in_([s.key for s in state]))
        ),
    )
    messages = await _their_messages(session, conversation_ids, needles)
    report.add(
        "outbox_messages_removed",
        await _count(
            session,
            delete(OutboxMessage).where(col(OutboxMessage.id).in_([m.id for m in messages])),
        ),
    )
    await _count(
        session,
        delete(DeliveryAttempt).where(col(DeliveryAttempt.conversation_id).in_(conversation_ids)),
    )
    for conversation_id in conversation_ids:
        await _count(
            session,
            delete(ProcessedActivity).where(
                col(ProcessedActivity.key).contains(f"/{conversation_id}/", autoescape=True)
            ),
        )
    report.add(
        "conversation_references_removed",
        await _count(
            session,
            delete(ConversationReference).where(
                col(ConversationReference.conversation_id).in_(conversation_ids)
            ),
        ),
    )
    report.add("conversation_references_scrubbed", await _scrub_references(session, needles))

    await session.flush()
    await session.delete(person)
    await session.flush()
    await audit.record(
        session,
        action="privacy.erase",
        actor_id=None,
        actor="cli",
        subject=f"person:{person_id}",
        detail=dict(report.counts),
        at=now,
    )
    return report


async def plan_erasure(session: AsyncSession, email: str, *, now: datetime) -> ErasureReport:
    """What `erase_person` would do, done and then rolled back: the session must hold no
    work of its own."""
    try:
        return await erase_person(session, email, now=now)
    finally:
        await session.rollback()


# --- what is theirs -------------------------------------------------------------------------


def _needles(person: Person) -> list[re.Pattern[str]]:
    """What identifies the person in free-form JSON, as patterns over case-folded text: their
    email and account ids anywhere, their name as whole words only (a name such as "Mark"
    must not match "market" in someone else's message)."""
    patterns = [
        re.compile(re.escape(value.casefold()))
        for value in (person.email, person.aad_object_id, person.teams_id)
        if value
    ]
    if person.name and len(person.name.strip()) >= MIN_NAME_LENGTH:
        name = re.escape(person.name.strip().casefold())
        patterns.append(re.compile(rf"(?<!\w){name}(?!\w)"))
    return patterns


def _mentions(value: Any, needles: Sequence[re.Pattern[str]]) -> bool:
    """Whether a JSON value holds any of the needles in one of its strings."""
    if isinstance(value, str):
        folded = value.casefold()
        return any(needle.search(folded) for needle in needles)
    if isinstance(value, dict):
        return any(
            _mentions(key, needles) or _mentions(item, needles) for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_mentions(item, needles) for item in value)
    return False


def _is_them(account: Any, person: Person) -> bool:
    """Whether a serialised ChannelAccount (a reference's `user`) is this person's."""
    if not isinstance(account, dict):
        return False
    ids = {account.get("id"), account.get("aadObjectId"), account.get("aad_object_id")}
    return bool(ids & ({person.aad_object_id, person.teams_id} - {None}))


async def _their_conversations(
    session: AsyncSession, person: Person
) -> list[ConversationReference]:
    """Conversations stored as theirs, and 1:1 chats whose user is them (a chat stored
    before the bot knew who it was with)."""
    rows = (
        await session.exec(
            select(ConversationReference).where(
                or_(
                    col(ConversationReference.person_id) == person.id,
                    col(ConversationReference.conversation_type) == "personal",
                )
            )
        )
    ).all()
    return [
        row
        for row in rows
        if row.person_id == person.id
        or (row.person_id is None and _is_them((row.reference or {}).get("user"), person))
    ]


async def _their_updates(session: AsyncSession, person: Person) -> list[ProjectUpdate]:
    """Project updates they posted from Teams: by their Azure AD object id, or by their name
    on an update that came from a Teams form."""
    conditions = []
    if person.aad_object_id:
        conditions.append(col(ProjectUpdate.author_aad_id) == person.aad_object_id)
    if person.name:
        # By name only where the update records no Azure AD object id: a namesake's updates
        # carry their own.
        conditions.append(
            (col(ProjectUpdate.author) == person.name)
            & col(ProjectUpdate.source).startswith("teams-form:")
            & col(ProjectUpdate.author_aad_id).is_(None)
        )
    if not conditions:
        return []
    return list((await session.exec(select(ProjectUpdate).where(or_(*conditions)))).all())


async def _their_state(
    session: AsyncSession,
    person: Person,
    conversation_ids: Iterable[str],
    needles: Sequence[re.Pattern[str]],
) -> list[BotState]:
    """State documents of their conversations and their Teams account (botbuilder's keys are
    "{channel}/conversations/{id}" and "{channel}/users/{id}"), and any that names them."""
    suffixes = tuple(f"/conversations/{c}" for c in conversation_ids) + tuple(
        f"/users/{account}" for account in (person.teams_id, person.aad_object_id) if account
    )
    return [
        row
        for row in (await session.exec(select(BotState).order_by(col(BotState.key)))).all()
        if row.key.endswith(suffixes) or _mentions(_document(row.document), needles)
    ]


async def _their_messages(
    session: AsyncSession, conversation_ids: Iterable[str], needles: Sequence[re.Pattern[str]]
) -> list[OutboxMessage]:
    """Outbox messages to their conversations, or naming them anywhere else."""
    theirs = set(conversation_ids)
    return [
        message
        for message in (
            await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))
        ).all()
        if message.conversation_id in theirs or _mentions(message.payload, needles)
    ]


async def _scrub_references(session: AsyncSession, needles: Sequence[re.Pattern[str]]) -> int:
    """Clear the sender of other conversations' references (a channel's reference is made
    from whoever spoke there last): the bot needs only the conversation to post there."""
    scrubbed = 0
    for row in (await session.exec(select(ConversationReference))).all():
        stored = dict(row.reference or {})
        if not _mentions(stored.get("user"), needles):
            continue
        stored["user"] = None
        row.reference = stored
        session.add(row)
        scrubbed += 1
    return scrubbed


async def placeholder_id(session: AsyncSession) -> int | None:
    """The id of the placeholder person erased people's records point at, if it is made."""
    setting = await session.get(Setting, ERASED_PERSON_SETTING)
    stored = setting.value.get("person_id") if setting is not None else None
    return stored if isinstance(stored, int) else None


async def erased_person_id(session: AsyncSession, *, now: datetime) -> int:
    """The placeholder person erased people's records point at, made on first use."""
    stored = await placeholder_id(session)
    if stored is not None and await session.get(Person, stored) is not None:
        return stored
    placeholder = Person(
        name=ERASED_NAME,
        roles=[],
        in_roster=False,
        reminders_enabled=False,
        # Never looked up in the directory: it has no Teams account to look up.
        directory_checked_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(placeholder)
    await session.flush()
    assert placeholder.id is not None
    setting = await session.get(Setting, ERASED_PERSON_SETTING)
    if setting is None:
        setting = Setting(key=ERASED_PERSON_SETTING, value={}, updated_at=now)
    setting.value = {"person_id": placeholder.id}
    setting.updated_at = now
    session.add(setting)
    await session.flush()
    return placeholder.id


# --- helpers --------------------------------------------------------------------------------


async def _count(session: AsyncSession, statement: Any) -> int:
    result = await session.exec(statement)
    return int(result.rowcount or 0)


def _document(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _fields(row: SQLModel, *names: str) -> dict[str, Any]:
    return {name: _json(getattr(row, name)) for name in names}
