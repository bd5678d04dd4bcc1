"""Logs: one JSON object a line with LOG_FORMAT=json, every line of a request carrying that
request's id (answered in X-Request-Id), and no personal data at INFO and above: turns that
carry names, emails, ideas and session notes leave none of them in any log record."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import re
import signal
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import sqlalchemy
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.logs import (
    QUIET_LOGGERS,
    TextFormatter,
    configure_logging,
    exception_text,
    log_handler,
)
from storage.db import create_engine, session_factory
from storage.roster import import_roster_file
from tests.bot.conftest import BotServer, make_settings
from tests.support.connector import FakeConnector
from tests.support.people import add_person
from tests.support.served import free_port
from tests.support.teams import (
    OFFICER,
    TeamsClient,
    card_text,
    find_action,
    input_values,
    new_user,
)

HEX_ID = re.compile(r"[0-9a-f]{32}")
WAIT_SECONDS = 10


class _Stream(io.StringIO):
    """A StringIO that says when a line is written (from any thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.loop.call_soon_threadsafe(self.written.set)
        return super().write(text)


class Captured:
    """What a root handler in one of bot.logs' formats writes, read back line by line."""

    def __init__(self, fmt: Literal["text", "json"]) -> None:
        self.stream = _Stream(asyncio.get_running_loop())
        self.handler = log_handler(self.stream, fmt)

    def lines(self, start: int = 0) -> list[str]:
        return [line for line in self.stream.getvalue().split("\n")[start:] if line]

    def count(self) -> int:
        return len(self.lines())

    def entries(self, start: int = 0) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines(start)]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait for a line: aiohttp writes its access line just after the answer is sent."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    self.stream.written.clear()
                    if condition():
                        return
                    await self.stream.written.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} logged within {WAIT_SECONDS}s") from None

    def has_line(self, logger: str, request_id: str | None = None, start: int = 0) -> bool:
        return any(
            e["logger"] == logger and (request_id is None or e.get("request_id") == request_id)
            for e in self.entries(start)
        )


@contextlib.contextmanager
def captured(fmt: Literal["text", "json"]) -> Iterator[Captured]:
    """Capture every logger's records at INFO and above, as `ourcambridge serve` would."""
    capture = Captured(fmt)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(capture.handler)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], request_id: str | None = None
) -> tuple[int, str]:
    """POST an activity; the HTTP status and the X-Request-Id answered."""
    headers = {"X-Request-Id": request_id} if request_id is not None else {}
    async with http.post(url + "/api/messages", json=body, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("X-Request-Id", "")


def is_fake_connectors(entry: dict[str, Any]) -> bool:
    """The fake Teams connector runs in the test's process: its access lines are its own."""
    return entry["logger"] == "aiohttp.access" and " /v3/" in entry["message"]


def pressed(card: dict[str, Any], title: str, /, **entries: Any) -> dict[str, Any]:
    """The value Teams sends when the card's button `title` is pressed (see TeamsClient)."""
    return {**(find_action(card, title).get("data") or {}), **input_values(card), **entries}


@pytest.fixture
async def server(fresh_database_url: str) -> AsyncIterator[BotServer]:
    """A bot of its own, so that no other test's background work logs during a turn."""
    bot = await BotServer(make_settings(fresh_database_url)).start()
    yield bot
    await bot.stop()


# --- the request id ---------------------------------------------------------------------


async def test_every_line_of_a_turn_is_json_and_carries_the_turns_request_id(
    server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    user = new_user("Jo Jsonline")
    connector.know(user)
    chat = TeamsClient(bot_url=server.url, connector=connector, http=http, user=user)
    # Captured from the first request on: aiohttp decides per connection whether to write
    # access lines, and the connections are kept alive.
    with captured("json") as log:
        form = (await chat.say("idea")).card
        submission = chat.activity(
            value=pressed(
                form,
                "Submit idea",
                title="Print fewer letters",
                problem="We print letters nobody reads.",
                suggestion="Send them by email.",
                service_area="Customer Services",
                principles="1",
                benefits="time_saved",
            )
        )
        turns = [
            ("help", chat.activity(text="help")),
            ("an idea submitted", submission),
            ("the same activity delivered again", submission),
            ("an install", chat.activity(type="installationUpdate", action="add")),
        ]
        loggers: set[str] = set()
        summary: list[tuple[str, str | None]] = []
        for what, body in turns:
            start = log.count()
            status, request_id = await post(http, server.url, body)
            assert status == 201, what
            assert HEX_ID.fullmatch(request_id), f"{what}: a new id is made: {request_id!r}"
            await log.until(
                functools.partial(log.has_line, "aiohttp.access", request_id, start),
                f"access line for {what}",
            )
            entries = [e for e in log.entries(start) if not is_fake_connectors(e)]
            assert {e.get("request_id") for e in entries} == {request_id}, (what, entries)
            [turn] = [e for e in entries if e["logger"] == "bot.turns"]
            assert turn["status"] == 201 and turn["duration_ms"] >= 0
            summary.append((turn["activity_type"], turn["command"]))
            for entry in entries:
                assert set(entry) >= {"time", "level", "logger", "message"}
                assert datetime.fromisoformat(entry["time"]).utcoffset() == timedelta(0)
            loggers |= {e["logger"] for e in entries}
    assert all(isinstance(json.loads(line), dict) for line in log.lines()), "one object a line"
    assert summary == [
        ("message", "help"),
        ("message", "card idea_submit"),
        ("message", "card idea_submit"),
        ("installationUpdate", None),
    ]
    # Lines from inside the turn (a dialog, and the handler deciding what botbuilder runs).
    assert {"dialogs.ideas", "bot.handler", "bot.turns", "aiohttp.access"} <= loggers


async def test_a_sane_incoming_request_id_is_kept_and_answered(
    server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    chat = TeamsClient(bot_url=server.url, connector=connector, http=http)
    incoming = "frontdoor-7f3a.9_Z"
    with captured("json") as log:
        status, answered = await post(http, server.url, chat.activity(text="help"), incoming)
        await log.until(functools.partial(log.has_line, "bot.turns"), "turn line")
    assert (status, answered) == (201, incoming)
    turn = next(e for e in log.entries() if e["logger"] == "bot.turns")
    assert turn["request_id"] == incoming


async def test_an_unsafe_incoming_request_id_is_replaced(
    server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    chat = TeamsClient(bot_url=server.url, connector=connector, http=http)
    hostile = ["x" * 500, "x" * 65, "a b", "a\tb", "<script>", "id;drop", "../etc", '"quoted"']
    for offered in hostile:
        with captured("json") as log:
            status, answered = await post(http, server.url, chat.activity(text="help"), offered)
            await log.until(functools.partial(log.has_line, "bot.turns"), "turn line")
        assert status == 201
        assert HEX_ID.fullmatch(answered), (offered, answered)
        assert all(offered not in line for line in log.lines())
        turn = next(e for e in log.entries() if e["logger"] == "bot.turns")
        assert turn["request_id"] == answered


async def test_a_request_id_with_a_line_break_never_reaches_the_bot(server: BotServer) -> None:
    """HTTP cannot carry "a\\nb" in a header: aiohttp's client refuses to send it, and sent
    raw, the server's parser refuses the request before any handler (or log line of ours)."""
    assert server.server is not None
    with captured("json") as log:
        reader, writer = await asyncio.open_connection(server.server.host, server.server.port)
        writer.write(
            b"POST /api/messages HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            b"X-Request-Id: a\nb\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    assert not [e for e in log.entries() if e["logger"] == "bot.turns"]


async def test_the_text_format_ends_each_line_of_a_request_with_its_id(
    server: BotServer, connector: FakeConnector, http: aiohttp.ClientSession
) -> None:
    chat = TeamsClient(bot_url=server.url, connector=connector, http=http)
    with captured("text") as log:
        status, answered = await post(http, server.url, chat.activity(text="help"), "text-1")
        await log.until(lambda: any("bot.turns" in line for line in log.lines()), "turn line")
    assert status == 201 and answered == "text-1"
    turn = next(line for line in log.lines() if "bot.turns" in line)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bot\.turns: message activity "
        r"\(help\) answered 201 in \d+ ms \[text-1\]",
        turn,
    ), turn


# --- exceptions -------------------------------------------------------------------------


async def test_a_database_error_is_logged_without_the_values_it_quotes(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A unique constraint refusing a person's email. Our engines hide the statement's
    parameters, but PostgreSQL's DETAIL still quotes the refused key; the log keeps the
    type, the error's code and the SQL."""
    name, email = "Zebedee Quuxley", f"zebedee.quuxley.{uuid.uuid4().hex[:8]}@cambridge.gov.uk"
    await add_person(sessions, name, email=email)
    with captured("json") as json_log, captured("text") as text_log:
        try:
            try:
                # (The traceback quotes this line: it names no one, as code never does.)
                await add_person(sessions, name, email=email)
            except IntegrityError as error:
                unredacted = logging.Formatter().formatException(sys.exc_info())
                raise RuntimeError("Saving a person failed") from error
        except RuntimeError:
            logging.getLogger("tests.logging").exception("Could not import the roster")
    if database_url.startswith("postgresql"):
        assert f"=({email})" in unredacted, "the raw traceback quotes it: the check can fail"
    [entry] = json_log.entries()
    assert entry["exception_type"] == "RuntimeError"
    for logged in (entry["exception"], "\n".join(text_log.lines())):
        assert email not in logged and "Quuxley" not in logged
        assert "sqlalchemy.exc.IntegrityError: (message withheld" in logged
        assert "INSERT INTO person" in logged, "the statement, with placeholders, is kept"
        assert "The above exception was the direct cause" in logged
        assert "RuntimeError: Saving a person failed" in logged, "our own message is kept"
        assert 'File "' in logged and "add_person" in logged, "the traceback is kept"


async def test_an_engine_that_shows_parameters_still_logs_none() -> None:
    """Any database error's message is withheld, not only those of our own engines."""
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE note (body TEXT NOT NULL UNIQUE)"))
        connection.execute(sqlalchemy.text("INSERT INTO note VALUES ('Gribbleflap notes')"))
    with captured("json") as log:
        try:
            with engine.begin() as connection:
                connection.execute(
                    sqlalchemy.text("INSERT INTO note VALUES (:body)"),
                    {"body": "Gribbleflap notes"},
                )
        except IntegrityError:
            unredacted = logging.Formatter().formatException(sys.exc_info())
            logging.getLogger("tests.logging").exception("Saving a note failed")
    engine.dispose()
    assert "Gribbleflap" in unredacted, "the raw traceback quotes it: the check can fail"
    [entry] = log.entries()
    assert "Gribbleflap" not in json.dumps(entry)
    assert entry["exception"].endswith(
        "sqlalchemy.exc.IntegrityError: (message withheld: it may quote stored values) "
        "from sqlite3.IntegrityError; sqlite_errorname=SQLITE_CONSTRAINT_UNIQUE; "
        "SQL: INSERT INTO note VALUES (?)"
    ), entry["exception"][-300:]


def _raised(make: Callable[[], None]) -> BaseException:
    try:
        make()
    except BaseException as error:  # what was raised, to be written out
        return error
    raise AssertionError("nothing was raised")


def _cause() -> None:
    try:
        raise KeyError("first")
    except KeyError as error:
        raise ValueError("second") from error


def _context() -> None:
    try:
        raise KeyError("first")
    except KeyError:
        raise ValueError("second")  # noqa: B904 (the implicit chain is what is tested)


def _suppressed() -> None:
    try:
        raise KeyError("first")
    except KeyError:
        raise ValueError("second") from None


@pytest.mark.parametrize("make", [_cause, _context, _suppressed])
def test_other_exceptions_are_written_as_python_writes_them(make: Callable[[], None]) -> None:
    error = _raised(make)
    assert exception_text(error) == "".join(traceback.format_exception(error)).rstrip("\n")


# --- no personal data -----------------------------------------------------------------


def _today() -> date:
    return datetime.now(ZoneInfo("Europe/London")).date()


async def test_turns_full_of_personal_data_leave_none_in_the_logs(
    server: BotServer,
    fresh_database_url: str,
    connector: FakeConnector,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    maker = new_user("Zebedee Quuxley")
    leader = new_user("Philomena Gastrowick")
    connector.know(maker, leader)
    personal = {
        "maker's name": ["Zebedee", "Quuxley"],
        "maker's email": [maker.email],
        "leader's name": ["Philomena", "Gastrowick"],
        "leader's email": [leader.email],
        "idea": ["Marmalade ledger", "Wobblecorn", "Snickersnee"],
        "session": ["Wibblesworth", "Flibbertigibbet", "Defenestrate", "Kazoos", "Gloriously"],
        "typed by people": ["Grommet", "Tiddlywinks", "Bumbershoot", "Zanzibar"],
    }
    caplog.set_level(logging.INFO)  # every logger, at INFO and above
    with captured("json") as log:
        roster = tmp_path / "roster.csv"
        roster.write_text(
            "name,email,role,leader_email,service_area\n"
            f"{leader.name},{leader.email},change_leader,,Customer Services\n"
            f"{maker.name},{maker.email},change_maker,{leader.email},Customer Services\n",
            encoding="utf-8",
        )
        engine = create_engine(fresh_database_url)
        try:
            await import_roster_file(session_factory(engine), roster)
        finally:
            await engine.dispose()

        zebedee = TeamsClient(bot_url=server.url, connector=connector, http=http, user=maker)
        await zebedee.install()
        assert (await zebedee.say("help")).cards
        assert "Alloy" in card_text((await zebedee.say("status alloy")).card)

        # An idea, refused first (a title too long), then submitted.
        form = (await zebedee.say("idea")).card
        idea = {
            "problem": "Wobblecorn forms are copied by hand at the counter.",
            "suggestion": "Snickersnee them straight into the case system.",
            "service_area": "Customer Services",
            "principles": "1,3",
            "benefits": "time_saved",
        }
        refused = await zebedee.submit(
            pressed(form, "Submit idea", title="Marmalade ledger " + "Tiddlywinks " * 20, **idea)
        )
        assert "120" in card_text(refused.card), "the form comes back with the reason"
        submitted = await zebedee.submit(
            pressed(
                refused.card, "Submit idea", title="Marmalade ledger for Zebedee Quuxley", **idea
            )
        )
        reference = re.search(r"IDEA-\d{4}", card_text(submitted.card))
        assert reference, card_text(submitted.card)
        assert "Marmalade ledger" in card_text((await zebedee.say("my ideas")).card)

        # Making It Real: a session scheduled, one logged, and a log refused (a future date).
        form = (await zebedee.say("schedule session")).card
        scheduled = await zebedee.press(
            form,
            "Schedule session",
            date=(_today() + timedelta(days=7)).isoformat(),
            time="10:00",
            team="Wibblesworth team",
            expected="8",
        )
        assert "Wibblesworth" in card_text(scheduled.card)
        form = (await zebedee.say("log session")).card
        future = await zebedee.press(
            form,
            "Log session",
            scheduled="",
            date=(_today() + timedelta(days=3)).isoformat(),
            team="Grommet crew",
            attendees="4",
            themes="Bumbershoot queues",
            changes="Zanzibar rota",
            rating="3",
        )
        assert "future" in card_text(future.card).lower()
        logged = await zebedee.press(
            future.card,
            "Log session",
            scheduled="",
            date=(_today() - timedelta(days=1)).isoformat(),
            team="Wibblesworth team",
            attendees="6",
            themes="Flibbertigibbet paperwork, phone queues",
            changes="Defenestrate the fax machine\nOne shared contact log",
            went_well="Gloriously chaotic",
            to_change="Fewer kazoos",
            rating="4",
        )
        assert "Defenestrate the fax machine" in card_text(logged.card)
        assert "Wibblesworth" in card_text((await zebedee.say("my sessions")).card)
        assert "Defenestrate" in card_text((await zebedee.say("my actions")).card)
        unknown = await zebedee.say("Zebedee Quuxley wants Tiddlywinks")
        assert unknown.sent, "answered, with the closest commands"

        # The leader's view names Zebedee; the transformation team moves the idea.
        philomena = TeamsClient(bot_url=server.url, connector=connector, http=http, user=leader)
        assert "Zebedee Quuxley" in card_text((await philomena.say("my change makers")).card)
        officer = TeamsClient(bot_url=server.url, connector=connector, http=http, user=OFFICER)
        assert "Marmalade ledger" in card_text((await officer.say("ideas")).card)
        idea_id = int(reference.group(0).removeprefix("IDEA-"))
        duplicate = await officer.invoke(
            "adaptiveCard/action",
            {
                "action": {
                    "type": "Action.Execute",
                    "verb": "idea_status",
                    "data": {"idea": idea_id, "status": "duplicate", "duplicate_of": "Grommet"},
                },
                "trigger": "manual",
            },
        )
        assert "Grommet" in card_text(duplicate.body["value"]), "refused, quoting what was typed"

    records = caplog.records
    assert records, "the capture works"
    messages = [r.getMessage() for r in records]
    assert any("Roster imported: 2 created" in m for m in messages)
    assert any(f"Idea {reference.group(0)} submitted" in m for m in messages)
    assert any("MIR session logged with 2 action(s)" in m for m in messages)
    assert sum("message activity" in m for m in messages) >= 15
    exceptions = [
        r.exc_text or (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in records
    ]
    written = [*messages, *exceptions, *log.lines()]
    leaks = {
        f"{kind}: {value!r} in {line!r}"
        for kind, values in personal.items()
        for value in values
        for line in written
        if value.casefold() in line.casefold()
    }
    assert not leaks, "\n".join(sorted(leaks))


def test_configure_logging_installs_one_handler_and_leaves_others_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        configure_logging("info", "json")
        configure_logging("debug", "text")
        ours = [h for h in root.handlers if h not in handlers]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter), "replaced"
        assert all(h in root.handlers for h in handlers), "pytest's own handlers are kept"
        assert root.level == logging.DEBUG
        # msrest's HTTP logger writes whole bodies at DEBUG: never below WARNING.
        assert logging.getLogger("msrest.http_logger").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("msal").getEffectiveLevel() == logging.INFO
        configure_logging("error", "json")
        assert logging.getLogger("msal").getEffectiveLevel() == logging.ERROR, "not chattier"
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        for name, quiet_level in quiet.items():
            logging.getLogger(name).setLevel(quiet_level)
        logging.captureWarnings(False)


# --- the command line's wiring ----------------------------------------------------------


async def test_serve_with_log_format_json_writes_only_json_with_request_ids(
    database_url: str, connector: FakeConnector, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DATABASE_URL": database_url,
        "MicrosoftAppId": "",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "REMINDERS_AT": "off",
        "SCHEDULER_ENABLED": "false",
    }
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30):
            while True:
                assert process.returncode is None, stderr_path.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + "/healthz") as probe:
                        if probe.status == 200:
                            break
                await asyncio.sleep(0.1)
        chat = TeamsClient(bot_url=url, connector=connector, http=http)
        status, answered = await post(http, url, chat.activity(text="help"), "cli-proof-1")
        assert (status, answered) == (201, "cli-proof-1")
        assert (await connector.wait_for(chat.conversation_id))[0]["attachments"]
        status, made = await post(http, url, chat.activity(text="status alloy"))
        assert status == 201 and HEX_ID.fullmatch(made)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    lines = [line for line in stderr_path.read_text(encoding="utf-8").split("\n") if line]
    entries = [json.loads(line) for line in lines]  # every line of the process is JSON
    assert any("authentication is OFF" in e["message"] for e in entries)
    for request, command in (("cli-proof-1", "help"), (made, "status")):
        mine = [e for e in entries if e.get("request_id") == request]
        turn = [e for e in mine if e["logger"] == "bot.turns"]
        assert [(t["activity_type"], t["command"], t["status"]) for t in turn] == [
            ("message", command, 201)
        ], entries
        access = [e for e in mine if e["logger"] == "aiohttp.access"]
        assert [(a["method"], a["path"], a["status"]) for a in access] == [
            ("POST", "/api/messages", 201)
        ], entries
    probes = [e for e in entries if e["logger"] == "aiohttp.access" and e["path"] == "/healthz"]
    assert probes and all(HEX_ID.fullmatch(e["request_id"]) for e in probes)
