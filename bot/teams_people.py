"""Who is on the other end of a turn, and how to reach them privately: the Teams side of
storage/people.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from botbuilder.core import BotAdapter, TurnContext
from botbuilder.core.teams import TeamsInfo
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
)
from msrest.exceptions import HttpOperationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.proactive import restore_reference
from dialogs.common import Caller
from storage import outbox, people
from storage.db import transaction
from storage.models import Person, utcnow

logger = logging.getLogger(__name__)

MEMBER_LOOKUP_SECONDS = 5.0
CHANNEL_LOOKUP_SECONDS = 10.0


def teams_tenant_id(activity: Activity) -> str | None:
    """Teams puts the tenant in channelData; botbuilder drops conversation.tenantId."""
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant")
    if isinstance(tenant, dict) and isinstance(tenant.get("id"), str):
        return tenant["id"]
    conversation = activity.conversation
    return getattr(conversation, "tenant_id", None) if conversation else None


async def identify_caller(
    turn_context: TurnContext,
    *,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> Caller | None:
    """The roster's view of the sender (matched by AAD id, or by the email Teams reports on
    first contact), or None for an activity with no sender."""
    sender = turn_context.activity.from_property
    if sender is None or not sender.id:
        return None

    async def lookup_addresses() -> list[str]:
        # Bounded: the lookup runs while a database transaction is open.
        async with asyncio.timeout(MEMBER_LOOKUP_SECONDS):
            member = await TeamsInfo.get_member(turn_context, sender.id)
        return [a for a in (member.email, member.user_principal_name) if a]

    async def identify() -> Person:
        async with transaction(sessions) as session:
            return await people.identify_person(
                session,
                aad_object_id=sender.aad_object_id,
                teams_id=sender.id,
                name=sender.name,
                lookup_email=lookup_addresses,
                now=utcnow(),
            )

    try:
        person = await identify()
    except IntegrityError:
        # A new person's first turns raced (several messages at once, or two replicas) and
        # another one recorded them first: now they are found.
        person = await identify()
    roles = people.roles_of(person)
    return Caller(
        person_id=person.id or 0,
        name=person.name or sender.name or "Someone",
        roles=roles,
        is_admin="admin" in roles or settings.is_admin(sender.aad_object_id),
    )


async def send_privately(
    turn_context: TurnContext,
    caller: Caller,
    activity: Activity,
    *,
    adapter: BotAdapter,
    app_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> bool:
    """Send `activity` to the caller's 1:1 chat with the bot, opening one if need be.
    False if that could not be done (logged); the caller is told in the channel."""
    incoming = turn_context.activity
    tenant_id = teams_tenant_id(incoming)
    async with sessions() as session:
        conversation_id = await outbox.personal_conversation_id(session, person_id=caller.person_id)
        reference = (
            await outbox.stored_reference(session, conversation_id=conversation_id)
            if conversation_id
            else None
        )
    sent: list[bool] = []

    async def send(context: TurnContext) -> None:
        try:
            await context.send_activity(activity)
        except Exception:
            logger.warning("Could not send a private reply", exc_info=True)
            sent.append(False)
        else:
            sent.append(True)

    try:
        if reference is not None:
            await adapter.continue_conversation(
                restore_reference(reference, tenant_id), send, app_id
            )
        else:
            await _open_private_chat(turn_context, caller, adapter, app_id, sessions, send)
    except Exception:
        logger.warning("Could not open a private chat", exc_info=True)
        return False
    return bool(sent) and all(sent)


async def _open_private_chat(
    turn_context: TurnContext,
    caller: Caller,
    adapter: BotAdapter,
    app_id: str,
    sessions: async_sessionmaker[AsyncSession],
    send: Any,
) -> None:
    incoming = turn_context.activity
    tenant_id = teams_tenant_id(incoming)
    user = incoming.from_property
    parameters = ConversationParameters(
        is_group=False,
        bot=incoming.recipient,
        members=[ChannelAccount(id=user.id)],
        tenant_id=tenant_id,
        channel_data={"tenant": {"id": tenant_id}} if tenant_id else None,
    )

    async def remember_then_send(context: TurnContext) -> None:
        # The new chat is where reminders and nudges reach this person from now on.
        conversation_id = context.activity.conversation.id
        reference = ConversationReference(
            bot=incoming.recipient,
            user=ChannelAccount(id=user.id, name=user.name, aad_object_id=user.aad_object_id),
            conversation=ConversationAccount(
                id=conversation_id, conversation_type="personal", tenant_id=tenant_id
            ),
            channel_id=incoming.channel_id,
            service_url=incoming.service_url,
        )
        try:
            async with transaction(sessions) as session:
                await people.save_conversation_reference(
                    session,
                    conversation_id=conversation_id,
                    conversation_type="personal",
                    tenant_id=tenant_id,
                    service_url=incoming.service_url,
                    reference=reference.serialize(),
                    person_id=caller.person_id,
                )
        except Exception:
            # Not fatal: the reply still goes out, and their next message records the chat.
            logger.warning("Could not record a newly opened 1:1 chat", exc_info=True)
        await send(context)

    await adapter.create_conversation(
        app_id, remember_then_send, parameters, incoming.channel_id, incoming.service_url
    )


def team_and_channel(activity: Activity) -> tuple[str | None, str | None]:
    """The team and channel ids Teams puts in a channel activity's channelData."""
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = channel_data.get("team")
    channel = channel_data.get("channel")
    return (
        team.get("id") if isinstance(team, dict) and isinstance(team.get("id"), str) else None,
        (
            channel.get("id")
            if isinstance(channel, dict) and isinstance(channel.get("id"), str)
            else None
        ),
    )


def channel_reference(activity: Activity, channel_id: str) -> ConversationReference:
    """A reference to a channel itself, made from any activity of its team: posting there
    starts a new thread (not a reply in the thread the activity came from)."""
    reference = TurnContext.get_conversation_reference(activity)
    reference.conversation = ConversationAccount(
        id=channel_id,
        conversation_type="channel",
        is_group=True,
        tenant_id=teams_tenant_id(activity),
    )
    reference.activity_id = None
    return reference


async def remember_channels(
    activity: Activity,
    *,
    sessions: async_sessionmaker[AsyncSession],
    team_id: str | None,
    channel_ids: Sequence[str],
) -> None:
    """Store a reference to each of the team's channels, with the tenant beside it."""

    async def save() -> None:
        async with transaction(sessions) as session:
            for channel_id in dict.fromkeys(channel_ids):
                await people.save_conversation_reference(
                    session,
                    conversation_id=channel_id,
                    conversation_type="channel",
                    tenant_id=teams_tenant_id(activity),
                    service_url=activity.service_url,
                    reference=channel_reference(activity, channel_id).serialize(),
                    team_id=team_id,
                    channel_id=channel_id,
                )

    try:
        await save()
    except IntegrityError:
        # Teams announces a new team twice at once (installationUpdate and
        # conversationUpdate) and the other turn stored a channel first: now it is updated.
        await save()


async def team_channel_ids(turn_context: TurnContext, team_id: str) -> list[str]:
    """The ids of the team's channels, as Teams lists them (the General channel's id is the
    team's), or just the General channel if Teams cannot say (logged)."""
    try:
        client = await TeamsInfo.get_teams_connector_client(turn_context)
        # msrest sends synchronously: in a thread, so the event loop carries on; bounded,
        # because the turn waits for it.
        async with asyncio.timeout(CHANNEL_LOOKUP_SECONDS):
            listing = await asyncio.to_thread(client.teams.get_teams_channels, team_id)
    except Exception as error:
        # Teams refusing (a team the bot is not in) or not answering in time happens, and the
        # General channel still works: the kind of failure is logged, not a traceback.
        logger.warning(
            "Could not list a team's channels (%s%s); kept its General channel",
            type(error).__name__,
            f" {error.response.status_code}" if isinstance(error, HttpOperationError) else "",
        )
        return [team_id]
    found = [channel.id for channel in listing.conversations or [] if channel.id]
    return [team_id, *found]


async def remember_channel(
    turn_context: TurnContext, *, sessions: async_sessionmaker[AsyncSession]
) -> str:
    """Store a reference to the channel itself (not the thread this message is in) and
    return its id: posting there starts a new thread, as a triage card or a digest should."""
    activity = turn_context.activity
    team_id, channel_id = team_and_channel(activity)
    # A channel message's conversation id is "<channel id>;messageid=<thread>".
    channel_id = channel_id or activity.conversation.id.split(";")[0]
    await remember_channels(activity, sessions=sessions, team_id=team_id, channel_ids=[channel_id])
    return channel_id
