"""Load and faults over real HTTP: many people submitting ideas at once, the database
restarted in the middle of it, and a Bot Connector that refuses or never answers replies.

What is checked each time is what people were told against what the database holds: every
confirmation that reached Teams (the fake connector) names an idea that is stored, once,
for the person who was told.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from bot.adapter import FastCloudAdapter
from bot.app import ADAPTER
from bot.replies import CONFLICT_TEXT, FAILED_TEXT, UNAVAILABLE_TEXT
from storage import migrate
from storage.db import create_engine, session_factory
from storage.seed import seed_programme
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.private_postgres import PrivatePostgres, server_programs
from tests.support.teams import (
    Reply,
    TeamsClient,
    card_text,
    find_action,
    input_values,
    new_user,
)

REFERENCE = re.compile(r"Your reference is \*\*(IDEA-\d{4,})\*\*")


# --- ideas, people and what they were told -------------------------------------------------


def _made_up_words() -> Iterator[str]:
    """Words no idea shares with another (three syllables each, never repeated), so that no
    submission is offered a similar idea first and every idea is told apart by its title."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    for first, second, third in itertools.product(syllables, repeat=3):
        yield (first + second + third).capitalize()


@dataclass
class Submission:
    """One person's idea: the form they opened, what they typed, and every reply to them."""

    chat: TeamsClient
    title: str
    problem: str
    suggestion: str
    form: dict[str, Any] | None = None
    replies: list[Reply] = field(default_factory=list)

    @property
    def entries(self) -> dict[str, str]:
        return {
            "title": self.title,
            "problem": self.problem,
            "suggestion": self.suggestion,
            "service_area": "Customer Services",
            "principles": "1",
            "benefits": "time_saved",
        }

    @property
    def references(self) -> list[str]:
        """The references this person was told (one, once the idea is in)."""
        return [
            found.group(1)
            for reply in self.replies
            for card in reply.cards
            if (found := REFERENCE.search(card_text(card)))
        ]

    @property
    def texts(self) -> list[str]:
        return [t for reply in self.replies for t in reply.texts if t]


def submissions(chats: Sequence[TeamsClient], each: int) -> list[Submission]:
    words = _made_up_words()
    return [
        Submission(
            chat=chat,
            title=" ".join(next(words) for _ in range(3)),
            problem=" ".join(next(words) for _ in range(5)) + ".",
            suggestion=" ".join(next(words) for _ in range(5)) + ".",
        )
        for chat in chats
        for _ in range(each)
    ]


async def submit(submission: Submission) -> bool:
    """Open the idea form (unless it is open already) and press Submit, as a person does;
    "Submit mine anyway" if similar ideas are offered. True once a reference was given."""
    chat = submission.chat
    if submission.form is None:
        opened = await chat.say("idea")
        submission.replies.append(opened)
        if not opened.cards:
            return False
        submission.form = opened.card
    # As Teams sends a press: the button's data with every input's value (as retyped).
    pressed = find_action(submission.form, "Submit idea").get("data") or {}
    reply = await chat.submit(pressed | input_values(submission.form) | submission.entries)
    submission.replies.append(reply)
    if reply.cards and "Submit mine anyway" in card_text(reply.cards[0]):
        reply = await chat.press(reply.cards[0], "Submit mine anyway")
        submission.replies.append(reply)
    return bool(submission.references)


def people(
    count: int, server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> list[TeamsClient]:
    users = [new_user(f"Load Tester {n:02d}") for n in range(count)]
    connector.know(*users)
    return [TeamsClient(bot_url=server.url, connector=connector, http=http, user=u) for u in users]


async def stored_ideas(database_url: str) -> list[tuple[int, str, str | None]]:
    """(id, title, submitter's AAD object id) of every idea in the database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT idea.id, idea.title, person.aad_object_id FROM idea "
                    "JOIN person ON person.id = idea.submitter_id ORDER BY idea.id"
                )
            )
            return [(row[0], row[1], row[2]) for row in rows]
    finally:
        await engine.dispose()


def reference_of(idea_id: int) -> str:
    return f"IDEA-{idea_id:04d}"


def check_told_against_stored(
    done: Sequence[Submission], stored: Sequence[tuple[int, str, str | None]]
) -> None:
    """Every reference told is stored, for that person and that title, and told once."""
    by_reference = {reference_of(i): (title, aad) for i, title, aad in stored}
    told = [(s, r) for s in done for r in set(s.references)]
    missing = [r for _, r in told if r not in by_reference]
    assert not missing, f"confirmed but not stored: {missing}"
    wrong = [
        r for s, r in told if by_reference[r] != (s.title, s.chat.user.aad_object_id)
    ]  # fmt: skip
    assert not wrong, f"confirmed for someone else's idea: {wrong}"
    assert len({r for _, r in told}) == len(told), "one reference given to two ideas"


# --- 200 ideas from 50 people at once ------------------------------------------------------

USERS = 50
IDEAS_EACH = 4


@pytest.fixture
async def load_bot(fresh_database_url: str) -> AsyncIterator[BotServer]:
    server = await BotServer(make_settings(fresh_database_url)).start()
    yield server
    await server.stop()


async def test_200_ideas_from_50_people_at_once_are_all_stored_once(
    load_bot: BotServer,
    fresh_database_url: str,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each person opens four idea forms and submits them, all 200 at the same moment (so
    four turns of each chat race, and 50 people are met for the first time at once)."""
    chats = people(USERS, load_bot, connector, http)
    ideas = submissions(chats, IDEAS_EACH)
    started = time.monotonic()
    confirmed = await asyncio.gather(*(submit(s) for s in ideas))
    elapsed = time.monotonic() - started

    statuses = {reply.status for s in ideas for reply in s.replies}
    assert statuses == {201}, statuses
    unhappy = [t for s in ideas for t in s.texts if t in (FAILED_TEXT, CONFLICT_TEXT)]
    assert not unhappy, f"{len(unhappy)} turns failed or were asked to repeat: {unhappy[:3]}"
    unconfirmed = [s.texts for s in ideas if not s.references]
    problems = sorted({r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING})
    assert all(confirmed), f"{len(unconfirmed)} got no reference: {unconfirmed[:3]}; {problems}"
    assert all(len(s.references) == 1 for s in ideas)
    stored = await stored_ideas(fresh_database_url)
    assert len(stored) == USERS * IDEAS_EACH, f"{len(stored)} ideas stored"
    assert len({s.references[0] for s in ideas}) == USERS * IDEAS_EACH
    check_told_against_stored(ideas, stored)
    assert len({aad for _, _, aad in stored}) == USERS, "each person recorded once"
    print(f"{len(ideas)} ideas from {USERS} people in {elapsed:.1f} s")


# --- the database restarted in the middle of a load --------------------------------------

RESTART_USERS = 20
RESTART_IDEAS_EACH = 3
STOP_AFTER_CONFIRMATIONS = 15
BACK_WITHIN_SECONDS = 20


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own (never the machine's shared server), migrated
    and seeded."""
    programs, why_not = server_programs()
    if programs is None:
        pytest.skip(f"a PostgreSQL restart needs a server the test controls: {why_not}")
    server = PrivatePostgres(programs)
    try:
        await asyncio.to_thread(server.create)
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(migrate.upgrade, server.url)
        engine = create_engine(server.url)
        try:
            await seed_programme(session_factory(engine))
        finally:
            await engine.dispose()
        yield server
    finally:
        await asyncio.to_thread(server.remove)


async def _ready(http: aiohttp.ClientSession, bot: BotServer) -> int:
    async with http.get(bot.url + "/readyz") as response:
        return response.status


@pytest.mark.pg_restart
async def test_postgres_restarted_during_a_load_loses_nothing_confirmed(
    private_postgres: PrivatePostgres,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
) -> None:
    bot = await BotServer(make_settings(private_postgres.url)).start()
    try:
        chats = people(RESTART_USERS, bot, connector, http)
        ideas = submissions(chats, RESTART_IDEAS_EACH)
        first, second = ideas[: len(ideas) // 2], ideas[len(ideas) // 2 :]
        enough, stopping, back = asyncio.Event(), asyncio.Event(), asyncio.Event()
        unavailable_during_outage: list[str] = []

        async def person(submission: Submission, *, wait_for: asyncio.Event | None) -> None:
            if wait_for is not None:
                await wait_for.wait()
            for _ in range(5):  # tried again after the friendly reply, as people would
                if await submit(submission):
                    if sum(bool(s.references) for s in first) >= STOP_AFTER_CONFIRMATIONS:
                        enough.set()
                    return
                assert submission.texts[-1] == UNAVAILABLE_TEXT, submission.texts[-3:]
                if not back.is_set():
                    unavailable_during_outage.append(submission.title)
                await back.wait()
            pytest.fail(f"never confirmed: {submission.texts}")

        async def restart_in_the_middle() -> dict[str, Any]:
            await enough.wait()
            seen: dict[str, Any] = {"confirmed_before": sum(bool(s.references) for s in ideas)}
            stopping.set()  # the second half starts now, into the stop
            await asyncio.to_thread(private_postgres.stop, "fast")
            probe = TeamsClient(bot_url=bot.url, connector=connector, http=http)
            seen["probe"] = (await probe.say("status alloy")).texts
            seen["readyz_down"] = await _ready(http, bot)
            await asyncio.to_thread(private_postgres.start)
            started = time.monotonic()
            while await _ready(http, bot) != 200:
                assert time.monotonic() - started < BACK_WITHIN_SECONDS, "not ready again"
                await asyncio.sleep(0.1)
            seen["back_after"] = time.monotonic() - started
            back.set()
            return seen

        restart = asyncio.create_task(restart_in_the_middle())
        await asyncio.gather(
            *(person(s, wait_for=None) for s in first),
            *(person(s, wait_for=stopping) for s in second),
        )
        seen = await restart
    finally:
        await bot.stop()

    assert seen["probe"] == [UNAVAILABLE_TEXT], seen["probe"]
    assert seen["readyz_down"] == 503
    assert unavailable_during_outage, "nobody was turned away: the outage was not in the load"
    all_texts = [t for s in ideas for t in s.texts]
    assert FAILED_TEXT not in all_texts, "a turn cut off by the restart was not explained"
    assert all(len(set(s.references)) == 1 for s in ideas), "one reference per idea"
    stored = await stored_ideas(private_postgres.url)
    check_told_against_stored(ideas, stored)
    assert len(stored) == len(ideas), f"{len(stored)} stored for {len(ideas)} ideas"
    print(
        f"{seen['confirmed_before']} confirmed before the stop, "
        f"{len(unavailable_during_outage)} turned away during it, ready "
        f"{seen['back_after']:.1f} s after the start; {len(stored)} stored"
    )


# --- a Bot Connector that refuses or never answers a turn's reply ------------------------

HANG_TIMEOUT_SECONDS = 1.0


@dataclass
class Faulty:
    """A bot whose connector fails chosen turns' replies, counting what each turn sent."""

    bot: BotServer
    connector: FakeConnector
    chat: TeamsClient
    failing: set[str] = field(default_factory=set)  # activity ids whose replies fail
    requests: dict[str, int] = field(default_factory=dict)  # activity id -> requests seen
    released: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def faulty(database_url: str, http: aiohttp.ClientSession) -> AsyncIterator[Faulty]:
    connector = FakeConnector()
    await connector.start()
    bot = await BotServer(make_settings(database_url)).start()
    assert bot.server is not None
    adapter: FastCloudAdapter = bot.server.app[ADAPTER]
    adapter.reply_timeout = HANG_TIMEOUT_SECONDS  # production: 10 s, under Teams' 15 s
    user = new_user("Fay Faultline")
    connector.know(user)
    chat = TeamsClient(bot_url=bot.url, connector=connector, http=http, user=user)
    world = Faulty(bot=bot, connector=connector, chat=chat)

    async def count(activity: dict[str, Any]) -> None:
        reply_to = activity.get("replyToId")
        if reply_to is not None:
            world.requests[reply_to] = world.requests.get(reply_to, 0) + 1

    connector.hold = count
    try:
        yield world
    finally:
        world.released.set()
        await bot.stop()
        await connector.close()


@pytest.mark.parametrize("fault", ["HTTP 500", "hang"])
async def test_a_reply_the_connector_fails_ends_the_turn_cleanly(
    faulty: Faulty, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply is tried once (no retry loop, no error message after it: that would fail
    the same way), the failure is logged as a warning, Teams gets its 201 (the activity was
    handled; a 5xx would only invite a redelivery the failing connector cannot help), and
    the chat carries on: the question asked before is still waiting for its answer."""
    chat, connector = faulty.chat, faulty.connector
    asked = await chat.say("status")
    assert "Which project" in asked.texts[0]

    counting = connector.hold
    assert counting is not None

    async def hang_or_count(activity: dict[str, Any]) -> None:
        await counting(activity)
        if fault == "hang" and activity.get("replyToId") in faulty.failing:
            await faulty.released.wait()

    connector.hold = hang_or_count
    if fault == "HTTP 500":
        connector.refuse = lambda a: (500, None) if a.get("replyToId") in faulty.failing else None
    answer = chat.activity(text="alloy")
    faulty.failing.add(answer["id"])
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    reply = await chat.post(answer)
    elapsed = time.monotonic() - started

    assert reply.status == 201, reply.body
    assert reply.sent == [], "nothing reached the chat"
    assert faulty.requests[answer["id"]] == 1, "the reply was tried once, and nothing after it"
    assert elapsed < HANG_TIMEOUT_SECONDS + 3, f"the turn took {elapsed:.1f} s"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.replies" and r.levelno == logging.WARNING
    ]
    expected = "HTTP 500" if fault == "HTTP 500" else f"no answer within {HANG_TIMEOUT_SECONDS:g} s"
    assert any("not delivered" in w and expected in w for w in warnings), warnings
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no error logged"

    # The next turn works, and the question is still there to answer.
    again = await chat.say("alloy")
    assert "Currently in delivery" in card_text(again.card)
