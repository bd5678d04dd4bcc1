"""Subscribed channels without going through Teams: for the fan-out tests and benchmark,
which need hundreds of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from botbuilder.core import TurnContext
from botbuilder.schema import Activity
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import people, subscriptions
from storage.db import transaction
from storage.models import utcnow
from tests.support.teams import TENANT_ID, activity


async def add_channels(
    sessions: async_sessionmaker[AsyncSession],
    service_url: str,
    channels: Sequence[str],
    *,
    team_id: str,
    subscribe: bool = True,
) -> None:
    """Store each channel's conversation reference (as the bot does when it is added to a
    team) and subscribe it to the digest, an hour ago."""
    an_hour_ago = utcnow() - timedelta(hours=1)
    async with transaction(sessions) as session:
        for channel in channels:
            incoming = Activity().deserialize(
                activity(service_url, conversation_id=channel, conversation_type="channel")
            )
            await people.save_conversation_reference(
                session,
                conversation_id=channel,
                conversation_type="channel",
                tenant_id=TENANT_ID,
                service_url=service_url,
                reference=TurnContext.get_conversation_reference(incoming).serialize(),
                team_id=team_id,
                channel_id=channel,
            )
            if subscribe:
                await subscriptions.subscribe(
                    session,
                    conversation_id=channel,
                    team_id=team_id,
                    person_id=None,
                    now=an_hour_ago,
                )
