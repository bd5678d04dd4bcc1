"""The bot under fuzzing: one server on a database of its own (per backend), the people and
conversations the inputs come from, and the checks every input's answer must pass.

How many inputs a run sends: FUZZ_EXAMPLES on SQLite (default 10,000 in `make test`), and
FUZZ_EXAMPLES_POSTGRESQL on PostgreSQL (default a tenth of that, at least 1,000).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

# Hypothesis also draws text from the string constants of the project's modules loaded in
# this process (commands, form fields, card actions): the bot serves from another process,
# so the whole app is imported here to keep its constants in the fuzz's pool.
import bot.app  # noqa: F401
from bot.replies import CONFLICT_TEXT, FAILED_TEXT, UNAVAILABLE_TEXT
from cards.render import truncate_text
from tests.conftest import fresh_database
from tests.fuzz.strategies import Input, Mutation, Raw, Turn, as_received
from tests.support.card_schema import TeamsCardValidator, load_adaptive_card_schema
from tests.support.connector import FakeConnector
from tests.support.log_scan import LogCapture
from tests.support.people import import_roster_csv
from tests.support.served import LogEntry, ServedBot
from tests.support.teams import (
    BOT_NAME,
    OFFICER,
    TeamsClient,
    TeamsUser,
    card_nodes,
    card_text,
    mention,
    new_conversation_id,
    new_user,
)

# Inputs sent to the bot on SQLite, and on PostgreSQL (the same inputs, the first of them):
# the count is what the SQLite leg proves, and PostgreSQL meets the same hostile input for its
# own behaviour (its types, its errors) without doubling the suite's time.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
FUZZ_EXAMPLES_POSTGRESQL = int(
    os.environ.get("FUZZ_EXAMPLES_POSTGRESQL", str(max(FUZZ_EXAMPLES // 10, 1000)))
)
# Inputs posted at once: lanes run side by side, each lane's inputs one after another (a
# conversation's turns arrive in order in Teams too).
CONCURRENCY = 8
# Invokes the bot answers; any other invoke name is answered 501 Not Implemented, as the Bot
# Framework protocol (and README's HTTP table) says, which is not a failure.
HANDLED_INVOKES = ("adaptiveCard/action", "composeExtension/query")
# Every how many replies' cards one is checked against the Adaptive Card schema (checking
# one costs milliseconds; every card of a verbatim check is checked).
VALIDATE_EVERY = 10
TODAY = datetime.now(ZoneInfo("Europe/London")).date()
# One line per fuzzed backend, for the end of pytest's report.
SUMMARIES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUMMARIES:
        terminalreporter.write_line(line)


class Records(logging.Handler):
    """Every log record at WARNING and above, from every logger, while the fuzz runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def is_failure(record: logging.LogRecord) -> bool:
    """An unhandled exception, or anything logged as an error."""
    return record.levelno >= logging.ERROR or record.exc_info is not None


@dataclass
class Acknowledged:
    """An idea the bot confirmed, and the text it was submitted with."""

    reference: str
    title: str
    problem: str
    suggestion: str


@dataclass
class Fuzzer:
    """Posts inputs to the bot and checks each answer."""

    server: ServedBot = field(repr=False)
    connector: FakeConnector = field(repr=False)
    http: aiohttp.ClientSession = field(repr=False)
    lanes: dict[str, TeamsClient] = field(repr=False)
    validator: TeamsCardValidator = field(repr=False)
    records: Records = field(repr=False)
    log_scan: LogCapture = field(repr=False)
    database_url: str
    quota: int  # how many inputs to send on this backend
    posted: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    validated: int = 0
    acknowledged: list[Acknowledged] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    _replies_seen: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        return self.server.url + "/api/messages"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a failing test's arguments with its own printer, which would
        # otherwise walk every field (every activity the connector received).
        printer.text(repr(self))

    async def run(self, batch: list[Input]) -> None:
        """Post the batch (lanes side by side) and check every answer; fails on the first
        problem, with every log record that explains it."""
        started = time.perf_counter()
        first_record = len(self.records.records)
        by_lane: dict[str, list[Input]] = defaultdict(list)
        for index, item in enumerate(batch):
            # Raw bodies and new conversations have no order to keep.
            key = item.lane if isinstance(item, Turn) and item.lane != "fresh" else f"#{index}"
            by_lane[key].append(item)
        problems: list[str] = []
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def lane(items: list[Input]) -> None:
            async with semaphore:
                for item in items:
                    problems.extend(await self.post(item))

        await asyncio.gather(*(lane(items) for items in by_lane.values()))
        self.seconds += time.perf_counter() - started
        failures = [r for r in self.records.records[first_record:] if is_failure(r)]
        for record in failures:
            problems.append(f"logged {record.levelname} {record.name}: {record.getMessage()}")
            if record.exc_info:
                problems.append(logging.Formatter().formatException(record.exc_info))
        problems += self.read_bot_log()
        assert not problems, "\n".join(problems)

    def read_bot_log(self, *, to_the_end: bool = False) -> list[str]:
        """What the bot process has logged since last asked: every line goes to the run's
        scan for personal data; an error or an exception is a problem. (A line logged after
        a turn was answered, by the outbox say, may be read with the next batch.)"""
        problems = []
        for entry in self.server.new_entries(to_the_end=to_the_end):
            self.log_scan.keep(entry.written(), entry.logger, entry.level)
            if entry.is_failure:
                problems.append(_describe(entry))
        return problems

    async def post(self, item: Input) -> list[str]:
        self.posted += 1
        if isinstance(item, Raw):
            return await self._post_raw(item)
        return await self._post_turn(item)

    async def _post_raw(self, item: Raw) -> list[str]:
        headers = {} if item.content_type is None else {"Content-Type": item.content_type}
        async with self.http.post(
            self.url,
            # A stream, as aiohttp asks for large bodies (raw bytes warn).
            data=io.BytesIO(item.body),
            headers=headers,
            skip_auto_headers=["Content-Type"] if item.content_type is None else [],
        ) as response:
            await response.read()
            status = response.status
        self.statuses[status] += 1
        if status >= 500:
            return [f"{status} for a raw body {item.body[:200]!r} ({item.content_type})"]
        return []

    def build(self, item: Turn) -> dict[str, Any]:
        client = self.lanes.get(item.lane) or self._fresh_client()
        # A copy: the values come from shared pools, and mutations change them in place.
        fields = copy.deepcopy(item.fields)
        if "text" in fields and client.conversation_type == "channel":
            fields["text"] = f"<at>{BOT_NAME}</at> {fields['text']}"
            fields.setdefault("entities", [mention()])
        value = fields.get("value")
        if item.expect and item.expect[0] == "idea_title" and isinstance(value, dict):
            fields["value"] = value | {"form": uuid.uuid4().hex}
        activity = client.activity(**fields)
        for change in item.mutations:
            apply(activity, change)
        return activity

    def _fresh_client(self) -> TeamsClient:
        return TeamsClient(
            bot_url=self.server.url,
            connector=self.connector,
            http=self.http,
            user=new_user("Fresh Fuzz"),
        )

    async def _post_turn(self, item: Turn) -> list[str]:
        activity = self.build(item)
        body = json.dumps(activity).encode()  # lone surrogates travel as \ud800 escapes
        before = len(self.connector.sent)
        async with self.http.post(
            self.url, data=io.BytesIO(body), headers={"Content-Type": "application/json"}
        ) as response:
            answer = await response.read()
            status = response.status
        self.statuses[status] += 1
        shown = json.dumps(activity)[:600]
        problems: list[str] = []
        name = activity.get("name") if activity.get("type") == "invoke" else None
        if status >= 500 and not (status == 501 and name not in HANDLED_INVOKES):
            problems.append(f"{status} {answer[:300]!r} for {shown}")
        activity_id = activity.get("id")
        if not isinstance(activity_id, str) or not activity_id:
            return problems
        replies = [
            s.activity
            for s in self.connector.sent[before:]
            if s.activity.get("replyToId") == activity_id
        ]
        for reply in replies:
            if reply.get("text") in (FAILED_TEXT, UNAVAILABLE_TEXT, CONFLICT_TEXT):
                problems.append(f"answered {reply['text']!r} to {shown}")
        cards = [
            attachment["content"]
            for reply in replies
            for attachment in reply.get("attachments") or []
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive"
        ]
        if status == 200 and activity.get("type") == "invoke" and answer:
            invoke_card = _invoke_card(answer)
            if invoke_card is not None:
                cards.append(invoke_card)
        for card in cards:
            self._replies_seen += 1
            if item.expect or self._replies_seen % VALIDATE_EVERY == 0:
                self.validated += 1
                errors = self.validator.errors(card)
                if errors:
                    problems.append(f"invalid card for {shown}: {errors[:5]}")
        if item.expect:
            problems.extend(self.check_expectation(item, activity, cards))
        return problems

    def check_expectation(
        self, item: Turn, activity: dict[str, Any], cards: list[dict[str, Any]]
    ) -> list[str]:
        """The person's text is in the card exactly as typed (as JSON string data: never a
        template evaluated, never JSON broken)."""
        assert item.expect is not None
        kind, typed = item.expect
        if len(cards) != 1:
            return [f"{kind}: expected one card, got {len(cards)} for {json.dumps(activity)[:600]}"]
        card = cards[0]
        blocks = [n.get("text") for n in card_nodes(card) if n.get("type") == "TextBlock"]
        if kind == "idea_title":
            if "Thank you: your idea is in" not in blocks or typed not in blocks:
                return [f"idea not confirmed with its title {typed!r}: {card_text(card)[:600]}"]
            reference = re.search(r"IDEA-\d{4,}", card_text(card))
            value = activity["value"]
            if reference:
                self.acknowledged.append(
                    Acknowledged(
                        reference=reference.group(0),
                        title=typed,
                        problem=as_received(value["problem"]).strip(),
                        suggestion=as_received(value["suggestion"]).strip(),
                    )
                )
            return []
        if kind == "unknown":
            said = truncate_text(" ".join(as_received(typed).split()), 100)
            expected = f'Sorry, I didn\'t understand "{said}".'
            if expected not in blocks:
                return [f"unknown command not quoted verbatim: {expected!r} not in {blocks!r}"]
            return []
        if kind == "idea_form_title":
            argument = " ".join(as_received("idea " + typed).split())[len("idea") :].strip()
            titles = [n.get("value") for n in card_nodes(card) if n.get("id") == "title"]
            if titles != [argument[:120]]:
                return [f"idea form title {titles!r}, expected {argument[:120]!r}"]
            return []
        raise AssertionError(f"unknown expectation {kind}")


def _describe(entry: LogEntry) -> str:
    fields = entry.fields
    said = f"bot logged {entry.level} {entry.logger}: {fields.get('message', '')}"
    return "\n".join([said, str(fields.get("exception", ""))]).strip()


def _invoke_card(answer: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(answer)
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("type") == "application/vnd.microsoft.card.adaptive":
        value = body.get("value")
        return value if isinstance(value, dict) else None
    return None


def apply(activity: dict[str, Any], change: Mutation) -> None:
    """Apply a mutation to the activity; a path through something that is not an object or a
    list is left alone (an earlier mutation replaced it)."""
    node: Any = activity
    *parents, last = change.path
    for step in parents:
        if isinstance(node, dict) and isinstance(step, str):
            node = node.setdefault(step, {}) if not change.delete else node.get(step)
        elif isinstance(node, list) and isinstance(step, int):
            if step >= len(node):
                if change.delete:
                    return
                node.append({})
            node = node[step]
        else:
            return
    if isinstance(node, dict) and isinstance(last, str):
        if change.delete:
            node.pop(last, None)
        else:
            node[last] = change.value
    elif isinstance(node, list) and isinstance(last, int):
        if change.delete:
            if last < len(node):
                del node[last]
        elif last < len(node):
            node[last] = change.value
        else:
            node.append(change.value)


# --- the world the inputs come from -------------------------------------------------------------


async def _set_up(lanes: dict[str, TeamsClient]) -> None:
    """What the fuzz starts from: every lane's chat known, a triage channel, a subscribed
    channel, a Change Maker with a held session (three actions) and one in the diary, and an
    idea with a supporter."""
    for client in lanes.values():
        assert (await client.install()).status < 300
    channel = lanes["channel"]
    assert "triage channel" in (await channel.say("set triage channel")).texts[0]
    assert (await channel.say("subscribe")).cards

    maker = lanes["maker"]
    form = (await maker.say("log session")).card
    logged = await maker.press(
        form,
        "Log session",
        scheduled="",
        date=TODAY.isoformat(),
        team="Benefits team",
        attendees="6",
        themes="Paperwork, Phone queues",
        changes="Scan forms at the counter\nOne shared contact log\nCall-back slots",
        rating="4",
    )
    assert "Logged" in card_text(logged.card), card_text(logged.card)
    form = (await maker.say("schedule session")).card
    scheduled = await maker.press(
        form,
        "Schedule session",
        date=(TODAY + timedelta(days=7)).isoformat(),
        time="10:00",
        team="Revenues team",
        expected="8",
    )
    assert "Scheduled for" in card_text(scheduled.card), card_text(scheduled.card)

    form = (await lanes["staff"].say("idea")).card
    submitted = await lanes["staff"].press(
        form,
        "Submit idea",
        title="Scan post at the counter",
        problem="Residents queue while we photocopy forms.",
        suggestion="Scan forms straight into the case system.",
        service_area="Customer Services",
        principles="1,3",
        benefits="time_saved",
        anonymous="false",
    )
    assert "Thank you: your idea is in" in card_text(submitted.card)
    supported = await lanes["leader"].submit({"action": "idea_support", "idea": "IDEA-0001"})
    assert "you now support IDEA-0001" in supported.texts[0], supported.texts


@pytest.fixture(scope="module")
def fuzz_records() -> Iterator[Records]:
    records = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(min(level or logging.WARNING, logging.WARNING))
    yield records
    root.removeHandler(records)
    root.setLevel(level)


@pytest.fixture(scope="module")
async def fuzzer(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fuzz_records: Records,
    pytestconfig: pytest.Config,
) -> AsyncIterator[Fuzzer]:
    url, drop = await fresh_database(database_url, tmp_path_factory.mktemp("fuzz"), prefix="fuzz")
    connector = FakeConnector()
    # The bot in a process of its own, served as in production: it and the fuzzer each get
    # a core, and what it logs is read from its JSON log.
    server = ServedBot(url, tmp_path_factory.mktemp("fuzz-bot"))
    log_scan = pytestconfig.pluginmanager.get_plugin("personal-data-log-scan").capture
    stopped = None
    try:
        await connector.start()
        leader, maker, staff = new_user("Lena Leader"), new_user("Mo Maker"), new_user("Sam Staff")
        group_member = new_user("Gus Group")
        connector.know(leader, maker, staff, group_member)
        await import_roster_csv(
            url,
            "name,email,role,leader_email,service_area\n"
            f"{leader.name},{leader.email},change_leader,,Customer Services\n"
            f"{maker.name},{maker.email},change_maker,{leader.email},Customer Services\n",
        )
        await server.start()
        async with aiohttp.ClientSession() as http:

            def chat(user: TeamsUser, kind: str = "personal") -> TeamsClient:
                return TeamsClient(
                    bot_url=server.url,
                    connector=connector,
                    http=http,
                    user=user,
                    conversation_id=new_conversation_id(kind),
                    conversation_type=kind,
                )

            lanes = {
                "staff": chat(staff),
                "officer": chat(OFFICER),
                "maker": chat(maker),
                "leader": chat(leader),
                "channel": chat(OFFICER, "channel"),
                "group": chat(group_member, "groupChat"),
            }
            await _set_up(lanes)
            validator = TeamsCardValidator(load_adaptive_card_schema())
            fuzzer = Fuzzer(
                server=server,
                connector=connector,
                http=http,
                lanes=lanes,
                validator=validator,
                records=fuzz_records,
                log_scan=log_scan,
                database_url=url,
                quota=(FUZZ_EXAMPLES if url.startswith("sqlite") else FUZZ_EXAMPLES_POSTGRESQL),
            )
            yield fuzzer
            statuses = ", ".join(f"{n} x {s}" for s, n in sorted(fuzzer.statuses.items()))
            SUMMARIES.append(
                f"fuzz ({url.split(':')[0]}): {fuzzer.posted:,} inputs over HTTP in "
                f"{fuzzer.seconds:.0f} s; answers {statuses}; {fuzzer.validated:,} cards "
                f"checked against the schema; {len(fuzzer.acknowledged):,} ideas confirmed "
                "verbatim"
            )
    finally:
        try:
            if server.process is not None:
                stopped = await server.stop()
        finally:
            await connector.close()
            await drop()
    # What it logged after the last batch, and on its way out.
    last_words = fuzzer.read_bot_log(to_the_end=True)
    assert stopped == 0 and not last_words, "\n".join(last_words)
