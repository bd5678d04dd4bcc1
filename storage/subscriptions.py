"""Channels subscribed to the weekly digest, and the Teams channels the bot can post to.

A subscription belongs to its channel, not to whoever made it: anyone in the channel may
subscribe it, change its day and time or unsubscribe it (the person who subscribed it is
recorded). An ended subscription is kept, inactive, with why it ended; subscribing again
brings it back with the day and time it had. Times are a weekday and an "HH:MM" in the bot's
time zone; bot/digests.py turns them into moments. Nothing here reads the clock: `now` is
always passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit, mir
from storage.forms import as_text
from storage.models import ConversationReference, DigestSubscription, OutboxMessage

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_WEEKDAY = 0
DEFAULT_SEND_TIME = "09:00"

# Why a subscription ended (end_reason).
UNSUBSCRIBED = "unsubscribed"
CHANNEL_DELETED = "channel deleted"
BOT_REMOVED = "bot removed from the team"
TEAM_DELETED = "team deleted"

# The settings card's inputs: the day (a weekday's name) and the time (HH:MM).
SCHEDULE_INPUTS = ("day", "time")


class NotSubscribed(LookupError):
    """The channel has no active subscription (never had one, or it ended)."""


@dataclass(frozen=True)
class DigestSchedule:
    weekday: int  # 0 Monday ... 6 Sunday
    send_time: str  # "HH:MM", local


def schedule_label(weekday: int, send_time: str) -> str:
    """When a digest comes, as people say it: "every Monday at 09:00"."""
    return f"every {WEEKDAYS[weekday]} at {send_time}"


# --- the settings form (pure) -------------------------------------------------------------


def check_schedule_form(
    values: Mapping[str, object],
) -> tuple[DigestSchedule | None, dict[str, str], dict[str, str]]:
    """Check a submitted settings card: (the schedule or None, what was typed, the reason
    for each refused input keyed by its id). A card's own checks can be bypassed, so the
    day must be one of the seven and the time a real time of day."""
    entries = {key: as_text(values.get(key)) for key in SCHEDULE_INPUTS}
    errors: dict[str, str] = {}
    weekday = _parse_weekday(entries["day"])
    if not entries["day"].strip():
        errors["day"] = "Choose the day the digest comes."
    elif weekday is None:
        errors["day"] = "Choose a day of the week, from Monday to Sunday."
    send_time = _parse_time(entries["time"])
    if not entries["time"].strip():
        errors["time"] = "Choose the time the digest comes."
    elif send_time is None:
        errors["time"] = "The time must be a time of day written HH:MM, for example 09:00."
    if errors or weekday is None or send_time is None:
        return None, entries, errors
    return DigestSchedule(weekday=weekday, send_time=send_time), entries, {}


def _parse_weekday(text: str) -> int | None:
    """A weekday's name (any case, or its first three letters) or its number 0..6."""
    cleaned = text.strip().casefold()
    if cleaned in {str(number) for number in range(7)}:
        return int(cleaned)
    for number, name in enumerate(WEEKDAYS):
        if cleaned and cleaned in (name.casefold(), name[:3].casefold()):
            return number
    return None


def _parse_time(text: str) -> str | None:
    """A time as "HH:MM" (the form Making It Real's forms accept), or None."""
    parsed = mir.parse_time(text)
    return parsed.strftime("%H:%M") if parsed is not None else None


# --- subscriptions --------------------------------------------------------------------------


async def get_subscription(
    session: AsyncSession, *, conversation_id: str
) -> DigestSubscription | None:
    """The channel's subscription, active or ended, or None if it never had one."""
    found = await session.exec(
        select(DigestSubscription).where(col(DigestSubscription.conversation_id) == conversation_id)
    )
    return found.first()


async def subscribe(
    session: AsyncSession,
    *,
    conversation_id: str,
    team_id: str | None,
    person_id: int | None,
    now: datetime,
) -> tuple[DigestSubscription, bool]:
    """Subscribe the channel: (its subscription, True if it was not active before). An
    ended one comes back with its day and time; no digest due before `now` counts.

    Two first subscriptions of one channel at once: one of them raises IntegrityError (the
    channel is unique); the caller tries again and finds it."""
    subscription = await get_subscription(session, conversation_id=conversation_id)
    if subscription is not None and subscription.active:
        if team_id and subscription.team_id != team_id:
            subscription.team_id = team_id
            subscription.updated_at = now
            session.add(subscription)
            await session.flush()
        return subscription, False
    if subscription is None:
        subscription = DigestSubscription(
            conversation_id=conversation_id,
            weekday=DEFAULT_WEEKDAY,
            send_time=DEFAULT_SEND_TIME,
            created_at=now,
        )
    subscription.team_id = team_id or subscription.team_id
    subscription.active = True
    subscription.subscribed_by = person_id
    subscription.schedule_changed_at = now
    subscription.ended_at = None
    subscription.end_reason = None
    subscription.updated_at = now
    session.add(subscription)
    await session.flush()
    await audit.record(
        session,
        action="digest.subscribe",
        actor_id=person_id,
        actor="person" if person_id is not None else "system",
        subject=f"subscription:{subscription.id}",
        detail={"weekday": subscription.weekday, "send_time": subscription.send_time},
        at=now,
    )
    return subscription, True


async def unsubscribe(
    session: AsyncSession,
    *,
    conversation_id: str,
    now: datetime,
    reason: str = UNSUBSCRIBED,
    actor_id: int | None = None,
) -> bool:
    """End the channel's subscription. False if it had none active."""
    ended = await end_for_conversation(
        session, conversation_id=conversation_id, now=now, reason=reason, actor_id=actor_id
    )
    return ended > 0


async def change_schedule(
    session: AsyncSession,
    *,
    conversation_id: str,
    weekday: int,
    send_time: str,
    now: datetime,
    actor_id: int | None = None,
) -> DigestSubscription:
    """Set the day and time of the channel's digest. A time already past this week does
    not count as missed (schedule_changed_at), and a week's digest already sent is not sent
    again on the new day (bot/digests.py keys each by its week).

    Raises NotSubscribed if the channel has no active subscription."""
    if not 0 <= weekday < len(WEEKDAYS) or _parse_time(send_time) != send_time:
        raise ValueError(f"Not a weekly schedule: {weekday!r} {send_time!r}")
    subscription = await get_subscription(session, conversation_id=conversation_id)
    if subscription is None or not subscription.active:
        raise NotSubscribed(conversation_id)
    if (subscription.weekday, subscription.send_time) != (weekday, send_time):
        subscription.weekday = weekday
        subscription.send_time = send_time
        subscription.schedule_changed_at = now
        subscription.updated_at = now
        session.add(subscription)
        await session.flush()
        await audit.record(
            session,
            action="digest.schedule",
            actor_id=actor_id,
            actor="person" if actor_id is not None else "system",
            subject=f"subscription:{subscription.id}",
            detail={"weekday": weekday, "send_time": send_time},
            at=now,
        )
    return subscription


async def active_subscriptions(session: AsyncSession) -> list[DigestSubscription]:
    found = await session.exec(
        select(DigestSubscription)
        .where(col(DigestSubscription.active).is_(True))
        .order_by(col(DigestSubscription.id))
    )
    return list(found.all())


async def end_for_team(session: AsyncSession, *, team_id: str, now: datetime, reason: str) -> int:
    """End every active subscription of the team's channels (those it was made with, and
    any channel stored as the team's); how many were ended. Call it before forget_team."""
    team_channels = select(ConversationReference.conversation_id).where(
        col(ConversationReference.team_id) == team_id
    )
    return await _end(
        session,
        or_(
            col(DigestSubscription.team_id) == team_id,
            col(DigestSubscription.conversation_id) == team_id,
            col(DigestSubscription.conversation_id).in_(team_channels),
        ),
        now=now,
        reason=reason,
    )


async def end_for_conversation(
    session: AsyncSession,
    *,
    conversation_id: str,
    now: datetime,
    reason: str,
    actor_id: int | None = None,
) -> int:
    """End the channel's subscription if it is active; 1 if it was, else 0."""
    return await _end(
        session,
        col(DigestSubscription.conversation_id) == conversation_id,
        now=now,
        reason=reason,
        actor_id=actor_id,
    )


def digest_key(subscription_id: int, *, week: str) -> str:
    """The outbox key of a subscription's digest for an ISO week ("2026-W49"): one digest a
    week per channel. With an empty week, the start every one of its digests' keys shares."""
    return f"digest:{subscription_id}:{week}"


async def _end(
    session: AsyncSession,
    condition: ColumnElement[bool],
    *,
    now: datetime,
    reason: str,
    actor_id: int | None = None,
) -> int:
    found = await session.exec(
        select(DigestSubscription.id).where(condition, col(DigestSubscription.active).is_(True))
    )
    ending = [subscription_id for subscription_id in found.all() if subscription_id is not None]
    if not ending:
        return 0
    await session.exec(
        update(DigestSubscription)
        .where(col(DigestSubscription.id).in_(ending))
        .values(active=False, ended_at=now, end_reason=reason[:200], updated_at=now)
    )
    # A digest still waiting in the outbox (a retry, a rate-limit wait) is not sent after
    # the subscription ended.
    for subscription_id in ending:
        await session.exec(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.status) == "pending",
                col(OutboxMessage.dedupe_key).startswith(
                    digest_key(subscription_id, week=""), autoescape=True
                ),
            )
            .values(status="failed", last_error=f"subscription ended: {reason}"[:200])
        )
        # The reasons are this module's own words (UNSUBSCRIBED, CHANNEL_DELETED...).
        await audit.record(
            session,
            action="digest.end",
            actor_id=actor_id,
            actor="person" if actor_id is not None else "system",
            subject=f"subscription:{subscription_id}",
            detail={"cause": reason[:60]},
            at=now,
        )
    return len(ending)


# --- the channels the bot can post to ---------------------------------------------------------


async def forget_channel(session: AsyncSession, *, channel_id: str) -> int:
    """The channel was deleted: forget every reference to it (the channel itself and the
    threads in it), so nothing more is queued there. How many were forgotten."""
    result = await session.exec(
        delete(ConversationReference).where(
            or_(
                col(ConversationReference.channel_id) == channel_id,
                col(ConversationReference.conversation_id) == channel_id,
                col(ConversationReference.conversation_id).startswith(
                    f"{channel_id};", autoescape=True
                ),
            )
        )
    )
    return int(result.rowcount or 0)


async def forget_team(session: AsyncSession, *, team_id: str) -> int:
    """The bot left the team (or the team is gone): forget its channels and their threads.
    The General channel's id is the team's id. How many references were forgotten."""
    result = await session.exec(
        delete(ConversationReference).where(
            or_(
                col(ConversationReference.team_id) == team_id,
                col(ConversationReference.conversation_id) == team_id,
                col(ConversationReference.conversation_id).startswith(
                    f"{team_id};", autoescape=True
                ),
            )
        )
    )
    return int(result.rowcount or 0)
