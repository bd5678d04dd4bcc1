"""Channels and the weekly digest over HTTP: the bot added to a team remembers each channel
(with the tenant); `subscribe`, `digest settings` and `unsubscribe` in a channel, by anyone
there, with the settings card checked on the server and shown again with its reasons; a new
channel remembered, a deleted one forgotten with its subscription; the bot removed or the
team deleted ends every subscription of the team. Replies are read at the fake connector."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import WORKER
from bot.digests import queue_digests_now
from storage.db import create_engine, session_factory
from storage.models import ConversationReference, DigestSubscription, Person, utcnow
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import (
    BOT_ID,
    BOT_NAME,
    OFFICER,
    STAFF,
    TENANT_ID,
    TeamsClient,
    TeamsUser,
    card_text,
    input_values,
    new_conversation_id,
    new_user,
)

_threads = itertools.count(1_700_000_000_000)

IN_A_CHANNEL = "The weekly digest goes to Teams channels"


def _thread_id() -> str:
    return f"19:{uuid.uuid4().hex}@thread.tacv2"


@dataclass
class ChannelClient(TeamsClient):
    """Someone in a team's channel: each message starts a thread in it, as in Teams, and the
    channel data names the team and the channel."""

    team_id: str = ""
    channel_id: str = ""
    extra_channel_data: dict[str, Any] = field(default_factory=dict)

    def activity(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault(
            "channelData",
            {
                "tenant": {"id": TENANT_ID},
                "team": {"id": self.team_id},
                "channel": {"id": self.channel_id},
                **self.extra_channel_data,
            },
        )
        return super().activity(**fields)


@dataclass
class Team:
    """A team with a General channel (whose id is the team's) and two more."""

    id: str
    general: str
    planning: str
    benefits: str
    bot_url: str
    connector: FakeConnector
    http: aiohttp.ClientSession

    @property
    def channels(self) -> list[str]:
        return [self.general, self.planning, self.benefits]

    def member(self, channel_id: str, user: TeamsUser = STAFF) -> ChannelClient:
        self.connector.know(user)
        return ChannelClient(
            bot_url=self.bot_url,
            connector=self.connector,
            http=self.http,
            user=user,
            conversation_type="channel",
            conversation_id=f"{channel_id};messageid={next(_threads)}",
            team_id=self.id,
            channel_id=channel_id,
        )

    def event(self, **fields: Any) -> dict[str, Any]:
        """A conversationUpdate about the team, as Teams posts it in the General channel."""
        client = self.member(self.general)
        client.conversation_id = self.general
        channel_data = {"tenant": {"id": TENANT_ID}, "team": {"id": self.id, "name": "Revenues"}}
        channel_data |= fields.pop("channel_data", {})
        return client.activity(type="conversationUpdate", channelData=channel_data, **fields)

    async def post(self, body: dict[str, Any]) -> Any:
        return await self.member(self.general).post(body)


def _new_team(bot_url: str, connector: FakeConnector, http: aiohttp.ClientSession) -> Team:
    team_id = _thread_id()
    team = Team(team_id, team_id, _thread_id(), _thread_id(), bot_url, connector, http)
    connector.team_channels[team.id] = [
        {"id": team.general},  # Teams gives the General channel no name
        {"id": team.planning, "name": "Planning"},
        {"id": team.benefits, "name": "Benefits"},
    ]
    return team


@pytest.fixture
def team(bot_server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession) -> Team:
    return _new_team(bot_server.url, connector, http)


async def _references(
    sessions: async_sessionmaker[AsyncSession], ids: list[str]
) -> dict[str, ConversationReference]:
    async with sessions() as session:
        found = await session.exec(
            select(ConversationReference).where(col(ConversationReference.conversation_id).in_(ids))
        )
        return {row.conversation_id: row for row in found.all()}


async def _subscription(
    sessions: async_sessionmaker[AsyncSession], channel_id: str
) -> DigestSubscription | None:
    async with sessions() as session:
        found = await session.exec(
            select(DigestSubscription).where(DigestSubscription.conversation_id == channel_id)
        )
        return found.first()


async def _person_id(sessions: async_sessionmaker[AsyncSession], user: TeamsUser) -> int | None:
    async with sessions() as session:
        found = await session.exec(
            select(Person.id).where(Person.aad_object_id == user.aad_object_id)
        )
        return found.first()


def _bot_added() -> dict[str, Any]:
    return {"membersAdded": [{"id": BOT_ID, "name": BOT_NAME}]}


# --- subscribing in a channel -------------------------------------------------------------------


async def test_a_channel_subscribes_changes_its_time_and_unsubscribes(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sam, alex = new_user("Sam Staff"), new_user("Alex Other")
    in_planning = team.member(team.planning, sam)

    # Subscribed on Mondays at 09:00 by default, with the settings card to change that.
    reply = await in_planning.say("subscribe")
    card = reply.card
    shown = card_text(card)
    assert (
        "Subscribed: this channel will get the weekly digest every Monday at 09:00 (UK time)."
        in shown
    )
    assert input_values(card) == {"day": "Monday", "time": "09:00"}
    subscription = await _subscription(sessions, team.planning)
    assert subscription is not None and subscription.active
    assert (subscription.weekday, subscription.send_time) == (0, "09:00")
    assert subscription.team_id == team.id
    assert subscription.subscribed_by == await _person_id(sessions, sam)
    # The digest goes to the channel itself (a new thread), not to this message's thread.
    stored = (await _references(sessions, [team.planning]))[team.planning]
    assert (stored.conversation_type, stored.tenant_id) == ("channel", TENANT_ID)
    assert (stored.team_id, stored.channel_id) == (team.id, team.planning)
    assert stored.reference["conversation"]["id"] == team.planning
    assert stored.reference["serviceUrl"] == team.connector.url

    again = await team.member(team.planning, sam).say("subscribe")
    assert "This channel is already subscribed: the digest comes every Monday at 09:00" in (
        card_text(again.card)
    )

    # Someone else in the channel moves it: it is the channel's, not Sam's.
    in_planning_alex = team.member(team.planning, alex)
    saved = await in_planning_alex.press(card, "Save", day="Wednesday", time="17:30")
    assert "Saved: the digest now comes every Wednesday at 17:30 (UK time)." in card_text(
        saved.card
    )
    assert input_values(saved.card) == {"day": "Wednesday", "time": "17:30"}
    subscription = await _subscription(sessions, team.planning)
    assert subscription is not None
    assert (subscription.weekday, subscription.send_time) == (2, "17:30")
    assert subscription.subscribed_by == await _person_id(sessions, sam), "who subscribed it"

    # A bad submission comes back with the reasons and what was typed; nothing changes.
    refused = await in_planning_alex.press(saved.card, "Save", day="", time="7pm")
    shown = card_text(refused.card)
    assert "Choose the day the digest comes." in shown
    assert "The time must be a time of day written HH:MM, for example 09:00." in shown
    assert "every Wednesday at 17:30" in shown, "what is saved"
    assert input_values(refused.card) == {"day": "", "time": "7pm"}
    subscription = await _subscription(sessions, team.planning)
    assert subscription is not None
    assert (subscription.weekday, subscription.send_time) == (2, "17:30")

    settings = (await team.member(team.planning, alex).say("digest settings")).card
    assert input_values(settings) == {"day": "Wednesday", "time": "17:30"}
    assert "every Wednesday at 17:30 (UK time)" in card_text(settings)

    # The Unsubscribe button: no inputs sent with it, the subscription ends.
    stopped = await in_planning_alex.press(settings, "Unsubscribe")
    assert stopped.texts[0].startswith("Unsubscribed: this channel won't get the weekly digest")
    subscription = await _subscription(sessions, team.planning)
    assert subscription is not None and not subscription.active
    assert subscription.end_reason == "unsubscribed" and subscription.ended_at is not None

    nothing = await team.member(team.planning).say("digest settings")
    assert nothing.cards == [] and "isn't subscribed" in nothing.texts[0]
    nothing = await team.member(team.planning).say("unsubscribe")
    assert "nothing to stop" in nothing.texts[0]
    stale = await in_planning_alex.press(settings, "Save", day="Friday", time="08:00")
    assert stale.cards == [] and "nothing was changed" in stale.texts[0]

    # Subscribed again: the day and time the channel chose come back.
    back = await team.member(team.planning, alex).say("subscribe")
    assert "every Wednesday at 17:30 (UK time)" in card_text(back.card)
    subscription = await _subscription(sessions, team.planning)
    assert subscription is not None and subscription.active
    assert subscription.subscribed_by == await _person_id(sessions, alex)


async def test_the_commands_are_for_channels(
    bot_server: BotServer,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    personal = TeamsClient(bot_url=bot_server.url, connector=connector, http=http)
    group = TeamsClient(
        bot_url=bot_server.url,
        connector=connector,
        http=http,
        conversation_id=new_conversation_id("group"),
        conversation_type="groupChat",
    )
    for client in (personal, group):
        for command in ("subscribe", "unsubscribe", "digest settings"):
            reply = await client.say(command)
            assert reply.cards == [] and reply.texts[0].startswith(IN_A_CHANNEL), reply.texts
        forged = await client.submit({"action": "digest_settings_save", "day": "1", "time": "1:00"})
        assert forged.texts[0].startswith(IN_A_CHANNEL)
        assert await _subscription(sessions, client.conversation_id) is None


async def test_a_channel_message_without_a_mention_is_not_a_command(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    member = team.member(team.benefits)
    reply = await member.post(member.activity(text="subscribe"))
    assert reply.sent == []
    assert await _subscription(sessions, team.benefits) is None


# --- the team ---------------------------------------------------------------------------------


async def test_the_bot_added_to_a_team_remembers_every_channel(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reply = await team.post(team.event(**_bot_added()))
    assert reply.status == 201
    stored = await _references(sessions, team.channels)
    assert set(stored) == set(team.channels)
    for channel_id, row in stored.items():
        assert row.conversation_type == "channel"
        assert row.tenant_id == TENANT_ID, "kept beside the reference, which drops it"
        assert (row.team_id, row.channel_id) == (team.id, channel_id)
        assert row.service_url == team.connector.url
        assert row.reference["conversation"]["id"] == channel_id
        assert row.reference["conversation"]["conversationType"] == "channel"
        assert row.reference["bot"]["id"] == BOT_ID
        assert row.reference.get("activityId") is None, "a new thread, not a reply"


async def test_installed_in_a_team_it_welcomes_says_how_to_subscribe_and_remembers(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = team.event() | {"type": "installationUpdate", "action": "add"}
    reply = await team.post(body)
    assert "**subscribe**" in card_text(reply.card)
    assert set(await _references(sessions, team.channels)) == set(team.channels)


async def test_teams_two_announcements_at_once_store_each_channel_once(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Teams posts installationUpdate and conversationUpdate together when the app is added
    to a team; two replicas may take one each."""
    installed = team.event() | {"type": "installationUpdate", "action": "add"}
    replies = await asyncio.gather(
        team.post(installed), team.post(team.event(**_bot_added())), team.post(installed)
    )
    assert [r.status for r in replies] == [201, 201, 201]
    stored = await _references(sessions, team.channels)
    assert set(stored) == set(team.channels)
    assert all(row.tenant_id == TENANT_ID for row in stored.values())


async def test_a_team_whose_channels_cannot_be_listed_keeps_its_general_channel(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    del team.connector.team_channels[team.id]
    reply = await team.post(team.event(**_bot_added()))
    assert reply.status == 201
    assert set(await _references(sessions, team.channels)) == {team.general}


async def test_a_new_channel_is_remembered_and_a_deleted_one_forgotten(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await team.post(team.event(**_bot_added()))
    new_channel = _thread_id()
    created = await team.post(
        team.event(
            channel_data={
                "eventType": "channelCreated",
                "channel": {"id": new_channel, "name": "Projects"},
            }
        )
    )
    assert created.status == 201 and created.sent == []
    row = (await _references(sessions, [new_channel]))[new_channel]
    assert (row.team_id, row.channel_id, row.tenant_id) == (team.id, new_channel, TENANT_ID)
    assert row.reference["conversation"]["id"] == new_channel

    in_new = team.member(new_channel)
    await in_new.say("subscribe")
    await team.member(team.planning).say("subscribe")
    # The subscribe message's thread was remembered too; it goes with its channel.
    assert in_new.conversation_id in await _references(sessions, [in_new.conversation_id])

    deleted = await team.post(
        team.event(
            channel_data={
                "eventType": "channelDeleted",
                "channel": {"id": new_channel, "name": "Projects"},
            }
        )
    )
    assert deleted.status == 201 and deleted.sent == []
    assert await _references(sessions, [new_channel, in_new.conversation_id]) == {}
    ended = await _subscription(sessions, new_channel)
    assert ended is not None and not ended.active and ended.end_reason == "channel deleted"
    kept = await _subscription(sessions, team.planning)
    assert kept is not None and kept.active
    assert set(await _references(sessions, team.channels)) == set(team.channels)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("bot removed", "bot removed from the team"),
        ("app uninstalled", "bot removed from the team"),
        ("team deleted", "team deleted"),
    ],
)
async def test_leaving_a_team_ends_its_subscriptions(
    team: Team,
    bot_server: BotServer,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    sessions: async_sessionmaker[AsyncSession],
    how: str,
    reason: str,
) -> None:
    other = _new_team(bot_server.url, connector, http)
    for each in (team, other):
        await each.post(each.event(**_bot_added()))
    for channel_id in (team.general, team.planning):
        await team.member(channel_id).say("subscribe")
    await other.member(other.planning).say("subscribe")

    if how == "bot removed":
        body = team.event(membersRemoved=[{"id": BOT_ID, "name": BOT_NAME}])
    elif how == "app uninstalled":
        body = team.event() | {"type": "installationUpdate", "action": "remove"}
    else:
        body = team.event(channel_data={"eventType": "teamDeleted"})
    reply = await team.post(body)
    assert reply.status == 201 and reply.sent == []

    assert await _references(sessions, team.channels) == {}
    for channel_id in (team.general, team.planning):
        ended = await _subscription(sessions, channel_id)
        assert ended is not None and not ended.active and ended.end_reason == reason
    kept = await _subscription(sessions, other.planning)
    assert kept is not None and kept.active
    assert set(await _references(sessions, other.channels)) == set(other.channels)


async def test_someone_else_leaving_the_team_changes_nothing(
    team: Team, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await team.post(team.event(**_bot_added()))
    await team.member(team.planning).say("subscribe")
    leaver = new_user("Lee Leaver")
    reply = await team.post(team.event(membersRemoved=[leaver.account]))
    assert reply.status == 201
    assert set(await _references(sessions, team.channels)) == set(team.channels)
    kept = await _subscription(sessions, team.planning)
    assert kept is not None and kept.active


# --- the digest reaches the channel -------------------------------------------------------------


async def test_a_subscribed_channel_gets_the_digest_as_a_new_thread(
    fresh_database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    server = await BotServer(make_settings(fresh_database_url)).start()
    engine = create_engine(fresh_database_url)
    try:
        team = _new_team(server.url, connector, http)
        member = team.member(team.planning)
        await member.say("subscribe")
        assert server.server is not None
        run = await queue_digests_now(
            session_factory(engine), now=utcnow(), zone=server.settings.zone
        )
        assert (run.due, run.queued) == (1, 1)
        await server.server.app[WORKER].deliver_due()
        sent = await connector.wait_for(team.planning, 1)
        assert len(sent) == 1
        assert sent[0]["conversation"]["id"] == team.planning
        assert not sent[0].get("replyToId")
        assert sent[0]["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert connector.to(member.conversation_id) != [], "the settings card, in the thread"
    finally:
        await engine.dispose()
        await server.stop()


# --- digest preview and unreachable channels ----------------------------------------------------


async def test_digest_preview_goes_to_the_admin_who_asked_only(
    team: Team, connector: FakeConnector
) -> None:
    in_channel = team.member(team.planning, OFFICER)
    before = len(_private_digests(connector))
    reply = await in_channel.say("digest preview")
    assert reply.texts == ["I've sent that to you in a private chat."]
    assert connector.created[-1]["members"][0]["id"] == OFFICER.id
    assert len(_private_digests(connector)) == before + 1
    assert not any(_is_digest(a) for a in connector.to(in_channel.conversation_id))
    assert not any(_is_digest(a) for a in connector.to(team.planning)), "not in the channel"

    staff = team.member(team.planning, new_user("Sam Curious"))
    refused = await staff.say("digest preview")
    assert "for the transformation team" in " ".join(refused.texts)
    assert not any(_is_digest(a) for a in connector.to(staff.conversation_id))


async def test_a_channel_teams_refuses_for_good_ends_its_subscription(
    fresh_database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    server = await BotServer(make_settings(fresh_database_url)).start()
    engine = create_engine(fresh_database_url)
    sessions = session_factory(engine)
    try:
        team = _new_team(server.url, connector, http)
        await team.member(team.benefits).say("subscribe")
        connector.refuse = lambda sent: (403, None) if _is_digest(sent) else None
        await queue_digests_now(sessions, now=utcnow(), zone=server.settings.zone)
        assert server.server is not None
        report = await server.server.app[WORKER].deliver_due()
        assert report.failed == 1
        subscription = await _subscription(sessions, team.benefits)
        assert subscription is not None and not subscription.active
        assert subscription.end_reason == "unreachable"
        assert await _references(sessions, [team.benefits]) == {}, "the channel is forgotten"
    finally:
        connector.refuse = None
        await engine.dispose()
        await server.stop()


def _private_digests(connector: FakeConnector) -> list[dict[str, Any]]:
    """Digest cards sent to 1:1 chats the bot opened (the fake connector names them so)."""
    return [
        sent.activity
        for sent in connector.sent
        if sent.conversation_id.startswith("a:created-") and _is_digest(sent.activity)
    ]


def _is_digest(activity: dict[str, Any]) -> bool:
    return any(
        "This week in Our Cambridge" in str(attachment.get("content"))
        for attachment in activity.get("attachments") or []
    )
