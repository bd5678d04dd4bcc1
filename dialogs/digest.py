"""The weekly digest in a channel: `subscribe`, `unsubscribe` and `digest settings`, and the
settings card (the day and time it comes); and `digest preview` for admins, sent to them only.

A subscription is the channel's: anyone there may make, change or end it. The card is
stateless (it carries no subscription id): each press is about the channel it was pressed
in, as the turn says, and is checked again on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botbuilder.core import TurnContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import Caller, SendPrivately, card_message, reply_privately
from storage import digest, subscriptions
from storage.db import transaction
from storage.models import DigestSubscription, utcnow

logger = logging.getLogger(__name__)

# Card actions (the `action` of a button's data); digest_settings.json.j2 emits exactly these.
SAVE = "digest_settings_save"
UNSUBSCRIBE = "digest_unsubscribe"
ACTIONS = frozenset({SAVE, UNSUBSCRIBE})
COMMANDS = frozenset({"subscribe", "unsubscribe", "digest settings", "digest preview"})
WEEK = timedelta(days=7)

# How the bot's time zone reads on the card; any other zone is shown by its name.
ZONE_LABELS = {"Europe/London": "UK time"}

IN_A_CHANNEL = (
    "The weekly digest goes to Teams channels: in the channel that should get it, mention me "
    "(@Our Cambridge) with **subscribe**, **unsubscribe** or **digest settings**."
)
NOT_SUBSCRIBED = (
    "This channel isn't subscribed to the weekly digest. Mention me (@Our Cambridge) with "
    "**subscribe** to have it every week."
)


class DigestSubscriptions:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        remember_channel: Callable[[TurnContext], Awaitable[str]],
        send_privately: SendPrivately,
        zone_name: str,
    ) -> None:
        self._sessions = sessions
        self._remember_channel = remember_channel
        self._send_privately = send_privately
        self._zone = ZoneInfo(zone_name)
        self._zone_label = ZONE_LABELS.get(zone_name, zone_name)

    # --- entry points ---------------------------------------------------------------------

    async def on_command(self, turn_context: TurnContext, caller: Caller | None, name: str) -> None:
        if name == "digest preview":
            await self._preview(turn_context, caller)
        elif not _in_channel(turn_context):
            await turn_context.send_activity(IN_A_CHANNEL)
        elif name == "subscribe":
            await self._subscribe(turn_context, caller)
        elif name == "unsubscribe":
            await self._unsubscribe(turn_context, caller)
        elif name == "digest settings":
            await self._settings(turn_context)

    async def on_action(
        self, turn_context: TurnContext, caller: Caller | None, values: Mapping[str, Any]
    ) -> None:
        if not _in_channel(turn_context):
            await turn_context.send_activity(IN_A_CHANNEL)
        elif values["action"] == SAVE:
            await self._on_save(turn_context, caller, values)
        elif values["action"] == UNSUBSCRIBE:
            await self._unsubscribe(turn_context, caller)

    # --- the commands -----------------------------------------------------------------------

    async def _preview(self, turn_context: TurnContext, caller: Caller | None) -> None:
        """The digest a channel would get now, to the admin who asked only."""
        if caller is None or not caller.is_admin:
            await turn_context.send_activity(
                "**digest preview** is for the transformation team. To get the digest in a "
                "channel, mention me there (@Our Cambridge) with **subscribe**."
            )
            return
        end = utcnow()
        async with self._sessions() as session:
            content = await digest.build_digest(session, start=end - WEEK, end=end, zone=self._zone)
        await reply_privately(
            turn_context,
            caller,
            card_message("digest", digest=content),
            self._send_privately,
            ask_there="type **digest preview**",
        )

    async def _subscribe(self, turn_context: TurnContext, caller: Caller | None) -> None:
        # The channel itself (not this thread) is where the digest is posted.
        channel_id = await self._remember_channel(turn_context)
        team_id = _team_id(turn_context)

        async def subscribe() -> tuple[DigestSubscription, bool]:
            async with transaction(self._sessions) as session:
                return await subscriptions.subscribe(
                    session,
                    conversation_id=channel_id,
                    team_id=team_id,
                    person_id=caller.person_id if caller else None,
                    now=utcnow(),
                )

        try:
            subscription, subscribed = await subscribe()
        except IntegrityError:
            # Subscribed twice at once (a double send, two replicas): the other one won.
            subscription, subscribed = await subscribe()
        when = self._when(subscription)
        if subscribed:
            logger.info("A channel subscribed to the weekly digest")
            notice = (
                f"Subscribed: this channel will get the weekly digest {when}. Change the day "
                "and time below whenever you like."
            )
        else:
            notice = f"This channel is already subscribed: the digest comes {when}."
        await self._send_card(turn_context, subscription, notice=notice)

    async def _unsubscribe(self, turn_context: TurnContext, caller: Caller | None) -> None:
        async with transaction(self._sessions) as session:
            ended = await subscriptions.unsubscribe(
                session,
                conversation_id=_channel_id(turn_context),
                now=utcnow(),
                reason=subscriptions.UNSUBSCRIBED,
                actor_id=caller.person_id if caller else None,
            )
        if ended:
            logger.info("A channel unsubscribed from the weekly digest")
            await turn_context.send_activity(
                "Unsubscribed: this channel won't get the weekly digest any more. Mention me "
                "(@Our Cambridge) with **subscribe** to have it again."
            )
        else:
            await turn_context.send_activity(
                "This channel isn't subscribed to the weekly digest, so there was nothing to stop."
            )

    async def _settings(self, turn_context: TurnContext) -> None:
        async with self._sessions() as session:
            subscription = await subscriptions.get_subscription(
                session, conversation_id=_channel_id(turn_context)
            )
        if subscription is None or not subscription.active:
            await turn_context.send_activity(NOT_SUBSCRIBED)
            return
        await self._send_card(turn_context, subscription, notice=None)

    # --- the settings card ------------------------------------------------------------------

    async def _on_save(
        self, turn_context: TurnContext, caller: Caller | None, values: Mapping[str, Any]
    ) -> None:
        channel_id = _channel_id(turn_context)
        schedule, entries, errors = subscriptions.check_schedule_form(values)
        if schedule is None:
            async with self._sessions() as session:
                current = await subscriptions.get_subscription(session, conversation_id=channel_id)
            if current is None or not current.active:
                await turn_context.send_activity(NOT_SUBSCRIBED)
                return
            await self._send_card(turn_context, current, notice=None, values=entries, errors=errors)
            return
        try:
            async with transaction(self._sessions) as session:
                subscription = await subscriptions.change_schedule(
                    session,
                    conversation_id=channel_id,
                    weekday=schedule.weekday,
                    send_time=schedule.send_time,
                    now=utcnow(),
                    actor_id=caller.person_id if caller else None,
                )
        except subscriptions.NotSubscribed:
            await turn_context.send_activity(
                "This channel isn't subscribed to the weekly digest any more, so nothing was "
                "changed. Mention me (@Our Cambridge) with **subscribe** to have it again."
            )
            return
        logger.info("A channel changed when its weekly digest comes")
        await self._send_card(
            turn_context,
            subscription,
            notice=f"Saved: the digest now comes {self._when(subscription)}.",
        )

    async def _send_card(
        self,
        turn_context: TurnContext,
        subscription: DigestSubscription,
        *,
        notice: str | None,
        values: Mapping[str, str] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        saved = {
            "day": subscriptions.WEEKDAYS[subscription.weekday],
            "time": subscription.send_time,
        }
        await turn_context.send_activity(
            card_message(
                "digest_settings",
                schedule=subscriptions.schedule_label(subscription.weekday, subscription.send_time),
                zone_label=self._zone_label,
                weekdays=subscriptions.WEEKDAYS,
                values=dict(values if values is not None else saved),
                errors=dict(errors or {}),
                notice=notice,
            )
        )

    def _when(self, subscription: DigestSubscription) -> str:
        label = subscriptions.schedule_label(subscription.weekday, subscription.send_time)
        return f"{label} ({self._zone_label})"


def _in_channel(turn_context: TurnContext) -> bool:
    conversation = turn_context.activity.conversation
    return bool(conversation and conversation.conversation_type == "channel")


def _channel_id(turn_context: TurnContext) -> str:
    """The channel the turn is in: Teams names it in channelData; a channel message's
    conversation id is "<channel id>;messageid=<thread>"."""
    activity = turn_context.activity
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    channel = channel_data.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("id"), str) and channel["id"]:
        return str(channel["id"])
    return str(activity.conversation.id).split(";")[0]


def _team_id(turn_context: TurnContext) -> str | None:
    activity = turn_context.activity
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = channel_data.get("team")
    return team["id"] if isinstance(team, dict) and isinstance(team.get("id"), str) else None
