"""How many turns a second the bot answers, against a stock botbuilder echo bot and a plain
aiohttp echo handler on the same machine, in the same run.

    .venv/bin/python -m benchmarks.turns [--turns 2000] [--conversations 50]
        [--concurrency 1,8,64] [--latency 0,200] [--postgres URL] [--bots project,stock,plain]

Every bot is a process of its own listening on 127.0.0.1 with authentication off:

- project: `ourcambridge serve` (whatever bot/ is now) on a fresh SQLite file and, with
  --postgres, on a temporary database of that server (created here, dropped at the end);
- stock: a botbuilder 4.17.1 echo bot with the SDK's defaults (CloudAdapter, ActivityHandler,
  `adapter.process` on /api/messages), nothing tuned;
- plain: an aiohttp handler doing the same protocol work by hand (parse the activity, POST
  the echo to the connector over one shared ClientSession, answer 201).

They all reply to a fake Bot Connector, a process of its own too (so its work is not done on
the loops being measured, as Teams' is not), answering after 0 or 200 ms and noting when each
reply arrives. The driver (this process) posts N Teams message activities spread over the
conversations with 1, 8 or 64 in flight; the project gets three workloads (`status alloy`,
`projects`, an idea form submitted), the echo bots the text turn. Bots take turns within each
latency and concurrency, so they see the same machine state. Each reply is checked; each
submitted idea must be stored.

A benchmark, not a test: see benchmarks/README.md for the columns and how long it takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

# Light imports only up here: the connector and the echo bots are this module started again,
# and their peak RSS should not carry the project's libraries. The project's own modules are
# imported where the driver uses them.
from tests.support.teams import BOT_ID, BOT_NAME, TENANT_ID, card_text

REPLY_WAIT_SECONDS = 10.0  # after a run, how long a missing reply may still arrive
HTTP_TIMEOUT_SECONDS = 60.0
WARM_UP_TURNS_PER_CONVERSATION = 1  # first contact (the member lookup) is not measured
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

IDEA = {
    "problem": "Residents queue while we photocopy paper forms at the counter.",
    "suggestion": "Scan forms at the counter straight into the case system.",
    "service_area": "Customer Services",
    "principles": "1,3",
    "benefits": "time_saved,better_for_residents",
    "anonymous": "false",
}


# --- the fake Bot Connector (its own process) ------------------------------------------------


def serve_connector(port: int) -> None:
    """Answer sends after the configured latency and note each one's arrival (monotonic
    clock, which is system-wide on Linux, so the driver can compare it with its own)."""
    state: dict[str, Any] = {"latency": 0.0, "replies": []}

    async def send(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        activity = await request.json()
        state["replies"].append(
            {
                "at": arrived,
                "conversation": request.match_info["conversation"],
                "reply_to": request.match_info.get("reply_to") or activity.get("replyToId"),
                "text": activity.get("text") or "",
                # The driver checks the cards' text, not their layout: less to carry back.
                "cards": [
                    card_text(attachment.get("content") or {})
                    for attachment in activity.get("attachments") or []
                    if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive"
                ],
            }
        )
        if state["latency"]:
            await asyncio.sleep(state["latency"])
        return web.json_response({"id": f"reply-{uuid.uuid4().hex[:12]}"})

    async def member(request: web.Request) -> web.Response:
        # Every benchmark user exists: their Teams id is 29:{aadObjectId}.
        member_id = request.match_info["member"]
        aad = member_id.removeprefix("29:")
        return web.json_response(
            {
                "id": member_id,
                "name": f"Bench {aad[-6:]}",
                "aadObjectId": aad,
                "email": f"{aad}@cambridge.gov.uk",
                "userPrincipalName": f"{aad}@cambridge.gov.uk",
                "tenantId": TENANT_ID,
                "userRole": "user",
            }
        )

    async def reset(request: web.Request) -> web.Response:
        state["latency"] = float((await request.json())["latency"])
        state["replies"] = []
        return web.json_response({})

    async def replies(_request: web.Request) -> web.Response:
        return web.json_response(state["replies"])

    async def count(_request: web.Request) -> web.Response:
        return web.json_response(len({r["reply_to"] for r in state["replies"]}))

    app = web.Application(client_max_size=10 * 1024**2)
    app.router.add_post("/v3/conversations/{conversation}/activities", send)
    app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", send)
    app.router.add_get("/v3/conversations/{conversation}/members/{member}", member)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_get("/_bench/replies", replies)
    app.router.add_get("/_bench/count", count)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the two echo bots (each its own process) ------------------------------------------------


def serve_stock(port: int) -> None:
    """The SDK's echo sample, as a developer would start from it: defaults throughout."""
    from botbuilder.core import ActivityHandler, TurnContext
    from botbuilder.core.integration import aiohttp_error_middleware
    from botbuilder.integration.aiohttp import (
        CloudAdapter,
        ConfigurationBotFrameworkAuthentication,
    )

    class Config:
        APP_ID = ""  # authentication off, as for the project and the plain handler
        APP_PASSWORD = ""
        APP_TYPE = "MultiTenant"
        APP_TENANTID = ""

    class EchoBot(ActivityHandler):
        async def on_message_activity(self, turn_context: TurnContext) -> None:
            await turn_context.send_activity(f"echo: {turn_context.activity.text}")

    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(Config()))
    bot = EchoBot()

    async def messages(request: web.Request) -> web.Response:
        return await adapter.process(request, bot)

    app = web.Application(middlewares=[aiohttp_error_middleware])
    app.router.add_post("/api/messages", messages)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_plain(port: int) -> None:
    """The protocol work of an echo turn and nothing else: the machine's limit."""
    http_key = web.AppKey("http", aiohttp.ClientSession)

    async def messages(request: web.Request) -> web.Response:
        activity = await request.json()
        conversation = activity["conversation"]["id"]
        reply = {
            "type": "message",
            "text": f"echo: {activity.get('text')}",
            "channelId": activity["channelId"],
            "serviceUrl": activity["serviceUrl"],
            "from": activity["recipient"],
            "recipient": activity["from"],
            "conversation": activity["conversation"],
            "replyToId": activity["id"],
        }
        url = (
            f"{activity['serviceUrl'].rstrip('/')}/v3/conversations/{quote(conversation, safe='')}"
            f"/activities/{quote(activity['id'], safe='')}"
        )
        async with request.app[http_key].post(url, json=reply) as response:
            await response.read()
            response.raise_for_status()
        return web.Response(status=201)

    async def http_session(app: web.Application) -> Any:
        app[http_key] = aiohttp.ClientSession()
        yield
        await app[http_key].close()

    app = web.Application()
    app.cleanup_ctx.append(http_session)
    app.router.add_post("/api/messages", messages)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


ROLES: dict[str, Callable[[int], None]] = {
    "connector": serve_connector,
    "stock": serve_stock,
    "plain": serve_plain,
}


# --- processes -------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        # utime and stime, fields 14 and 15 of /proc/<pid>/stat (after the command's ")").
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(name: str, command: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    port = free_port()
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, port, log, popen)


def start_role(role: str, log: Path) -> Process:
    return start(role, [sys.executable, "-m", "benchmarks.turns", "--role", role], log)


def project_env(database_url: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return inherited | {
        "DATABASE_URL": database_url,
        "MicrosoftAppId": "",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "SCHEDULER_ENABLED": "false",
        "REMINDERS_AT": "off",
    }


def start_project(name: str, database_url: str, directory: Path) -> Process:
    env = project_env(database_url)
    for step in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [sys.executable, "-m", "bot.cli", *step], env=env, check=True, capture_output=True
        )
    command = [sys.executable, "-m", "bot.cli", "serve"]
    return start(name, command, directory / f"{name}.log", env)


async def wait_listening(http: aiohttp.ClientSession, process: Process, path: str) -> None:
    """Until the process answers HTTP at all (any status)."""
    deadline = time.monotonic() + 60
    while True:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log.read_text()[-3000:]}")
        try:
            async with http.get(process.url + path) as response:
                await response.read()
                return
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --- the driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    text: str | None  # None: a submitted idea form

    def fields(self, number: int) -> dict[str, Any]:
        if self.text is not None:
            return {"text": self.text}
        # "Submit anyway" on a fresh form (confirmed): every submit stores a new idea, so
        # the similar-ideas scan, which the benchmark's look-alike ideas would trigger, is
        # skipped.
        value = {"action": "idea_submit", "form": uuid.uuid4().hex, "confirmed": True}
        return {"value": value | IDEA | {"title": f"Benchmark idea {number}"}}

    def check(self, replies: list[dict[str, Any]]) -> bool:
        if self.name == "echo":
            return any(r["text"] == "echo: status alloy" for r in replies)
        cards = [text for r in replies for text in r["cards"]]
        if self.name == "status alloy":
            return any("Alloy" in text for text in cards)
        if self.name == "projects":
            return any(text.strip() for text in cards)
        return any("your idea is in" in text.lower() for text in cards)


STATUS = Workload("status alloy", "status alloy")
PROJECTS = Workload("projects", "projects")
SUBMIT = Workload("idea submit", None)
ECHO = Workload("echo", "status alloy")


@dataclass
class Row:
    bot: str
    workload: str
    latency_ms: int
    concurrency: int
    turns: int
    seconds: float
    http: list[float]  # seconds, per turn answered 2xx
    reply: list[float]  # seconds, per turn replied to
    cpu_ms_per_turn: float
    peak_rss_mb: float
    lost: int
    wrong: int
    errors: int  # HTTP errors or timeouts
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.turns / self.seconds


def activity(
    connector_url: str, conversation: int, bot: str, text_or_value: dict[str, Any]
) -> dict[str, Any]:
    aad = f"aad-bench-{bot}-{conversation:04d}"
    return {
        "type": "message",
        "id": f"act-{uuid.uuid4().hex}",
        "timestamp": "2026-11-28T10:00:00.000Z",
        "channelId": "msteams",
        "serviceUrl": connector_url,
        "from": {"id": f"29:{aad}", "name": f"Bench {conversation}", "aadObjectId": aad},
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "conversation": {
            "id": f"a:personal-bench-{bot}-{conversation:04d}",
            "conversationType": "personal",
            "tenantId": TENANT_ID,
        },
        "channelData": {"tenant": {"id": TENANT_ID}},
        "locale": "en-GB",
        **text_or_value,
    }


class Driver:
    def __init__(self, http: aiohttp.ClientSession, connector: Process, conversations: int):
        self.http = http
        self.connector = connector
        self.conversations = conversations
        self.submits: dict[str, int] = {}  # per project bot: ideas it should have stored

    async def reset(self, latency: float) -> None:
        async with self.http.post(
            self.connector.url + "/_bench/reset", json={"latency": latency}
        ) as response:
            response.raise_for_status()

    async def run(
        self, bot: Process, workload: Workload, turns: int, concurrency: int, latency: float
    ) -> Row:
        await self.reset(latency)
        service_url = self.connector.url + "/"
        bodies = [
            activity(service_url, n % self.conversations, bot.name, workload.fields(n))
            for n in range(turns)
        ]
        started_at: dict[str, float] = {}
        http_seconds: list[float] = []
        errors: list[str] = []
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                begun = time.monotonic()
                started_at[body["id"]] = begun
                try:
                    async with self.http.post(bot.url + "/api/messages", json=body) as response:
                        await response.read()
                        if response.status // 100 == 2:
                            http_seconds.append(time.monotonic() - begun)
                        else:
                            errors.append(f"HTTP {response.status}")
                except (aiohttp.ClientError, TimeoutError) as error:
                    errors.append(type(error).__name__)

        cpu_before = bot.cpu_seconds()
        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - began
        cpu = bot.cpu_seconds() - cpu_before
        if workload is SUBMIT:
            self.submits[bot.name] = self.submits.get(bot.name, 0) + turns

        replies = await self._replies(turns)
        by_turn: dict[str, list[dict[str, Any]]] = {}
        for reply in replies:
            by_turn.setdefault(reply["reply_to"], []).append(reply)
        reply_seconds, lost, wrong, problems = [], 0, 0, sorted(set(errors))
        for body in bodies:
            answers = by_turn.get(body["id"])
            if not answers:
                lost += 1
                continue
            reply_seconds.append(min(a["at"] for a in answers) - started_at[body["id"]])
            right_place = all(a["conversation"] == body["conversation"]["id"] for a in answers)
            if not (right_place and workload.check(answers)):
                wrong += 1
                if len(problems) < 5:
                    problems.append(f"wrong reply: {json.dumps(answers)[:300]}")
        return Row(
            bot=bot.name,
            workload=workload.name,
            latency_ms=round(latency * 1000),
            concurrency=concurrency,
            turns=turns,
            seconds=seconds,
            http=http_seconds,
            reply=reply_seconds,
            cpu_ms_per_turn=cpu * 1000 / turns,
            peak_rss_mb=bot.peak_rss_mb(),
            lost=lost,
            wrong=wrong,
            errors=len(errors),
            problems=problems,
        )

    async def _replies(self, turns: int) -> list[dict[str, Any]]:
        """Every reply the connector saw, once each turn has one or REPLY_WAIT_SECONDS
        have passed."""
        deadline = time.monotonic() + REPLY_WAIT_SECONDS
        while time.monotonic() < deadline:
            async with self.http.get(self.connector.url + "/_bench/count") as response:
                if await response.json() >= turns:
                    break
            await asyncio.sleep(0.05)
        async with self.http.get(self.connector.url + "/_bench/replies") as response:
            replies: list[dict[str, Any]] = await response.json()
            return replies


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Options:
    turns: int
    conversations: int
    concurrency: list[int]
    latency: list[float]
    postgres: str | None
    bots: list[str]


@contextmanager
def processes(
    options: Options, directory: Path
) -> Iterator[tuple[Process, list[Process], dict[str, str]]]:
    """The connector, the bots in the order they take turns, and each project bot's database
    URL; all stopped (and the databases dropped) at the end."""
    from benchmarks.fanout import temporary_databases

    with ExitStack() as stack:
        databases = stack.enter_context(temporary_databases(options.postgres))
        started: list[Process] = []

        def stop_all() -> None:
            for process in started:
                process.stop()

        stack.callback(stop_all)
        connector = start_role("connector", directory / "connector.log")
        started.append(connector)
        projects = {}
        if "project" in options.bots:
            for database, url in databases:
                name = f"project-{database.lower()}"
                projects[name] = start_project(name, url, directory)
                started.append(projects[name])
        bots = []
        # The brief's order: project on SQLite, stock, plain, project on PostgreSQL.
        if "project-sqlite" in projects:
            bots.append(projects["project-sqlite"])
        for role in ("stock", "plain"):
            if role in options.bots:
                bots.append(start_role(role, directory / f"{role}.log"))
                started.append(bots[-1])
        if "project-postgresql" in projects:
            bots.append(projects["project-postgresql"])
        urls = {f"project-{database.lower()}": url for database, url in databases}
        yield connector, bots, {name: urls[name] for name in projects}


async def count_ideas(url: str) -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from storage.db import create_engine
    from storage.models import Idea

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(Idea))).one()[0])
    finally:
        await engine.dispose()


async def benchmark(
    options: Options, connector: Process, bots: list[Process]
) -> tuple[list[Row], dict[str, int]]:
    """The rows of the table, and how many ideas each project bot was sent."""
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        await wait_listening(http, connector, "/_bench/count")
        for bot in bots:
            path = "/healthz" if bot.name.startswith("project") else "/api/messages"
            await wait_listening(http, bot, path)
        driver = Driver(http, connector, options.conversations)
        for bot in bots:
            # First contact with each conversation (the member lookup, state rows) and the
            # first imports and connections are not what is measured.
            warm_up = ECHO if not bot.name.startswith("project") else STATUS
            turns = options.conversations * WARM_UP_TURNS_PER_CONVERSATION
            await driver.run(bot, warm_up, turns, 8, 0.0)
        rows = []
        for latency in options.latency:
            for concurrency in options.concurrency:
                for bot in bots:
                    workloads = (
                        [STATUS, PROJECTS, SUBMIT] if bot.name.startswith("project") else [ECHO]
                    )
                    for workload in workloads:
                        row = await driver.run(bot, workload, options.turns, concurrency, latency)
                        print_row(row, flush=True)
                        rows.append(row)
        return rows, driver.submits


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3 if values else (float("nan"),) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


HEADER = (
    f"{'bot':<18} {'workload':<12} {'lat':>5} {'c':>3} {'turns':>5} {'turns/s':>8} "
    f"{'http p50/p95/p99 ms':>20} {'reply p50/p95/p99 ms':>21} {'cpu ms':>7} {'rss MB':>7} "
    f"{'lost':>4} {'wrong':>5} {'err':>4}"
)


def format_row(row: Row) -> str:
    http = "/".join(f"{v * 1000:.0f}" for v in percentiles(row.http))
    reply = "/".join(f"{v * 1000:.0f}" for v in percentiles(row.reply))
    return (
        f"{row.bot:<18} {row.workload:<12} {row.latency_ms:>3}ms {row.concurrency:>3} "
        f"{row.turns:>5} {row.rate:>8.1f} {http:>20} {reply:>21} {row.cpu_ms_per_turn:>7.2f} "
        f"{row.peak_rss_mb:>7.1f} {row.lost:>4} {row.wrong:>5} {row.errors:>4}"
    )


def print_row(row: Row, *, flush: bool = False) -> None:
    print(format_row(row), file=sys.stderr, flush=flush)
    for problem in row.problems:
        print(f"    {problem}", file=sys.stderr)


def find(rows: list[Row], bot: str, workload: str, concurrency: int, latency: int) -> Row | None:
    for row in rows:
        if (row.bot, row.workload, row.concurrency, row.latency_ms) == (
            bot,
            workload,
            concurrency,
            latency,
        ):
            return row
    return None


def print_report(rows: list[Row], ideas: dict[str, tuple[int, int]]) -> None:
    print(HEADER)
    for row in rows:
        print(format_row(row))
    print("\nproject ÷ stock echo, project ÷ plain aiohttp (turns/s):")
    for row in rows:
        if not row.bot.startswith("project"):
            continue
        stock = find(rows, "stock", "echo", row.concurrency, row.latency_ms)
        plain = find(rows, "plain", "echo", row.concurrency, row.latency_ms)
        ratios = [
            f"÷ {name} {row.rate / other.rate:5.2f}"
            for name, other in (("stock", stock), ("plain", plain))
            if other is not None
        ]
        print(
            f"  {row.bot:<18} {row.workload:<12} {row.latency_ms:>3}ms c={row.concurrency:<3} "
            + "  ".join(ratios)
        )
    print("\ngoals:")
    for line in goals(rows, ideas):
        print("  " + line)


def goals(rows: list[Row], ideas: dict[str, tuple[int, int]]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    sqlite = find(rows, "project-sqlite", "status alloy", 8, 0)
    stock = find(rows, "stock", "echo", 8, 0)
    if sqlite and stock:
        ratio = sqlite.rate / stock.rate
        lines.append(
            f"{verdict(ratio >= 3)} c=8, 0 ms, status alloy on SQLite ≥ 3× stock echo: "
            f"{sqlite.rate:.1f} vs {stock.rate:.1f} turns/s = {ratio:.2f}×"
        )
    if sqlite:
        p99 = percentiles(sqlite.reply)[2] * 1000
        lines.append(
            f"{verdict(p99 <= 100)} c=8, 0 ms, status alloy on SQLite, p99 reply ≤ 100 ms: "
            f"{p99:.0f} ms"
        )
    busy = [
        r
        for r in rows
        if r.bot.startswith("project") and (r.concurrency, r.latency_ms) == (64, 200)
    ]
    if busy:
        slowest = min(busy, key=lambda r: r.rate)
        lines.append(
            f"{verdict(slowest.rate >= 100)} c=64, 200 ms, project ≥ 100 turns/s: slowest "
            f"{slowest.rate:.1f} ({slowest.bot}, {slowest.workload})"
        )
    pairs = [
        (pg, lite)
        for pg in rows
        if pg.bot == "project-postgresql"
        and (lite := find(rows, "project-sqlite", pg.workload, pg.concurrency, pg.latency_ms))
    ]
    if pairs:
        pg, lite = min(pairs, key=lambda pair: pair[0].rate / pair[1].rate)
        ratio = pg.rate / lite.rate
        lines.append(
            f"{verdict(ratio >= 0.8)} PostgreSQL within 20 % of SQLite: worst {ratio:.2f} "
            f"({pg.workload}, c={pg.concurrency}, {pg.latency_ms} ms: "
            f"{pg.rate:.1f} vs {lite.rate:.1f} turns/s)"
        )
    lost = sum(r.lost for r in rows)
    bad = sum(r.wrong + r.errors for r in rows)
    lines.append(f"{verdict(lost == 0)} 0 replies lost: {lost}")
    lines.append(f"{verdict(bad == 0)} every reply correct, no HTTP errors: {bad} not")
    projects = [r for r in rows if r.bot.startswith("project")]
    if projects:
        peak = max(r.peak_rss_mb for r in projects)
        lines.append(f"{verdict(peak <= 150)} project peak RSS ≤ 150 MB: {peak:.1f} MB")
    for bot, (stored, sent) in ideas.items():
        lines.append(f"{verdict(stored == sent)} {bot}: ideas stored {stored} of {sent} submitted")
    return lines


def parse(argv: list[str] | None) -> Options | tuple[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated")
    parser.add_argument("--latency", default="0,200", help="connector latencies in ms")
    parser.add_argument("--postgres", metavar="URL", help="also run on a temporary database there")
    parser.add_argument("--bots", default="project,stock,plain")
    # The benchmark starts itself again as the connector and the echo bots.
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        return args.role, args.port
    bots = [b.strip() for b in args.bots.split(",") if b.strip()]
    unknown = set(bots) - {"project", "stock", "plain"}
    if unknown:
        parser.error(f"unknown bots: {', '.join(sorted(unknown))}")
    return Options(
        turns=args.turns,
        conversations=args.conversations,
        concurrency=[int(c) for c in args.concurrency.split(",")],
        latency=[int(ms) / 1000 for ms in args.latency.split(",")],
        postgres=args.postgres,
        bots=bots,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    if isinstance(options, tuple):
        role, port = options
        ROLES[role](port)
        return
    print(HEADER, file=sys.stderr)
    with tempfile.TemporaryDirectory() as directory:
        with processes(options, Path(directory)) as (connector, bots, databases):
            began = time.monotonic()
            rows, submitted = asyncio.run(benchmark(options, connector, bots))
            elapsed = time.monotonic() - began
            ideas = {
                name: (asyncio.run(count_ideas(url)), submitted.get(name, 0))
                for name, url in databases.items()
            }
    print_report(rows, ideas)
    print(f"\n({elapsed:.0f} s of turns)")


if __name__ == "__main__":
    main()
