"""Making It Real end to end over HTTP: a roster of one Change Leader and three Change Makers;
one schedules a session, one logs a held session with three agreed changes, one does
nothing. The leader's view, `mir stats` and the reminders must say exactly that."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.app import WORKER
from bot.reminders import run_reminders
from storage.db import create_engine, session_factory
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.people import import_roster_csv
from tests.support.teams import (
    BOT_ID,
    BOT_NAME,
    OFFICER,
    TeamsClient,
    TeamsUser,
    card_nodes,
    card_text,
    find_action,
    input_values,
    new_conversation_id,
    new_user,
)

pytestmark = pytest.mark.filterwarnings("error")


def _today() -> date:
    return datetime.now(ZoneInfo("Europe/London")).date()


@dataclass
class Story:
    server: BotServer
    connector: FakeConnector
    http: aiohttp.ClientSession
    url: str
    leader: TeamsUser
    makers: list[TeamsUser]

    def chat(self, user: TeamsUser, **fields: Any) -> TeamsClient:
        return TeamsClient(
            bot_url=self.server.url, connector=self.connector, http=self.http, user=user, **fields
        )

    async def remind(self, day: date) -> Any:
        assert self.server.server is not None
        engine = create_engine(self.url)
        try:
            return await run_reminders(
                session_factory(engine), self.server.server.app[WORKER], today=day
            )
        finally:
            await engine.dispose()


@pytest.fixture
async def story(
    fresh_database_url: str, connector: FakeConnector, http: aiohttp.ClientSession
) -> AsyncIterator[Story]:
    leader = new_user("Lena Leader")
    makers = [new_user("Ahmed Maker"), new_user("Bea Maker"), new_user("Cal Maker")]
    lines = ["name,email,role,leader_email,service_area"]
    lines.append(f"{leader.name},{leader.email},change_leader,,Customer Services")
    for maker in makers:
        lines.append(f"{maker.name},{maker.email},change_maker,{leader.email},Customer Services")
    await import_roster_csv(fresh_database_url, "\n".join(lines) + "\n")
    connector.know(leader, *makers)
    server = await BotServer(make_settings(fresh_database_url)).start()
    try:
        yield Story(server, connector, http, fresh_database_url, leader, makers)
    finally:
        await server.stop()


def _blocks(card: dict[str, Any]) -> list[str]:
    return [n["text"] for n in card_nodes(card) if isinstance(n.get("text"), str)]


async def test_the_whole_story(story: Story) -> None:
    today = _today()
    ahmed, bea, cal = (story.chat(m) for m in story.makers)
    leader = story.chat(story.leader)
    for person in (ahmed, bea, cal, leader):  # everyone has the app: reminders can reach them
        await person.install()
    welcomed = {p.conversation_id: len(story.connector.to(p.conversation_id)) for p in (ahmed, cal)}

    # Ahmed schedules a session for next week.
    form = (await ahmed.say("schedule session")).card
    next_week = today + timedelta(days=7)
    scheduled = await ahmed.press(
        form,
        "Schedule session",
        date=next_week.isoformat(),
        time="10:00",
        team="Revenues team",
        expected="8",
    )
    assert "Scheduled for" in card_text(scheduled.card)

    # Bea logs the session she held yesterday, with three agreed changes.
    form = (await bea.say("log session")).card
    logged = await bea.press(
        form,
        "Log session",
        scheduled="",
        date=(today - timedelta(days=1)).isoformat(),
        team="Benefits team",
        attendees="6",
        themes="Paperwork, Duplicate data entry; phone queues",
        changes="Scan forms at the counter\nOne shared contact log\nCall-back slots on Mondays",
        went_well="Everyone spoke",
        to_change="Shorter introduction",
        rating="4",
    )
    logged_text = card_text(logged.card)
    assert "Logged" in logged_text
    for change in ("Scan forms at the counter", "One shared contact log", "Call-back slots"):
        assert change in logged_text

    # Cal does nothing.

    # The leader's view, person by person.
    view = card_text((await leader.say("my change makers")).card)
    assert "3 Change Makers · 1 with nothing scheduled." in view
    assert _person(view, "Ahmed Maker") == [
        "Customer Services",
        f"Next session: {next_week:%a %-d %B %Y} at 10:00 · Revenues team",
        "0 sessions held · 0 open actions",
    ]
    assert _person(view, "Bea Maker") == [
        "Customer Services",
        "No session in the diary",
        "1 session held · 3 open actions",
    ]
    assert _person(view, "Cal Maker") == [
        "Customer Services",
        "Nothing scheduled",
        "0 sessions held · 0 open actions",
    ]

    # The programme's figures.
    officer = story.chat(OFFICER)
    stats = card_text((await officer.say("mir stats")).card)
    assert _figures(stats) == {
        "Change Makers": "3",
        "Sessions held": "1",
        "In the diary": "1",
        "Awaiting a log": "0",
        "Nothing scheduled": "1",
        "Actions agreed": "3",
        "Actions done": "0",
        "Actions overdue": "0",
        "Format rating": "4.0 out of 5 (1 rating)",
        "Top themes": "Duplicate data entry (1), Paperwork (1), phone queues (1)",
    }
    assert "Nothing scheduled: Cal Maker" in stats
    assert "Went well: Everyone spoke" in stats and "To change: Shorter introduction" in stats

    # Reminders today: only Cal (nothing scheduled); run twice, sent once.
    first = await story.remind(today)
    second = await story.remind(today)
    assert first.queued == 1 and first.unreachable == []
    assert second.queued == 0 and second.already_queued == 1
    cal_messages = await story.connector.wait_for(
        cal.conversation_id, welcomed[cal.conversation_id] + 1
    )
    reminders_to_cal = cal_messages[welcomed[cal.conversation_id] :]
    assert len(reminders_to_cal) == 1
    assert "Schedule a session" in card_text(reminders_to_cal[0]["attachments"][0]["content"])

    # The day after Ahmed's session: "how did it go? log it" to Ahmed, once.
    after = await story.remind(next_week + timedelta(days=1))
    again = await story.remind(next_week + timedelta(days=1))
    assert again.queued == 0
    ahmed_messages = await story.connector.wait_for(
        ahmed.conversation_id, welcomed[ahmed.conversation_id] + 1
    )
    reminder = ahmed_messages[-1]["attachments"][0]["content"]
    assert find_action(reminder, "Log it")["data"]["action"] == "mir_log"
    assert after.queued == 2, "Ahmed: log it; Cal: a new week with nothing scheduled"

    # Bea marks one action done: every view changes.
    actions = (await bea.say("my actions")).card
    done_buttons = [
        n
        for n in card_nodes(actions)
        if n.get("type") == "Action.Submit" and n.get("title") == "Done"
    ]
    assert len(done_buttons) == 3
    marked = await bea.submit(done_buttons[0]["data"])
    assert 'Marked "Scan forms at the counter" as done.' in card_text(marked.card)
    remaining = [n for n in card_nodes(marked.card) if n.get("title") == "Done" and "data" in n]
    assert len(remaining) == 2
    view = card_text((await leader.say("my change makers")).card)
    assert _person(view, "Bea Maker")[2] == "1 session held · 2 open actions"
    figures = _figures(card_text((await officer.say("mir stats")).card))
    assert (figures["Actions agreed"], figures["Actions done"]) == ("3", "1")


def _person(view: str, name: str) -> list[str]:
    """The three lines under a Change Maker's name in the leader's view."""
    lines = view.splitlines()
    start = lines.index(name) + 1
    return lines[start : start + 3]


def _figures(stats: str) -> dict[str, str]:
    """The whole programme's label/value pairs of the stats card."""
    lines = stats.splitlines()
    labels = [
        "Change Makers",
        "Sessions held",
        "In the diary",
        "Awaiting a log",
        "Nothing scheduled",
        "Actions agreed",
        "Actions done",
        "Actions overdue",
        "Format rating",
        "Top themes",
    ]
    return {label: lines[lines.index(label) + 1] for label in labels}


async def test_someone_not_in_the_roster_is_told_how_to_become_a_change_maker(
    story: Story,
) -> None:
    stranger = story.chat(new_user("Sid Stranger"))
    reply = await stranger.say("log session")
    assert "Change Maker" in reply.texts[0] and "transformation team" in reply.texts[0]
    forged = await stranger.submit(
        {"action": "mir_log_submit", "form": "0" * 32, "date": _today().isoformat()}
    )
    assert "Change Maker" in forged.texts[0]


async def test_a_form_with_bad_entries_comes_back_with_reasons_and_entries_kept(
    story: Story,
) -> None:
    maker = story.chat(story.makers[0])
    form = (await maker.say("log session")).card
    tomorrow = (_today() + timedelta(days=1)).isoformat()
    again = (
        await maker.press(
            form,
            "Log session",
            date=tomorrow,
            team="Planning",
            attendees="0",
            themes="",
            changes="Keep this line",
            rating="4",
        )
    ).card
    inputs = {n["id"]: n for n in card_nodes(again) if str(n.get("type", "")).startswith("Input.")}
    assert inputs["date"]["value"] == tomorrow
    assert inputs["changes"]["value"] == "Keep this line"
    assert inputs["team"]["value"] == "Planning"
    text = card_text(again)
    assert "future" in text.lower()
    assert "1 to 500" in text or "1 and 500" in text


async def test_a_leader_nudges_only_their_own_change_makers(story: Story) -> None:
    other_leader = new_user("Olu Otherleader")
    await import_roster_csv(
        story.url,
        "name,email,role,leader_email,service_area\n"
        f"{other_leader.name},{other_leader.email},change_leader,,Planning\n",
    )
    story.connector.know(other_leader)
    cal = story.chat(story.makers[2])
    await cal.install()  # the only one of the three the bot can reach
    before = len(story.connector.to(cal.conversation_id))

    leader = story.chat(story.leader)
    view = (await leader.say("my change makers")).card
    nudges = [n for n in card_nodes(view) if n.get("title") == "Nudge"]
    assert len(nudges) == 1, "only reachable Change Makers can be nudged"
    assert "reached" in card_text(view), "the two who never opened the app are flagged"

    refused = await story.chat(other_leader).submit(nudges[0]["data"])
    assert "only your own" in refused.texts[0]
    assert len(story.connector.to(cal.conversation_id)) == before, "nothing was sent"

    sent = await leader.submit(nudges[0]["data"])
    assert "Nudge sent to Cal Maker" in card_text(sent.card)
    received = await story.connector.wait_for(cal.conversation_id, before + 1)
    nudge_card = received[-1]["attachments"][0]["content"]
    assert "Lena Leader" in card_text(nudge_card)
    assert find_action(nudge_card, "Schedule a session")["data"] == {"command": "schedule session"}

    again = await leader.submit(nudges[0]["data"])
    assert "already nudged" in card_text(again.card)


async def test_asked_in_a_channel_the_form_goes_privately(story: Story) -> None:
    maker = story.makers[1]
    channel = story.chat(
        maker, conversation_id=new_conversation_id("channel"), conversation_type="channel"
    )
    reply = await channel.say("schedule session")
    assert reply.texts == ["I've sent that to you in a private chat."]
    assert story.connector.created, "a 1:1 chat was opened"
    opened = story.connector.created[-1]
    assert opened["members"][0]["id"] == maker.id


async def test_reminders_run_from_the_command_line_twice_sends_once(story: Story) -> None:
    """`ourcambridge reminders run` as cron would run it: a process of its own, sending
    through the Bot Connector (the fake one) with the references the bot stored."""
    cal = story.chat(story.makers[2])
    await cal.install()
    welcomed = len(story.connector.to(cal.conversation_id))
    env = {
        **os.environ,
        "DATABASE_URL": story.url,
        "MicrosoftAppId": "",
        "TIMEZONE": "Europe/London",
        "LOG_LEVEL": "INFO",
    }
    outputs = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "reminders",
            "run",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
        outputs.append(output.decode())
    # Ahmed and Bea never opened the app: counted as unreachable, not silently skipped.
    assert "3 due, 1 queued, 0 already queued, 2 unreachable, 1 sent" in outputs[0]
    assert "3 due, 0 queued, 1 already queued, 2 unreachable, 0 sent" in outputs[1]
    sent = story.connector.to(cal.conversation_id)[welcomed:]
    assert len(sent) == 1
    assert "Schedule a session" in card_text(sent[0]["attachments"][0]["content"])


async def test_stop_reminders_turns_them_off_and_start_turns_them_on(story: Story) -> None:
    cal = story.chat(story.makers[2])
    await cal.install()
    off = await cal.say("stop reminders")
    assert "Reminders are off" in off.texts[0]
    week = _today() + timedelta(days=14)  # a week of its own: the weekly key is new
    assert (await story.remind(week)).queued == 0
    on = await cal.say("start reminders")
    assert "Reminders are on" in on.texts[0]
    before = len(story.connector.to(cal.conversation_id))
    assert (await story.remind(week)).queued == 1
    await story.connector.wait_for(cal.conversation_id, before + 1)
    assert len(story.connector.to(cal.conversation_id)) == before + 1


async def test_a_session_is_rescheduled_then_cancelled_from_my_sessions(story: Story) -> None:
    maker = story.chat(story.makers[0])
    first, moved = _today() + timedelta(days=3), _today() + timedelta(days=10)
    form = (await maker.say("schedule session")).card
    listed = (
        await maker.press(
            form, "Schedule session", date=first.isoformat(), time="09:30", expected="5"
        )
    ).card
    again = (await maker.press(listed, "Reschedule")).card
    assert input_values(again)["date"] == first.isoformat(), "the form shows the session"
    rescheduled = (await maker.press(again, "Reschedule session", date=moved.isoformat())).card
    assert f"Rescheduled to {moved:%a %-d %B %Y} at 09:30" in card_text(rescheduled)
    cancel = [
        n
        for n in card_nodes(rescheduled)
        if n.get("title") == "Cancel"
        and (n.get("data") or {}).get("action") == "mir_cancel_session"
    ]
    assert len(cancel) == 1
    cancelled = (await maker.submit(cancel[0]["data"])).card
    assert f"Cancelled your session on {moved:%a %-d %B %Y}" in card_text(cancelled)
    assert not [n for n in card_nodes(cancelled) if n.get("title") == "Reschedule"], "none left"

    # Someone else's session cannot be touched with a forged id.
    other = story.chat(story.makers[1])
    forged = await other.submit(cancel[0]["data"])
    assert "can't find that among your sessions" in forged.texts[0]


async def test_presses_of_one_log_form_at_once_log_it_once(story: Story) -> None:
    maker = story.chat(story.makers[1])
    today = _today()
    form = (await maker.say("schedule session")).card
    await maker.press(form, "Schedule session", date=today.isoformat(), time="09:00", expected="4")
    log_form = (await maker.say("log session")).card
    assert input_values(log_form)["scheduled"] != "", "today's session is offered"
    entries = {
        "attendees": "4",
        "themes": "Paperwork",
        "changes": "One\nTwo\nThree",
        "rating": "3",
    }
    replies = await asyncio.gather(
        *(maker.press(log_form, "Log session", **entries) for _ in range(4))
    )
    logged = [r for r in replies if r.cards and "Logged, thank you" in card_text(r.cards[0])]
    assert len(logged) == 1
    actions = (await maker.say("my actions")).card
    assert len([n for n in card_nodes(actions) if n.get("title") == "Done"]) == 3


async def test_a_chat_first_seen_when_the_bot_was_added_is_still_the_persons(
    story: Story,
) -> None:
    """Teams sends "bot added" (conversationUpdate) before anything else in a new 1:1 chat;
    the chat must still become the person's, so reminders and nudges reach them."""
    cal = story.chat(story.makers[2])
    story.connector.members[BOT_ID] = {"id": BOT_ID, "name": BOT_NAME}
    added = await cal.post(
        cal.activity(type="conversationUpdate", membersAdded=[{"id": BOT_ID, "name": BOT_NAME}])
    )
    assert added.status == 201
    await cal.say("help")
    view = (await story.chat(story.leader).say("my change makers")).card
    assert len([n for n in card_nodes(view) if n.get("title") == "Nudge"]) == 1


async def test_a_new_persons_first_messages_at_once_are_all_answered(story: Story) -> None:
    newcomer = story.chat(new_user("Nia Newcomer"))
    story.connector.know(newcomer.user)
    replies = await asyncio.gather(*(newcomer.say("help") for _ in range(4)))
    assert all(r.status == 201 and len(r.cards) == 1 for r in replies), [r.texts for r in replies]


async def test_removing_the_app_makes_the_person_unreachable(story: Story) -> None:
    cal = story.chat(story.makers[2])
    await cal.install()
    leader = story.chat(story.leader)
    before = (await leader.say("my change makers")).card
    assert len([n for n in card_nodes(before) if n.get("title") == "Nudge"]) == 1
    removed = await cal.post(cal.activity(type="installationUpdate", action="remove"))
    assert removed.status == 201
    after = (await leader.say("my change makers")).card
    assert [n for n in card_nodes(after) if n.get("title") == "Nudge"] == []
    assert (await story.remind(_today())).unreachable, "counted, not silently skipped"


async def _log_todays_session(maker: TeamsClient, changes: str) -> None:
    """Log a session held today with the Benefits team, agreeing `changes` (one a line)."""
    form = (await maker.say("log session")).card
    await maker.press(
        form,
        "Log session",
        date=_today().isoformat(),
        team="Benefits team",
        attendees="5",
        themes="Paperwork",
        changes=changes,
        rating="4",
    )


async def test_an_agreed_change_becomes_an_idea_with_one_button(story: Story) -> None:
    bea = story.chat(story.makers[1])
    await _log_todays_session(bea, "Scan forms at the counter\nOne shared contact log")
    actions = (await bea.say("my actions")).card
    offers = [n for n in card_nodes(actions) if n.get("title") == "Make it an idea"]
    assert len(offers) == 2
    idea_form = (await bea.submit(offers[0]["data"])).card
    assert input_values(idea_form)["title"] == "Scan forms at the counter"
    forged = await story.chat(story.makers[0]).submit(offers[0]["data"])
    assert "can't find that among your actions" in forged.texts[0]
    submitted = await bea.press(
        idea_form,
        "Submit idea",
        suggestion="Buy two scanners for the counter.",
        service_area="Customer Services",
        principles="4",
        benefits="time_saved",
    )
    text = card_text(submitted.card)
    assert "IDEA-" in text, text[:300]
    reference = text[text.index("IDEA-") : text.index("IDEA-") + 9]
    after = (await bea.say("my actions")).card
    assert f"Submitted as idea {reference}" in card_text(after), "linked from the action"
    assert len([n for n in card_nodes(after) if n.get("title") == "Make it an idea"]) == 1
    again = await bea.submit(offers[0]["data"])
    assert f"already submitted as {reference}" in again.texts[0]


async def test_a_refused_drop_keeps_the_reason_typed(story: Story) -> None:
    bea = story.chat(story.makers[1])
    await _log_todays_session(bea, "Scan forms at the counter")
    actions = (await bea.say("my actions")).card
    drop = find_action(actions, "Drop action")
    too_long = "Because " * 80
    reason_id = f"reason_{drop['data']['id']}"
    again = (await bea.submit({**drop["data"], reason_id: too_long})).card
    assert input_values(again)[reason_id] == too_long
    assert "500" in card_text(again)
    still = [n for n in card_nodes(again) if n.get("title") == "Done"]
    assert len(still) == 1, "nothing was dropped"
