"""Two turns of one conversation at once: the dialog state's e-tag decides, nobody's input is
silently lost, and the person whose turn lost is asked to repeat it.

The races are staged, not hoped for: the fake connector holds a turn's reply until the other
turn has got far enough (`Stage`), so the order of reads and saves is the same on any machine
however busy it is. A turn saves its state after its replies are answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.replies import CONFLICT_TEXT, FAILED_TEXT
from tests.bot.conftest import BotServer
from tests.support.connector import FakeConnector
from tests.support.teams import (
    OFFICER,
    Reply,
    TeamsClient,
    card_text,
    find_action,
    input_values,
)

WAIT_SECONDS = 10


class Stage:
    """Holds each staged activity's replies at the connector until its condition is met."""

    def __init__(self, connector: FakeConnector) -> None:
        self.connector = connector
        self.arrived: dict[str, asyncio.Event] = {}  # activity id -> a reply to it arrived
        self.answered: dict[str, asyncio.Event] = {}  # activity id -> its HTTP turn ended
        self.holds: dict[str, Callable[[], asyncio.Event]] = {}

    def activity(self, body: dict[str, Any], *, until: Callable[[], asyncio.Event] | None = None):
        """Stage `body`: its replies wait until the event `until()` returns is set."""
        self.arrived[body["id"]] = asyncio.Event()
        self.answered[body["id"]] = asyncio.Event()
        if until is not None:
            self.holds[body["id"]] = until
        return body

    async def hold(self, activity: dict[str, Any]) -> None:
        reply_to = activity.get("replyToId")
        if reply_to not in self.arrived:
            return
        self.arrived[reply_to].set()
        if reply_to in self.holds:
            async with asyncio.timeout(WAIT_SECONDS):
                await self.holds[reply_to]().wait()

    async def post(self, client: TeamsClient, body: dict[str, Any]) -> Reply:
        try:
            return await client.post(body)
        finally:
            self.answered[body["id"]].set()

    async def run(self, *turns: tuple[TeamsClient, dict[str, Any]]) -> list[Reply]:
        self.connector.hold = self.hold
        try:
            return list(await asyncio.gather(*(self.post(c, body) for c, body in turns)))
        finally:
            self.connector.hold = None


async def test_the_turn_that_saves_second_is_asked_to_repeat(
    client: TeamsClient, connector: FakeConnector
) -> None:
    await client.say("status")  # a question waits for a project name
    stage = Stage(connector)
    answer = client.activity(text="alloy")
    restart = client.activity(text="status")
    # Both turns read the waiting question; the restart saves first (its reply waits only for
    # the answer's card to reach Teams), the answer saves once the restart's turn is over.
    stage.activity(answer, until=lambda: stage.answered[restart["id"]])
    stage.activity(restart, until=lambda: stage.arrived[answer["id"]])
    answered, restarted = await stage.run((client, answer), (client, restart))

    assert len(restarted.texts) == 1 and "Which project" in restarted.texts[0], restarted.texts
    assert "Alloy" in card_text(answered.cards[0]), "the answer was given before the save failed"
    assert answered.texts[-1] == CONFLICT_TEXT
    assert FAILED_TEXT not in answered.texts + restarted.texts

    # The winning turn's state was kept, not wiped: its question is still waiting.
    follow_up = await client.say("orchard")
    assert "Orchard" in card_text(follow_up.card)


async def test_two_first_turns_of_a_chat_cannot_overwrite_each_other(
    bot_server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    """A new chat has no saved state, so there is no e-tag to compare: the first save is
    conditional all the same (the row must still be missing), or the second turn to save
    would silently replace the first one's question."""
    officer = TeamsClient(bot_url=bot_server.url, connector=connector, http=http, user=OFFICER)
    stage = Stage(connector)
    question = officer.activity(text="status")
    form = officer.activity(text="post update alloy")
    stage.activity(question, until=lambda: stage.arrived[form["id"]])
    stage.activity(form, until=lambda: stage.answered[question["id"]])
    asked, offered = await stage.run((officer, question), (officer, form))

    assert "Which project" in asked.texts[0], asked.texts
    assert "Alloy" in card_text(offered.cards[0]), "the form was shown before the save failed"
    assert offered.texts[-1] == CONFLICT_TEXT, "the turn that lost is asked to repeat"
    # The question that was saved is still waiting for its answer.
    assert "Currently in delivery" in card_text((await officer.say("alloy")).card)


async def test_a_form_pressed_during_a_question_keeps_both(
    client: TeamsClient, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    """A card form (ideas, Making It Real) keeps no dialog state: pressed while a question is
    being asked in the same new chat, both are kept and nobody is asked to repeat."""
    elsewhere = TeamsClient(
        bot_url=client.bot_url, connector=connector, http=http, user=client.user
    )
    form = (await elsewhere.say("idea")).card
    stage = Stage(connector)
    question = client.activity(text="status")
    submit = client.activity(
        value=(find_action(form, "Submit idea").get("data") or {})
        | input_values(form)
        | {
            "title": "Label the recycling bins in the staff kitchen",
            "problem": "People guess which bin takes what.",
            "suggestion": "Print a label for each bin.",
            "service_area": "Customer Services",
            "principles": "1",
            "benefits": "time_saved",
            "confirmed": True,  # not offered similar ideas first
        }
    )
    stage.activity(question, until=lambda: stage.arrived[submit["id"]])
    stage.activity(submit, until=lambda: stage.answered[question["id"]])
    asked, submitted = await stage.run((client, question), (client, submit))

    assert "Which project" in asked.texts[0], asked.texts
    assert "IDEA-" in card_text(submitted.card), submitted.texts
    assert CONFLICT_TEXT not in asked.texts + submitted.texts
    assert "Alloy" in card_text((await client.say("alloy")).card), "the question was kept"
