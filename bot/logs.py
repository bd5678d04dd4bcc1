"""How the bot logs: plain text for a terminal or one JSON object a line for a log service,
every line of a request stamped with that request's id.

What a log line may hold: at INFO and above, no personal data (names, emails, what people
typed). Exception messages are kept, except those of the database layer (SQLAlchemy and the
drivers), which quote the statement's parameters and the rows a constraint refused: of those
only the type, the SQL (placeholders, never values) and the error's code are written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from botbuilder.schema import Activity
from sqlalchemy.exc import StatementError

REQUEST_ID_HEADER = "X-Request-Id"
# The id of the HTTP request being handled; tasks started while handling it inherit it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# The command the handler understood in this request's turn, for its turn line.
_turn_command: ContextVar[str | None] = ContextVar("turn_command", default=None)

# An id a proxy or a caller sends is reused only when it cannot disturb a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A card button's action and an invoke's name are the bot's own identifiers; anything else
# (a forged value) is not written.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_./-]{1,64}")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"

# Libraries that log what goes over the wire below WARNING: msrest's HTTP logger writes
# whole request and response bodies (the bot's messages name people) at DEBUG; msal writes
# token-cache events at DEBUG; aiosqlite writes every statement at DEBUG.
QUIET_LOGGERS: dict[str, int] = {
    "msrest.http_logger": logging.WARNING,
    "msal": logging.INFO,
    "aiosqlite": logging.INFO,
}

_DATABASE_PACKAGES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "psycopg", "psycopg2")
# Attributes every LogRecord has; any other attribute came from a call's `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}

logger = logging.getLogger("bot.turns")


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """Send every logger's records at `level` and above to standard error in `fmt`.

    Calling it again replaces the handler it installed and leaves any other handler alone
    (a test framework's, for one)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h.formatter, _OurFormatter)]:
        root.removeHandler(handler)
    root.addHandler(log_handler(sys.stderr, fmt))
    root.setLevel(level.upper())
    # Python's warnings would otherwise be written as bare text between the JSON lines.
    logging.captureWarnings(True)
    for name, quietest in QUIET_LOGGERS.items():
        # A logger's own level decides what it passes on (the root's does not filter what
        # propagates to it), so a quiet one is never made chattier than the root.
        logging.getLogger(name).setLevel(max(quietest, root.level))


def log_handler(stream: Any, fmt: Literal["text", "json"]) -> logging.Handler:
    """A handler writing to `stream` in `fmt`, each record stamped with its request id."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


class RequestIdFilter(logging.Filter):
    """Stamps `record.request_id` with the current request's id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _OurFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return exception_text(ei[1]) if ei[1] is not None else ""


class TextFormatter(_OurFormatter):
    """The human format, with ` [request id]` after the message when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # Another handler may have cached an unredacted traceback on the record.
        record.exc_text = None
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        tag = getattr(record, "request_id", None)
        return f"{text} [{tag}]" if tag else text


class JsonFormatter(_OurFormatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id when there is
    one, the exception when there is one, and the JSON-serialisable `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        tag = getattr(record, "request_id", None)
        if tag:
            entry["request_id"] = tag
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception_type"] = _type_name(record.exc_info[1])
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key in entry:
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            entry[key] = value
        # ASCII only: a raw U+2028 or U+0085 would split the line for some readers.
        return json.dumps(entry)


def exception_text(error: BaseException) -> str:
    """The traceback of `error` and of the exceptions it was raised from, as Python prints
    it, but with database errors' messages replaced by what is safe to write."""
    chain: list[BaseException] = []  # the newest first
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts: list[str] = []
    for exception in reversed(chain):
        if parts:
            parts.append(_CAUSE if exception.__cause__ is not None else _CONTEXT)
        parts.append(_one_exception(exception))
    return "".join(parts).rstrip("\n")


def _one_exception(error: BaseException) -> str:
    text = ""
    if error.__traceback__ is not None:
        text = "Traceback (most recent call last):\n" + "".join(
            traceback.format_tb(error.__traceback__)
        )
    if _is_database_error(error):
        return text + f"{_type_name(error)}: {_database_error_summary(error)}\n"
    text += "".join(traceback.format_exception_only(type(error), error))
    if isinstance(error, BaseExceptionGroup):
        for number, member in enumerate(error.exceptions, 1):
            inner = exception_text(member).replace("\n", "\n    ")
            text += f"  +-- {number} --\n    {inner}\n"
    return text


def _is_database_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in _DATABASE_PACKAGES


def _database_error_summary(error: BaseException) -> str:
    """What a database error may say in a log: its code and the statement, not its message
    (which quotes parameters and, for a constraint, the refused row's values)."""
    original = error.orig if isinstance(error, StatementError) else None
    details = [f"from {_type_name(original)}"] if original is not None else []
    for name in ("sqlstate", "constraint_name", "sqlite_errorname"):
        value = getattr(error, name, None) or getattr(original, name, None)
        if isinstance(value, str) and value:
            details.append(f"{name}={value}")
    if isinstance(error, StatementError) and error.statement:
        details.append(f"SQL: {' '.join(error.statement.split())}")
    return "(message withheld: it may quote stored values) " + "; ".join(details)


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


# --- requests ---------------------------------------------------------------------------


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> StreamResponse:
    """Give each request an id (the caller's X-Request-Id when it is a sane token), set it
    for everything logged while handling it, and answer it in X-Request-Id."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    this_request = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    # Not reset on the way out: aiohttp handles each request in a task of its own, so the
    # value ends with the request, and aiohttp's own lines about it (the access log, an
    # unhandled error), written after this returns, carry it too.
    request_id.set(this_request)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers[REQUEST_ID_HEADER] = this_request
        raise
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = this_request
    return response


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log without the query string or the caller's address, with the
    method, path, status and duration as fields of their own."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        duration_ms = round(time * 1000)
        self.logger.info(
            "%s %s %d %d ms",
            request.method,
            request.path,
            response.status,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": duration_ms,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class TurnLog:
    """One INFO line per POST /api/messages: the activity's type, the command it asked for
    (never its text), the HTTP status and how long it took."""

    def __init__(self) -> None:
        self.started = perf_counter()
        self.activity: Activity | None = None
        # Requests on one kept-alive connection share a context: start each one afresh.
        _turn_command.set(None)

    def done(self, status: int) -> None:
        duration_ms = round((perf_counter() - self.started) * 1000)
        activity_type = identifier(self.activity.type) if self.activity else None
        command = command_name(self.activity) if self.activity else None
        logger.info(
            "%s%s answered %d in %d ms",
            f"{activity_type} activity" if activity_type else "Request with no activity",
            f" ({command})" if command else "",
            status,
            duration_ms,
            extra={
                "activity_type": activity_type,
                "command": command,
                "status": status,
                "duration_ms": duration_ms,
            },
        )


def note_command(name: str) -> None:
    """Called by the handler with the canonical command it parsed from a message ("unknown"
    for anything else typed): the turn line names it, never the text."""
    _turn_command.set(name)


def command_name(activity: Activity) -> str | None:
    """What a turn asked for, fit for a log: a card button's action, an invoke's name, or the
    command the handler noted."""
    if activity.type == "invoke":
        return identifier(activity.name)
    if activity.type != "message":
        return None
    value = activity.value if isinstance(activity.value, dict) else {}
    if isinstance(value.get("action"), str):
        return f"card {identifier(value['action'])}"
    return _turn_command.get()


def identifier(value: Any) -> str:
    """`value` if it looks like one of the bot's own identifiers (a card action, an invoke's
    name), else "other": a forged one may hold anything a person typed."""
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else "other"
