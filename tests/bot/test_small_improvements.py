"""Small improvements over HTTP, the whole lifecycle: submit, a similar idea offered, the
triage card posted to the channel, an admin moving it on with Universal Actions (the card
updated in place, the submitter and supporters told each time), a non-admin refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.teams import (
    OFFICER,
    TeamsClient,
    TeamsUser,
    card_nodes,
    card_text,
    input_values,
    new_conversation_id,
    new_user,
)


@dataclass
class World:
    server: BotServer
    connector: FakeConnector
    http: aiohttp.ClientSession
    url: str

    def chat(self, user: TeamsUser, **fields: Any) -> TeamsClient:
        self.connector.know(user)
        return TeamsClient(
            bot_url=self.server.url, connector=self.connector, http=self.http, user=user, **fields
        )


@pytest.fixture
async def world(
    fresh_database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> AsyncIterator[World]:
    server = await BotServer(make_settings(fresh_database_url)).start()
    try:
        yield World(server, connector, http, fresh_database_url)
    finally:
        await server.stop()


def _button(card: dict[str, Any], action: str) -> dict[str, Any]:
    found = [
        n
        for n in card_nodes(card)
        if n.get("type") == "Action.Submit" and (n.get("data") or {}).get("action") == action
    ]
    assert found, f"no button for {action!r} in {card_text(card)[:300]}"
    return found[0]


async def _press(client: TeamsClient, card: dict[str, Any], action: str, **entries: Any) -> Any:
    button = _button(card, action)
    value = dict(button.get("data") or {})
    if button.get("associatedInputs") != "none":
        value |= {**input_values(card), **entries}
    return await client.submit(value)


IDEA = {
    "problem": "Residents queue while we photocopy paper forms at the counter.",
    "suggestion": "Scan forms at the counter straight into the case system.",
    "service_area": "Customer Services",
    "principles": "1,3",
    "benefits": "time_saved,better_for_residents",
    "anonymous": "false",
}


async def _submit(client: TeamsClient, title: str, **changes: Any) -> dict[str, Any]:
    form = (await client.say("idea")).card
    reply = await _press(client, form, "idea_submit", title=title, **(IDEA | changes))
    assert reply.cards, reply.texts
    return reply.cards[0]


def _reference(card: dict[str, Any]) -> str:
    import re

    found = re.search(r"IDEA-\d{4}", card_text(card))
    assert found, card_text(card)[:300]
    return found.group(0)


async def _execute(client: TeamsClient, verb: str, data: dict[str, Any]) -> Any:
    return await client.invoke(
        "adaptiveCard/action",
        {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"},
    )


async def test_the_whole_lifecycle(world: World) -> None:
    officer = world.chat(
        OFFICER, conversation_id=new_conversation_id("channel"), conversation_type="channel"
    )
    channel_id = officer.conversation_id
    assert "triage channel" in (await officer.say("set triage channel")).texts[0]

    first = world.chat(new_user("Fran First"))
    await first.install()
    first_card = await _submit(first, "Scan paper forms at the counter")
    first_ref = _reference(first_card)

    # A similar idea is offered before a second one is saved.
    submitter = world.chat(new_user("Sol Submitter"))
    await submitter.install()
    similar = await _submit(submitter, "Scanning the forms at reception instead of photocopying")
    assert first_ref in card_text(similar), "the similar open idea is offered"
    submitted = (await _press(submitter, similar, "idea_submit")).cards[0]
    reference = _reference(submitted)
    assert reference != first_ref
    idea_id = int(reference.removeprefix("IDEA-"))

    # A colleague supports it instead of submitting their own.
    supporter = world.chat(new_user("Sue Supporter"))
    await supporter.install()
    offered = await _submit(supporter, "Scan the paper forms when residents hand them in")
    support = [
        n
        for n in card_nodes(offered)
        if (n.get("data") or {}).get("action") == "idea_support"
        and (n.get("data") or {}).get("idea") == idea_id
    ]
    assert support, card_text(offered)[:400]
    thanks = await supporter.submit(support[0]["data"])
    assert "you now support" in thanks.texts[0].lower()
    again = await supporter.submit(support[0]["data"])
    assert "already support" in again.texts[0]

    # Each new idea was posted to the triage channel.
    posts = await world.connector.wait_for(channel_id, 3)  # the confirmation + two cards
    assert any(reference in card_text(a["attachments"][0]["content"]) for a in posts[1:])

    # A non-admin's press is refused and changes nothing.
    refused = await _execute(supporter, "idea_status", {"idea": idea_id, "status": "under_review"})
    assert refused.status == 200
    assert "Only the transformation team" in card_text(refused.body["value"])

    told = {submitter.conversation_id: 0, supporter.conversation_id: 0}
    for person in told:
        told[person] = len(world.connector.to(person))
    for step, (status, label) in enumerate(
        [
            ("under_review", "Under review"),
            ("accepted", "Accepted"),
            ("implemented", "Implemented"),
        ],
        start=1,
    ):
        moved = await _execute(officer, "idea_status", {"idea": idea_id, "status": status})
        assert (
            moved.status == 200 and moved.body["type"] == "application/vnd.microsoft.card.adaptive"
        )
        assert label in card_text(moved.body["value"])
        updates = [
            s for s in world.connector.sent if s.method == "PUT" and s.conversation_id == channel_id
        ]
        assert len(updates) == step, "the posted card is updated in place for everyone"
        assert label in card_text(updates[-1].activity["attachments"][0]["content"])
        for person, before in told.items():
            messages = await world.connector.wait_for(person, before + step)
            assert label.lower() in card_text(messages[-1]["attachments"][0]["content"]).lower()
    final = world.connector.to(submitter.conversation_id)[-1]["attachments"][0]["content"]
    assert "You said, we did" in card_text(final)

    # An illegal move is refused.
    backwards = await _execute(officer, "idea_status", {"idea": idea_id, "status": "new"})
    assert "Nothing changed" in card_text(backwards.body["value"])
    mine = (await submitter.say("my ideas")).card
    assert reference in card_text(mine) and "Implemented" in card_text(mine)


async def test_a_repeated_delivery_and_a_double_press_create_one_idea(world: World) -> None:
    person = world.chat(new_user("Dee Double"))
    form = (await person.say("idea")).card
    button = _button(form, "idea_submit")
    value = {**button["data"], **input_values(form), "title": "Double-sided printing by default"}
    value |= IDEA | {"problem": "Printers print one side.", "suggestion": "Default to duplex."}
    activity = person.activity(value=value)
    first = await person.post(activity)
    repeated = await person.post(activity)  # Teams delivering the same activity again
    pressed_again = await person.submit(value)  # a second press: a new activity, same form
    assert first.status == repeated.status == pressed_again.status == 201
    assert repeated.sent == []
    assert "your idea is in" in card_text(pressed_again.cards[0]).lower(), "not offered itself"
    mine = card_text((await person.say("my ideas")).card)
    assert mine.count("Double-sided printing by default") == 1


async def test_a_bad_form_comes_back_with_reasons_and_entries_kept(world: World) -> None:
    person = world.chat(new_user("Bo Badform"))
    form = (await person.say("idea")).card
    again = (
        await _press(
            person,
            form,
            "idea_submit",
            title="x" * 121,
            problem="",
            suggestion="Keep this suggestion",
            service_area="Underwater Basket Weaving",
            principles="9",
            benefits="",
        )
    ).card
    kept = input_values(again)
    assert kept["suggestion"] == "Keep this suggestion"
    assert kept["title"] == "x" * 121
    text = card_text(again)
    assert "120" in text


async def test_an_anonymous_idea_never_shows_its_submitter(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Every card and export that includes the idea, and the logs, are searched for the
    submitter's name, email and ids."""
    officer = world.chat(
        OFFICER, conversation_id=new_conversation_id("channel"), conversation_type="channel"
    )
    await officer.say("set triage channel")
    anonymous = new_user("Anya Quietly-Anonymous")
    secrets = [anonymous.name, anonymous.email, anonymous.aad_object_id, anonymous.id]
    submitter = world.chat(anonymous)
    supporter = world.chat(new_user("Sam Supporter"))
    await supporter.install()
    with caplog.at_level("INFO"):
        await submitter.install()
        card = await _submit(submitter, "Anonymous idea about recycling bins", anonymous="true")
        idea_id = int(_reference(card).removeprefix("IDEA-"))
        await supporter.submit({"action": "idea_support", "idea": idea_id})
        moved = await _execute(officer, "idea_status", {"idea": idea_id, "status": "under_review"})
        admin_chat = world.chat(OFFICER)
        listed = (await admin_chat.say("ideas")).card
        told = await world.connector.wait_for(supporter.conversation_id, 2)
    seen = [
        card_text(listed),
        card_text(moved.body["value"]),
        *(card_text(a["attachments"][0]["content"]) for a in told if a.get("attachments")),
        *(
            card_text(a["attachments"][0]["content"])
            for a in world.connector.to(officer.conversation_id)
            if a.get("attachments")
        ),
    ]
    assert "Anonymous" in seen[0], "the list says who: nobody"
    export = await _export(world.url)
    for secret in secrets:
        for text in seen:
            assert secret not in text
        assert secret not in export
    # Nothing about them in the logs at INFO and above (the level production runs at).
    for record in caplog.records:
        message = record.getMessage()
        for secret in (anonymous.name, anonymous.email):
            assert secret not in message, message
    mine = card_text((await submitter.say("my ideas")).card)
    assert "Anonymous idea about recycling bins" in mine, "the submitter still sees it"


async def _export(url: str) -> str:
    import asyncio
    import os
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "ideas",
        "export",
        "--format",
        "csv",
        env={**os.environ, "DATABASE_URL": url, "MicrosoftAppId": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()
    text = output.decode()
    assert "Anonymous idea about recycling bins" in text
    return text + errors.decode()


async def test_ideas_waiting_too_long_are_called_out_once_a_week(world: World) -> None:
    from datetime import date, timedelta

    from bot.app import WORKER
    from bot.reminders import run_reminders
    from storage.db import create_engine, session_factory

    officer = world.chat(
        OFFICER, conversation_id=new_conversation_id("channel"), conversation_type="channel"
    )
    await officer.say("set triage channel")
    person = world.chat(new_user("Wes Waiting"))
    await _submit(person, "Label the recycling bins in the office kitchens")
    before = len(await world.connector.wait_for(officer.conversation_id, 2))
    engine = create_engine(world.url)
    assert world.server.server is not None
    worker = world.server.server.app[WORKER]
    try:
        soon = date.today() + timedelta(days=3)  # under five working days: nothing
        await run_reminders(session_factory(engine), worker, today=soon)
        assert len(world.connector.to(officer.conversation_id)) == before
        later = date.today() + timedelta(days=14)
        for _ in range(2):
            await run_reminders(session_factory(engine), worker, today=later)
    finally:
        await engine.dispose()
    posts = world.connector.to(officer.conversation_id)[before:]
    assert len(posts) == 1, "called out once that week"
    assert "Label the recycling bins" in card_text(posts[0]["attachments"][0]["content"])


async def test_an_idea_asked_for_in_a_channel_is_handled_privately(world: World) -> None:
    """In a channel everyone would see who submitted what: form and confirmation go 1:1."""
    member = new_user("Cara Channel")
    channel = world.chat(
        member, conversation_id=new_conversation_id("channel"), conversation_type="channel"
    )
    reply = await channel.say("idea")
    assert reply.texts == ["I've sent that to you in a private chat."]
    assert reply.cards == [], "no form in the channel"
    opened = world.connector.created[-1]
    assert opened["members"][0]["id"] == member.id
