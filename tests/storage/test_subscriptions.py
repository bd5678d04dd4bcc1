"""Channel subscriptions to the weekly digest: the settings form's checks (reasons keyed by
input, what was typed kept), subscribing once however often and however many at once, ending
and coming back with the day and time kept, a new schedule counted from when it was set, and
a team's or a channel's references and subscriptions ended together when the bot leaves."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import outbox, people, subscriptions
from storage.db import transaction
from storage.models import ConversationReference, DigestSubscription, OutboxMessage, utcnow
from storage.subscriptions import DigestSchedule, NotSubscribed
from tests.support.people import add_person

# --- the settings form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "time", "weekday", "send_time"),
    [
        ("Monday", "09:00", 0, "09:00"),
        ("wednesday", "9:05", 2, "09:05"),
        (" Sun ", "23:59:00", 6, "23:59"),
        ("fri", "00:00", 4, "00:00"),
        ("3", "17:30", 3, "17:30"),
        (5, "12:00", 5, "12:00"),
    ],
)
def test_a_good_form_gives_its_schedule(day: Any, time: str, weekday: int, send_time: str) -> None:
    schedule, entries, errors = subscriptions.check_schedule_form(
        {"day": day, "time": time, "action": "digest_settings_save"}
    )
    assert errors == {}
    assert schedule == DigestSchedule(weekday=weekday, send_time=send_time)
    assert entries == {"day": str(day), "time": time}


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (
            {},
            {
                "day": "Choose the day the digest comes.",
                "time": "Choose the time the digest comes.",
            },
        ),
        ({"day": "  ", "time": "09:00"}, {"day": "Choose the day the digest comes."}),
        (
            {"day": "Someday", "time": "09:00"},
            {"day": "Choose a day of the week, from Monday to Sunday."},
        ),
        (
            {"day": "7", "time": "09:00"},
            {"day": "Choose a day of the week, from Monday to Sunday."},
        ),
        (
            {"day": "Mo", "time": "09:00"},
            {"day": "Choose a day of the week, from Monday to Sunday."},
        ),
        (
            {"day": "Monday", "time": "24:00"},
            {"time": "The time must be a time of day written HH:MM, for example 09:00."},
        ),
        (
            {"day": "Monday", "time": "9am"},
            {"time": "The time must be a time of day written HH:MM, for example 09:00."},
        ),
        (
            {"day": "Monday", "time": "09:60"},
            {"time": "The time must be a time of day written HH:MM, for example 09:00."},
        ),
        (
            {"day": ["Monday"], "time": None},
            {
                "day": "Choose the day the digest comes.",
                "time": "Choose the time the digest comes.",
            },
        ),
    ],
)
def test_a_bad_form_says_why_for_each_input(values: dict[str, Any], errors: dict[str, str]) -> None:
    schedule, entries, found = subscriptions.check_schedule_form(values)
    assert schedule is None
    assert found == errors
    assert set(entries) == {"day", "time"}


def test_a_bad_form_keeps_what_was_typed() -> None:
    _, entries, _ = subscriptions.check_schedule_form({"day": "Someday", "time": "25:00"})
    assert entries == {"day": "Someday", "time": "25:00"}


def test_a_schedule_reads_as_people_say_it() -> None:
    assert subscriptions.schedule_label(0, "09:00") == "every Monday at 09:00"
    assert subscriptions.schedule_label(6, "17:30") == "every Sunday at 17:30"


# --- subscribing ------------------------------------------------------------------------------


def _channel() -> str:
    return f"19:{uuid.uuid4().hex}@thread.tacv2"


async def _subscribe(
    sessions: async_sessionmaker[AsyncSession],
    channel: str,
    *,
    team: str | None = None,
    person_id: int | None = None,
    minutes_ago: int = 0,
) -> tuple[DigestSubscription, bool]:
    async with transaction(sessions) as session:
        return await subscriptions.subscribe(
            session,
            conversation_id=channel,
            team_id=team,
            person_id=person_id,
            now=utcnow() - timedelta(minutes=minutes_ago),
        )


async def _get(sessions: async_sessionmaker[AsyncSession], channel: str) -> DigestSubscription:
    async with sessions() as session:
        found = await subscriptions.get_subscription(session, conversation_id=channel)
    assert found is not None
    return found


async def test_a_new_subscription_comes_on_mondays_at_nine(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person_id = await add_person(sessions, "Sam Staff", role=None)
    channel, team = _channel(), _channel()
    before = utcnow()
    subscription, subscribed = await _subscribe(sessions, channel, team=team, person_id=person_id)
    assert subscribed
    stored = await _get(sessions, channel)
    assert stored.id == subscription.id
    assert (stored.weekday, stored.send_time, stored.active) == (0, "09:00", True)
    assert (stored.team_id, stored.subscribed_by) == (team, person_id)
    assert stored.ended_at is None and stored.end_reason is None
    changed_at = stored.schedule_changed_at
    assert changed_at.replace(tzinfo=None) >= before.replace(tzinfo=None)


async def test_subscribing_again_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = _channel()
    first, _ = await _subscribe(sessions, channel, minutes_ago=60)
    again, subscribed = await _subscribe(sessions, channel, team="19:team")
    assert not subscribed
    stored = await _get(sessions, channel)
    assert stored.id == first.id
    assert stored.schedule_changed_at.replace(tzinfo=None) == first.schedule_changed_at.replace(
        tzinfo=None
    ), "no digest is skipped because someone typed subscribe twice"
    assert stored.team_id == "19:team", "a team learnt later is kept"


async def test_many_at_once_make_one_subscription(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = _channel()

    async def attempt() -> bool:
        try:
            return (await _subscribe(sessions, channel))[1]
        except IntegrityError:
            # What the dialog does: the other one won; try again and find it.
            return (await _subscribe(sessions, channel))[1]

    results = await asyncio.gather(*(attempt() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with sessions() as session:
        rows = (
            await session.exec(
                select(DigestSubscription).where(DigestSubscription.conversation_id == channel)
            )
        ).all()
    assert len(rows) == 1


async def test_unsubscribe_ends_it_and_subscribe_brings_it_back_with_its_schedule(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first_person = await add_person(sessions, "First", role=None)
    second_person = await add_person(sessions, "Second", role=None)
    channel = _channel()
    await _subscribe(sessions, channel, person_id=first_person, minutes_ago=120)
    async with transaction(sessions) as session:
        await subscriptions.change_schedule(
            session,
            conversation_id=channel,
            weekday=3,
            send_time="16:00",
            now=utcnow() - timedelta(minutes=90),
        )
    ended_at = utcnow() - timedelta(minutes=60)
    async with transaction(sessions) as session:
        assert await subscriptions.unsubscribe(
            session, conversation_id=channel, now=ended_at, reason=subscriptions.UNSUBSCRIBED
        )
    stored = await _get(sessions, channel)
    assert not stored.active and stored.end_reason == "unsubscribed"
    assert stored.ended_at is not None
    async with transaction(sessions) as session:
        assert not await subscriptions.unsubscribe(
            session, conversation_id=channel, now=utcnow(), reason=subscriptions.UNSUBSCRIBED
        ), "nothing left to end"
    assert await _active(sessions, [channel]) == set()

    now = utcnow()
    back, subscribed = await _subscribe(sessions, channel, person_id=second_person)
    assert subscribed
    stored = await _get(sessions, channel)
    assert stored.id == back.id
    assert stored.active and stored.ended_at is None and stored.end_reason is None
    assert (stored.weekday, stored.send_time) == (3, "16:00"), "the channel's choice is kept"
    assert stored.subscribed_by == second_person
    assert stored.schedule_changed_at.replace(tzinfo=None) >= now.replace(tzinfo=None) - timedelta(
        seconds=1
    ), "the weeks it was off do not count as missed"


async def test_never_subscribed(sessions: async_sessionmaker[AsyncSession]) -> None:
    channel = _channel()
    async with transaction(sessions) as session:
        assert await subscriptions.get_subscription(session, conversation_id=channel) is None
        assert not await subscriptions.unsubscribe(
            session, conversation_id=channel, now=utcnow(), reason=subscriptions.UNSUBSCRIBED
        )
        with pytest.raises(NotSubscribed):
            await subscriptions.change_schedule(
                session, conversation_id=channel, weekday=1, send_time="10:00", now=utcnow()
            )


# --- the schedule -----------------------------------------------------------------------------


async def test_a_new_schedule_counts_from_when_it_was_set(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = _channel()
    await _subscribe(sessions, channel, minutes_ago=60)
    now = utcnow()
    async with transaction(sessions) as session:
        changed = await subscriptions.change_schedule(
            session, conversation_id=channel, weekday=4, send_time="15:45", now=now
        )
    assert (changed.weekday, changed.send_time) == (4, "15:45")
    stored = await _get(sessions, channel)
    assert (stored.weekday, stored.send_time) == (4, "15:45")
    assert stored.schedule_changed_at.replace(tzinfo=None) == now.replace(tzinfo=None)

    later = now + timedelta(minutes=5)
    async with transaction(sessions) as session:
        await subscriptions.change_schedule(
            session, conversation_id=channel, weekday=4, send_time="15:45", now=later
        )
    stored = await _get(sessions, channel)
    assert stored.schedule_changed_at.replace(tzinfo=None) == now.replace(tzinfo=None), (
        "saving the same day and time again moves nothing"
    )


async def test_an_ended_subscription_cannot_be_rescheduled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = _channel()
    await _subscribe(sessions, channel)
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(
            session, conversation_id=channel, now=utcnow(), reason=subscriptions.UNSUBSCRIBED
        )
    async with transaction(sessions) as session:
        with pytest.raises(NotSubscribed):
            await subscriptions.change_schedule(
                session, conversation_id=channel, weekday=1, send_time="10:00", now=utcnow()
            )


@pytest.mark.parametrize(
    ("weekday", "send_time"), [(7, "09:00"), (-1, "09:00"), (0, "9:00"), (0, "24:00")]
)
async def test_a_schedule_that_is_not_one_is_refused(
    sessions: async_sessionmaker[AsyncSession], weekday: int, send_time: str
) -> None:
    channel = _channel()
    await _subscribe(sessions, channel)
    async with transaction(sessions) as session:
        with pytest.raises(ValueError):
            await subscriptions.change_schedule(
                session, conversation_id=channel, weekday=weekday, send_time=send_time, now=utcnow()
            )


# --- teams and channels -----------------------------------------------------------------------


async def _reference(
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    *,
    team: str | None,
    channel: str | None = None,
    conversation_type: str = "channel",
) -> None:
    async with transaction(sessions) as session:
        await people.save_conversation_reference(
            session,
            conversation_id=conversation_id,
            conversation_type=conversation_type,
            tenant_id="tenant",
            service_url="https://smba.example/",
            reference={"conversation": {"id": conversation_id}},
            team_id=team,
            channel_id=channel,
        )


async def _references(sessions: async_sessionmaker[AsyncSession], ids: list[str]) -> set[str]:
    async with sessions() as session:
        found = await session.exec(
            select(ConversationReference.conversation_id).where(
                col(ConversationReference.conversation_id).in_(ids)
            )
        )
        return set(found.all())


async def _active(sessions: async_sessionmaker[AsyncSession], ids: list[str]) -> set[str]:
    async with sessions() as session:
        return {
            s.conversation_id
            for s in await subscriptions.active_subscriptions(session)
            if s.conversation_id in ids
        }


async def test_leaving_a_team_ends_its_subscriptions_and_forgets_its_channels(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    team, other_team = _channel(), _channel()
    general, planning, unknown_team = team, _channel(), _channel()
    thread = f"{planning};messageid=1700000000000"
    elsewhere = _channel()
    await _reference(sessions, general, team=team, channel=general)
    await _reference(sessions, planning, team=team, channel=planning)
    await _reference(sessions, thread, team=team, channel=planning)
    # Stored before its team was known: the channel's reference says which team it is in.
    await _reference(sessions, unknown_team, team=team, channel=unknown_team)
    await _reference(sessions, elsewhere, team=other_team, channel=elsewhere)
    await _reference(sessions, f"{team}x", team=None)  # an id that merely starts the same
    await _subscribe(sessions, general, team=team)
    await _subscribe(sessions, planning, team=team)
    await _subscribe(sessions, unknown_team, team=None)
    await _subscribe(sessions, elsewhere, team=other_team)
    ids = [general, planning, thread, unknown_team, elsewhere, f"{team}x"]

    now = utcnow()
    async with transaction(sessions) as session:
        ended = await subscriptions.end_for_team(
            session, team_id=team, now=now, reason=subscriptions.BOT_REMOVED
        )
        forgotten = await subscriptions.forget_team(session, team_id=team)
    assert (ended, forgotten) == (3, 4)
    assert await _active(sessions, ids) == {elsewhere}
    assert await _references(sessions, ids) == {elsewhere, f"{team}x"}
    stored = await _get(sessions, planning)
    assert stored.end_reason == "bot removed from the team" and stored.ended_at is not None
    async with transaction(sessions) as session:
        again = await subscriptions.end_for_team(
            session, team_id=team, now=now, reason=subscriptions.TEAM_DELETED
        )
    assert again == 0
    assert (await _get(sessions, planning)).end_reason == "bot removed from the team"


async def test_a_deleted_channel_is_forgotten_with_its_threads(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    unique = uuid.uuid4().hex
    team, sibling = _channel(), _channel()
    channel = f"19:{unique}_a@thread.tacv2"
    thread = f"{channel};messageid=42"
    # A thread of another channel that a LIKE pattern would match if "_" were a wildcard.
    similar = f"19:{unique}Xa@thread.tacv2;messageid=42"
    await _reference(sessions, team, team=team, channel=team)
    await _reference(sessions, channel, team=team, channel=channel)
    await _reference(sessions, thread, team=team, channel=channel)
    await _reference(sessions, sibling, team=team, channel=sibling)
    await _reference(sessions, similar, team=team, channel=similar)
    await _subscribe(sessions, channel, team=team)
    await _subscribe(sessions, sibling, team=team)
    ids = [team, channel, thread, sibling, similar]

    async with transaction(sessions) as session:
        forgotten = await subscriptions.forget_channel(session, channel_id=channel)
        ended = await subscriptions.end_for_conversation(
            session, conversation_id=channel, now=utcnow(), reason=subscriptions.CHANNEL_DELETED
        )
    assert (forgotten, ended) == (2, 1)
    assert await _references(sessions, ids) == {team, sibling, similar}
    assert await _active(sessions, ids) == {sibling}
    assert (await _get(sessions, channel)).end_reason == "channel deleted"


async def test_a_digest_still_waiting_is_not_sent_after_unsubscribing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = _channel()
    await _subscribe(sessions, channel, person_id=None, minutes_ago=5)
    async with sessions() as session:
        subscription = await subscriptions.get_subscription(session, conversation_id=channel)
    assert subscription is not None
    waiting, sent = f"digest:{subscription.id}:2026-W49", f"digest:{subscription.id}:2026-W48"
    async with transaction(sessions) as session:
        for key in (waiting, sent):
            await outbox.enqueue(
                session, dedupe_key=key, conversation_id=channel, payload={}, now=utcnow()
            )
        await session.exec(
            update(OutboxMessage).where(OutboxMessage.dedupe_key == sent).values(status="sent")
        )
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(
            session, conversation_id=channel, now=utcnow(), reason=subscriptions.UNSUBSCRIBED
        )
    async with sessions() as session:
        rows = {
            row.dedupe_key: row
            for row in await session.exec(
                select(OutboxMessage).where(col(OutboxMessage.dedupe_key).in_([waiting, sent]))
            )
        }
    assert rows[waiting].status == "failed"
    assert (rows[waiting].last_error or "").startswith("subscription ended")
    assert rows[sent].status == "sent", "what went out stays recorded as sent"
