"""Microsoft Graph end to end: the bot (authentication on, real HTTP) gets its Graph tokens
from a local Entra ID through MSAL's own code, and calls a local Graph. Departments pre-fill
forms; `install app` installs the Teams app for the Change Makers the bot cannot reach; the
bad days (throttling, expired tokens, missing permissions, a slow Graph) leave the bot
working."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import WORKER, create_app
from bot.graph import GraphClient, GraphPermissionMissing, GraphRefused, GraphUnavailable
from bot.identity import Identity
from bot.reminders import run_reminders
from storage.db import create_engine, session_factory
from tests.bot.conftest import make_settings
from tests.support.connector import FakeConnector
from tests.support.entra import FakeEntra
from tests.support.fake_graph import (
    CATALOG_READ,
    INSTALL_FOR_USER,
    USER_READ,
    FakeGraph,
    GraphUser,
)
from tests.support.openid import OpenIdServer
from tests.support.people import add_person
from tests.support.teams import (
    OFFICER,
    TENANT_ID,
    Reply,
    TeamsClient,
    TeamsUser,
    card_nodes,
    card_text,
    new_conversation_id,
    new_user,
)

APP_ID = "a1b2c3d4-0000-4000-8000-0000000000bb"
SECRET = "suite-secret"
TEAMS_APP_ID = "0d1e2f3a-0000-4000-8000-0000000000cc"
CATALOGUE_ID = "catalogue-ourcambridge"

pytestmark = pytest.mark.filterwarnings("error")


@dataclass
class SignedClient(TeamsClient):
    """A Teams client whose requests carry a Bot Framework token the bot accepts."""

    openid: OpenIdServer | None = None

    async def post(self, body: Any, *, headers: dict[str, str] | None = None) -> Reply:
        assert self.openid is not None
        token = self.openid.token(audience=APP_ID, service_url=self.connector.url)
        return await super().post(body, headers={"Authorization": f"Bearer {token}"})


@dataclass
class World:
    openid: OpenIdServer
    entra: FakeEntra
    graph: FakeGraph
    connector: FakeConnector
    http: aiohttp.ClientSession
    servers: list[TestServer] = field(default_factory=list)

    async def start_bot(self, database_url: str, *, graph_enabled: bool = True) -> TestServer:
        settings = make_settings(
            database_url,
            microsoft_app_id=APP_ID,
            microsoft_app_password=SECRET,
            microsoft_app_tenant_id=TENANT_ID,
            openid_metadata_url=self.openid.url + "/openid",
            graph_enabled=graph_enabled,
            graph_url=self.graph.url,
            teams_app_id=TEAMS_APP_ID,
        )
        server = TestServer(create_app(settings, msal_http_client=self.entra.http_client()))
        await server.start_server()
        self.servers.append(server)
        return server

    def chat(self, server: TestServer, user: TeamsUser, **fields: Any) -> SignedClient:
        self.connector.know(user)
        return SignedClient(
            bot_url=str(server.make_url("")).rstrip("/"),
            connector=self.connector,
            http=self.http,
            user=user,
            openid=self.openid,
            **fields,
        )

    def graph_token_requests(self) -> int:
        scope = self.graph.origin + "/.default"
        return sum(1 for r in self.entra.token_requests() if r.scope == scope)


@pytest.fixture
async def world(
    openid: OpenIdServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> AsyncIterator[World]:
    entra = FakeEntra(client_id=APP_ID, secret=SECRET).start()
    graph = await FakeGraph(catalogue={TEAMS_APP_ID: CATALOGUE_ID}).start()
    world = World(openid, entra, graph, connector, http)
    try:
        yield world
    finally:
        for server in world.servers:
            await server.close()
        await graph.close()
        entra.stop()


def _today() -> datetime:
    return datetime.now(ZoneInfo("Europe/London"))


def _value(card: dict[str, Any], input_id: str) -> str:
    """What the form shows in an input ("" when empty)."""
    found = [n for n in card_nodes(card) if n.get("id") == input_id]
    assert len(found) == 1, f"expected one input {input_id!r}"
    return str(found[0].get("value", ""))


def _bot_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the bot itself logged (not the fakes' access logs)."""
    ours = ("bot", "dialogs", "storage", "cards")
    return "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours)


async def _change_maker(
    world: World, database_url: str, name: str, *, department: str | None
) -> TeamsUser:
    """A roster Change Maker with no service area, known to the directory."""
    user = new_user(name)
    engine = create_engine(database_url)
    try:
        await add_person(session_factory(engine), name, email=user.email)
    finally:
        await engine.dispose()
    world.graph.add_user(user.aad_object_id, user.email, department)
    return user


# --- department pre-fill ------------------------------------------------------------------


async def test_the_idea_form_comes_with_the_service_area_of_the_persons_department(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    person = new_user("Dana Directory")
    world.graph.add_user(person.aad_object_id, person.email, "Housing Services")
    chat = world.chat(server, person)

    form = (await chat.say("idea")).card

    assert _value(form, "service_area") == "Housing"
    asked = [r for r in world.graph.requests if r.path.startswith("/users/")]
    assert [(r.path, r.query, r.status) for r in asked] == [
        (f"/users/{person.aad_object_id}", {"$select": "department"}, 200)
    ]
    # The token came from Entra ID through MSAL, for Graph.
    assert asked[0].token == world.entra.issued[world.graph.origin + "/.default"]


async def test_a_department_that_names_no_service_area_leaves_the_choice_empty(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    person = new_user("Gus General")
    world.graph.add_user(person.aad_object_id, person.email, "Services")  # fits several
    form = (await world.chat(server, person).say("idea")).card
    assert _value(form, "service_area") == ""
    assert len(world.graph.requests) == 1


async def test_the_session_forms_come_with_the_department_as_the_team(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    maker = await _change_maker(
        world, database_url, "Mo Maker", department="  Streets  and Open Spaces   Team "
    )
    long_name = await _change_maker(world, database_url, "Lou Long", department="x" * 300)
    chat = world.chat(server, maker)

    schedule = (await chat.say("schedule session")).card
    log = (await chat.say("log session")).card

    assert _value(schedule, "team") == "Streets and Open Spaces Team"
    assert _value(log, "team") == "Streets and Open Spaces Team"
    capped = (await world.chat(server, long_name).say("schedule session")).card
    assert _value(capped, "team") == "x" * 120


async def test_the_rosters_service_area_comes_first_and_graph_is_not_asked(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    user = new_user("Ria Roster")
    engine = create_engine(database_url)
    try:
        await add_person(
            session_factory(engine), user.name, email=user.email, service_area="Planning"
        )
    finally:
        await engine.dispose()
    world.graph.add_user(user.aad_object_id, user.email, "Housing")
    chat = world.chat(server, user)

    assert _value((await chat.say("schedule session")).card, "team") == "Planning"
    assert _value((await chat.say("idea")).card, "service_area") == "Planning"
    assert world.graph.requests == []


async def test_without_graph_the_forms_open_as_before_and_nothing_is_asked(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url, graph_enabled=False)
    maker = await _change_maker(world, database_url, "Nia Nograph", department="Housing")
    chat = world.chat(server, maker)

    idea = (await chat.say("idea")).card
    schedule = (await chat.say("schedule session")).card

    assert _value(idea, "service_area") == ""
    assert _value(schedule, "team") == ""
    assert world.graph.requests == []
    assert world.graph_token_requests() == 0


async def test_a_refused_permission_is_logged_and_the_form_opens_without_a_default(
    world: World, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await world.start_bot(database_url)
    world.graph.deny(USER_READ)
    maker = await _change_maker(world, database_url, "Pat Permission", department="Housing")
    chat = world.chat(server, maker)

    with caplog.at_level(logging.INFO):
        idea = (await chat.say("idea")).card
        schedule = (await chat.say("schedule session")).card

    assert _value(idea, "service_area") == ""
    assert _value(schedule, "team") == ""
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all(USER_READ in e and "admin consent" in e for e in errors)
    assert maker.email not in _bot_log(caplog) and maker.aad_object_id not in _bot_log(caplog)


async def test_a_slow_graph_does_not_hold_the_form_up(world: World, database_url: str) -> None:
    server = await world.start_bot(database_url)
    world.graph.delay = 10.0
    person = new_user("Sid Slow")
    world.graph.add_user(person.aad_object_id, person.email, "Housing")

    started = time.monotonic()
    form = (await world.chat(server, person).say("idea")).card

    assert _value(form, "service_area") == ""
    assert time.monotonic() - started < 3.5  # the lookup's 2 s timeout, not Graph's 10 s


# --- tokens ---------------------------------------------------------------------------------


async def test_one_token_serves_many_graph_calls(world: World, database_url: str) -> None:
    server = await world.start_bot(database_url)
    people = [new_user(f"Cam Cached {n}") for n in range(3)]
    for person in people:
        world.graph.add_user(person.aad_object_id, person.email, "Finance")

    for person in people:
        form = (await world.chat(server, person).say("idea")).card
        assert _value(form, "service_area") == "Finance"

    assert len(world.graph.requests) == 3
    assert world.graph_token_requests() == 1
    assert len(set(world.graph.tokens())) == 1


async def test_a_token_about_to_expire_is_renewed_before_it_is_used(
    world: World, database_url: str
) -> None:
    # MSAL does not hand out a token with under five minutes left: a 60-second token is
    # renewed on every call.
    world.entra.expires_in = 60
    server = await world.start_bot(database_url)
    people = [new_user(f"Eve Expiring {n}") for n in range(3)]
    for person in people:
        world.graph.add_user(person.aad_object_id, person.email, "Finance")

    for person in people:
        form = (await world.chat(server, person).say("idea")).card
        assert _value(form, "service_area") == "Finance"

    assert world.graph_token_requests() == 3
    assert len(set(world.graph.tokens())) == 3


async def test_a_token_graph_refuses_is_replaced_and_the_call_made_again(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    person = new_user("Rex Revoked")
    world.graph.add_user(person.aad_object_id, person.email, "Planning")
    world.graph.revoke_next_token()

    form = (await world.chat(server, person).say("idea")).card

    assert _value(form, "service_area") == "Planning"
    assert [r.status for r in world.graph.requests] == [401, 200]
    first, second = world.graph.tokens()
    assert first != second
    assert world.graph_token_requests() == 2


# --- throttling -----------------------------------------------------------------------------


async def test_throttled_calls_are_retried_and_succeed(world: World, database_url: str) -> None:
    server = await world.start_bot(database_url)
    person = new_user("Tia Throttled")
    world.graph.add_user(person.aad_object_id, person.email, "Finance")
    world.graph.throttle(2, retry_after="0")

    form = (await world.chat(server, person).say("idea")).card

    assert _value(form, "service_area") == "Finance"
    assert [r.status for r in world.graph.requests] == [429, 429, 200]


async def test_throttled_for_good_the_form_still_opens_without_a_default(
    world: World, database_url: str
) -> None:
    server = await world.start_bot(database_url)
    person = new_user("Ted Throttled")
    world.graph.add_user(person.aad_object_id, person.email, "Finance")
    world.graph.throttle(1_000_000, retry_after="0")

    form = (await world.chat(server, person).say("idea")).card

    assert _value(form, "service_area") == ""
    assert [r.status for r in world.graph.requests] == [429, 429, 429]  # three attempts


def _identity(entra: FakeEntra) -> Identity:
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        microsoft_app_id=APP_ID,
        microsoft_app_password=SECRET,
        microsoft_app_tenant_id=TENANT_ID,
    )
    return Identity(settings, http_client=entra.http_client())


async def test_the_client_waits_as_long_as_retry_after_says(world: World) -> None:
    world.graph.add_user("aad-wait", "wait@cambridge.gov.uk", "Finance")
    world.graph.throttle(1, retry_after="1")
    graph = GraphClient(_identity(world.entra), base_url=world.graph.url)
    try:
        started = time.monotonic()
        assert await graph.department("aad-wait") == "Finance"
        assert time.monotonic() - started >= 1.0
    finally:
        await graph.close()


async def test_the_client_gives_up_rather_than_wait_too_long(world: World) -> None:
    world.graph.add_user("aad-long", "long@cambridge.gov.uk", "Finance")
    graph = GraphClient(_identity(world.entra), base_url=world.graph.url)
    try:
        world.graph.throttle(1, retry_after="3600")
        with pytest.raises(GraphUnavailable):
            await graph.department("aad-long")
        assert len(world.graph.requests) == 1  # no hour-long wait, no second try

        world.graph.throttle(1_000_000, retry_after="0", status=503)
        with pytest.raises(GraphUnavailable):
            await graph.department("aad-long")
        assert len(world.graph.requests) == 4
    finally:
        await graph.close()


async def test_the_client_names_the_missing_permission(world: World) -> None:
    graph = GraphClient(_identity(world.entra), base_url=world.graph.url)
    try:
        world.graph.deny(CATALOG_READ)
        with pytest.raises(GraphPermissionMissing) as refused:
            await graph.catalog_app_id(TEAMS_APP_ID)
        assert refused.value.permission == CATALOG_READ
        assert CATALOG_READ in str(refused.value) and "admin consent" in str(refused.value)
    finally:
        await graph.close()


async def test_graph_out_of_reach_is_unavailable(world: World) -> None:
    # A port nothing listens on: connection refused, each of the three attempts.
    graph = GraphClient(_identity(world.entra), base_url="http://127.0.0.1:9/v1.0")
    try:
        with pytest.raises(GraphUnavailable):
            await graph.department("aad-nobody")
    finally:
        await graph.close()


# --- installing the app for Change Makers ---------------------------------------------------


@dataclass
class Roster:
    reachable: TeamsUser  # has a 1:1 chat with the bot
    new: TeamsUser  # in the directory, app not installed
    already: TeamsUser  # in the directory, app installed, no chat stored
    missing: TeamsUser  # not in the directory
    leader: TeamsUser  # a Change Leader without a chat: not a Change Maker


async def _roster(world: World, database_url: str, bot: TestServer | None = None) -> Roster:
    """Four Change Makers and a leader; with `bot`, Ada opens the app there, else her chat is
    only recorded in the database."""
    roster = Roster(
        reachable=new_user("Ada Reachable"),
        new=new_user("Ben New"),
        already=new_user("Cat Already"),
        missing=new_user("Dee Missing"),
        leader=new_user("Lee Leader"),
    )
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        await add_person(
            sessions, "Ada Reachable", email=roster.reachable.email, reachable=bot is None
        )
        for user in (roster.new, roster.already, roster.missing):
            await add_person(sessions, user.name, email=user.email)
        await add_person(sessions, "Lee Leader", email=roster.leader.email, role="change_leader")
    finally:
        await engine.dispose()
    for user in (roster.reachable, roster.new, roster.already, roster.leader):
        world.graph.add_user(user.aad_object_id, user.email)
    world.graph.installed[roster.already.aad_object_id] = {CATALOGUE_ID}
    if bot is not None:
        ada = world.chat(bot, roster.reachable, conversation_id=new_conversation_id())
        assert (await ada.install()).status == 201
    return roster


def _installs(graph: FakeGraph) -> list[str]:
    return [
        r.path
        for r in graph.requests
        if r.method == "POST" and r.path.endswith("/teamwork/installedApps")
    ]


async def _results(world: World, chat: SignedClient, count: int = 1) -> list[str]:
    """The texts the bot sent to `chat` on its own (through the outbox, so not replies to a
    message): the results of `install app`, once `count` of them have arrived."""

    def results() -> list[str]:
        sent = world.connector.to(chat.conversation_id)
        return [a.get("text") or "" for a in sent if not a.get("replyToId")]

    while len(results()) < count:
        # Fails (after the connector's wait) if nothing more arrives.
        await world.connector.wait_for(
            chat.conversation_id, count=len(world.connector.to(chat.conversation_id)) + 1
        )
    return results()


async def _say_promptly(chat: SignedClient, text: str) -> Reply:
    # A turn that waited for Graph would wait for ever here: fail instead of hanging.
    async with asyncio.timeout(5):
        return await chat.say(text)


async def test_install_app_installs_it_for_the_change_makers_the_bot_cannot_reach(
    world: World, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await world.start_bot(fresh_database_url)
    roster = await _roster(world, fresh_database_url, server)
    installed_chats: dict[str, SignedClient] = {}

    async def teams_tells_the_bot(user: GraphUser) -> None:
        # What Teams does once the installation is done: an installationUpdate in the new
        # 1:1 chat.
        person = next(u for u in (roster.new, roster.already) if u.aad_object_id == user.id)
        chat = world.chat(server, person, conversation_id=new_conversation_id())
        installed_chats[person.email] = chat
        assert (await chat.install()).status == 201

    world.graph.on_install = teams_tells_the_bot
    officer = world.chat(server, OFFICER)

    with caplog.at_level(logging.INFO):
        reply = await officer.say("install app")
        (result,) = await _results(world, officer)
        await world.graph.settled()

    assert reply.texts == [
        "Installing the app for 3 Change Makers the bot cannot reach yet; I'll message you "
        "the result."
    ]
    assert result.startswith(
        "Installed for 1; 1 already had it (now reachable); 1 not found in the directory."
    )
    assert world.graph.installed[roster.new.aad_object_id] == {CATALOGUE_ID}
    assert world.graph.installed[roster.already.aad_object_id] == {CATALOGUE_ID}
    assert roster.reachable.aad_object_id not in world.graph.installed
    assert roster.leader.aad_object_id not in world.graph.installed
    # Nobody here has talked to the bot: Graph finds them by the roster's email (their UPN).
    assert sorted(_installs(world.graph)) == sorted(
        f"/users/{u.email}/teamwork/installedApps"
        for u in (roster.new, roster.already, roster.missing)
    )
    # Cat had the app already: Teams sends nothing, so her chat was asked of Graph.
    cats = f"/users/{roster.already.email}/teamwork/installedApps"
    cat_installation = FakeGraph.installation_id(roster.already.aad_object_id, CATALOGUE_ID)
    lookups = [(r.method, r.path, r.query, r.status) for r in world.graph.requests]
    assert (
        "GET",
        cats,
        {"$expand": "teamsApp", "$filter": f"teamsApp/id eq '{CATALOGUE_ID}'"},
        200,
    ) in lookups
    assert ("GET", f"{cats}/{cat_installation}/chat", {}, 200) in lookups
    assert not any(
        r.method == "GET"
        and "installedApps" in r.path
        and r.path != cats
        and not r.path.startswith(cats)
        for r in world.graph.requests
    )
    for person in (roster.new, roster.already, roster.missing, roster.reachable):
        assert person.email not in _bot_log(caplog)  # counts in the log, never who

    # Teams' installationUpdate stored Ben's chat, and Graph named Cat's: the morning
    # reminders now reach both.
    assert server.app is not None
    engine = create_engine(fresh_database_url)
    try:
        run = await run_reminders(
            session_factory(engine), server.app[WORKER], today=_today().date()
        )
    finally:
        await engine.dispose()
    ben = installed_chats[roster.new.email].conversation_id
    welcome, reminder = await world.connector.wait_for(ben, count=2)
    assert "Time to plan your Making It Real session" in card_text(
        reminder["attachments"][0]["content"]
    )
    (cats_reminder,) = await world.connector.wait_for(
        FakeGraph.chat_id(roster.already.aad_object_id)
    )
    assert "Time to plan your Making It Real session" in card_text(
        cats_reminder["attachments"][0]["content"]
    )
    assert len(run.unreachable) == 1  # Dee, whom the directory does not know

    # A second run finds Ben and Cat reachable: only Dee is asked about again.
    again = await officer.say("install app")
    assert again.texts == [
        "Installing the app for 1 Change Maker the bot cannot reach yet; I'll message you "
        "the result."
    ]
    assert (await _results(world, officer, count=2))[1] == (
        "Installed for 0; 0 already had it; 1 not found in the directory."
    )


async def test_the_turn_is_answered_at_once_while_the_installs_run_on(
    world: World, fresh_database_url: str
) -> None:
    server = await world.start_bot(fresh_database_url)
    roster = await _roster(world, fresh_database_url)
    world.graph.install_gate = asyncio.Event()  # Graph holds every install until told
    officer = world.chat(server, OFFICER)

    reply = await _say_promptly(officer, "install app")
    again = await _say_promptly(officer, "install app")

    assert reply.texts[0].startswith("Installing the app for 3 Change Makers")
    assert again.texts == [
        "I'm already installing the app for Change Makers; I'll message you the result when "
        "it's done."
    ]
    assert world.graph.installed == {roster.already.aad_object_id: {CATALOGUE_ID}}
    assert _results_so_far(world, officer) == []

    world.graph.install_gate.set()
    (result,) = await _results(world, officer)

    assert result.startswith("Installed for 1; 1 already had it (now reachable);")
    assert world.graph.installed[roster.new.aad_object_id] == {CATALOGUE_ID}
    # Done: the next `install app` starts a new run.
    assert (await officer.say("install app")).texts[0].startswith("Installing the app for 2 ")
    assert len(await _results(world, officer, count=2)) == 2


def _results_so_far(world: World, chat: SignedClient) -> list[dict[str, Any]]:
    return [a for a in world.connector.to(chat.conversation_id) if not a.get("replyToId")]


async def test_a_change_maker_the_bot_knows_is_found_by_their_object_id(
    world: World, fresh_database_url: str
) -> None:
    # Ben opened the app once, then removed it: the bot knows his object id, not his chat.
    server = await world.start_bot(fresh_database_url)
    roster = await _roster(world, fresh_database_url)
    ben = world.chat(server, roster.new)
    assert (await ben.install()).status == 201
    removed = await ben.post(ben.activity(type="installationUpdate", action="remove"))
    assert removed.status == 201
    officer = world.chat(server, OFFICER)

    assert (await officer.say("install app")).texts[0].startswith("Installing the app for 3 ")
    await _results(world, officer)

    assert f"/users/{roster.new.aad_object_id}/teamwork/installedApps" in _installs(world.graph)
    assert f"/users/{roster.new.email}/teamwork/installedApps" not in _installs(world.graph)
    assert world.graph.installed[roster.new.aad_object_id] == {CATALOGUE_ID}


async def test_a_refusal_for_one_person_is_counted_and_the_run_carries_on(
    world: World, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await world.start_bot(fresh_database_url)
    roster = await _roster(world, fresh_database_url)
    world.graph.unlicensed.add(roster.new.aad_object_id)  # Graph: 403, no licence for Ben
    officer = world.chat(server, OFFICER)

    with caplog.at_level(logging.INFO):
        await officer.say("install app")
        (result,) = await _results(world, officer)

    assert result == (
        "Installed for 0; 1 already had it (now reachable); 1 not found in the directory; "
        "1 could not be done now (try again later)."
    )
    assert roster.new.aad_object_id not in world.graph.installed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Failed to get license information" in w for w in warnings)
    assert roster.new.email not in _bot_log(caplog)


async def test_the_client_tells_a_refused_person_from_a_missing_permission(
    world: World,
) -> None:
    person = world.graph.add_user("aad-unlicensed", "unlicensed@cambridge.gov.uk")
    world.graph.unlicensed.add(person.id)
    graph = GraphClient(_identity(world.entra), base_url=world.graph.url)
    try:
        with pytest.raises(GraphRefused) as refused:
            await graph.install_for(person.email, CATALOGUE_ID)
        assert not isinstance(refused.value, GraphPermissionMissing)
        assert "Failed to get license information" in str(refused.value)

        world.graph.deny(INSTALL_FOR_USER)  # "Forbidden", "Missing role permissions ..."
        with pytest.raises(GraphPermissionMissing):
            await graph.install_for(person.email, CATALOGUE_ID)
        world.graph.deny(USER_READ)  # "Authorization_RequestDenied", "Insufficient privileges"
        with pytest.raises(GraphPermissionMissing):
            await graph.department(person.id)
    finally:
        await graph.close()


async def test_install_app_is_for_the_transformation_team_only(
    world: World, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await world.start_bot(fresh_database_url)
    await _roster(world, fresh_database_url)
    staff = world.chat(server, new_user("Sam Someone"))

    with caplog.at_level(logging.INFO):
        reply = await staff.say("install for change makers")

    assert reply.texts == ["Only the transformation team can install the app for Change Makers."]
    assert world.graph.requests == []
    assert "Refused install app" in _bot_log(caplog)


async def test_a_missing_install_permission_is_logged_and_the_admin_told(
    world: World, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await world.start_bot(fresh_database_url)
    roster = await _roster(world, fresh_database_url)
    world.graph.deny(INSTALL_FOR_USER)
    officer = world.chat(server, OFFICER)

    with caplog.at_level(logging.INFO):
        await officer.say("install app")
        (result,) = await _results(world, officer)

    assert INSTALL_FOR_USER in result and "admin consent" in result
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and INSTALL_FOR_USER in errors[0].getMessage()
    assert roster.new.aad_object_id not in world.graph.installed
    # The bot carries on.
    assert (await officer.say("help")).cards


async def test_an_app_missing_from_the_catalogue_is_explained(
    world: World, fresh_database_url: str
) -> None:
    server = await world.start_bot(fresh_database_url)
    await _roster(world, fresh_database_url)
    world.graph.catalogue.clear()
    officer = world.chat(server, OFFICER)

    await officer.say("install app")
    (result,) = await _results(world, officer)

    assert "Teams admin centre" in result
    assert _installs(world.graph) == []


async def test_install_app_without_graph_says_it_is_not_set_up(
    world: World, fresh_database_url: str
) -> None:
    server = await world.start_bot(fresh_database_url, graph_enabled=False)
    await _roster(world, fresh_database_url)

    reply = await world.chat(server, OFFICER).say("install app")

    assert reply.texts == ["Microsoft Graph is not set up for this bot (see docs/deploy.md)."]
    assert world.graph.requests == []


# --- the command line ----------------------------------------------------------------------

MSI_CLIENT_ID = "5e6f7a8b-0000-4000-8000-0000000000dd"


def _cli(world: World, database_url: str, *, graph_enabled: bool = True) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("Microsoft", "GRAPH_", "TEAMS_"))
    }
    return clean | {
        "DATABASE_URL": database_url,
        "MicrosoftAppId": MSI_CLIENT_ID,
        "MicrosoftAppType": "UserAssignedMSI",
        "MicrosoftAppTenantId": TENANT_ID,
        "GRAPH_ENABLED": "true" if graph_enabled else "false",
        "GRAPH_URL": world.graph.url,
        "TEAMS_APP_ID": TEAMS_APP_ID,
        **world.entra.msi_env(),
    }


async def _run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # In a thread: the fake Graph answers the process from this test's event loop.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "roster", "install-app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_line_installs_and_prints_the_counts(
    openid: OpenIdServer,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    fresh_database_url: str,
) -> None:
    # The command line runs where the bot runs, here with a managed identity.
    entra = FakeEntra(client_id=MSI_CLIENT_ID).start()
    graph = await FakeGraph(catalogue={TEAMS_APP_ID: CATALOGUE_ID}).start()
    world = World(openid, entra, graph, connector, http)
    try:
        roster = await _roster(world, fresh_database_url)

        result = await _run_cli(_cli(world, fresh_database_url))

        assert result.returncode == 0, result.stderr
        # Cat already had the app, but the bot has heard from nobody in the tenant yet (Ada's
        # chat here has no tenant): no address to reach her at, so she is counted apart.
        assert result.stdout == (
            "Installed for 1; 1 already had it but can't be reached until they open the app "
            "(I haven't heard from anyone in your organisation yet); 1 not found in the "
            "directory.\n"
        )
        assert graph.installed[roster.new.aad_object_id] == {CATALOGUE_ID}
        assert [r.kind for r in entra.token_requests()] == ["msi"]
        assert roster.new.email not in result.stderr

        graph.deny(INSTALL_FOR_USER)
        refused = await _run_cli(_cli(world, fresh_database_url))
        assert refused.returncode == 1
        assert INSTALL_FOR_USER in refused.stderr

        off = await _run_cli(_cli(world, fresh_database_url, graph_enabled=False))
        assert off.returncode == 1
        assert "GRAPH_ENABLED" in off.stderr
    finally:
        await graph.close()
        entra.stop()
