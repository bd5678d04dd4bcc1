"""No personal data in the logs, checked over the whole test run.

Every personal value the tests send to the bot is noted where the Teams side is built
(tests/support/teams.py: each TeamsUser, each activity; tests/support/people.py: roster
people added directly). Every log record at INFO and above, from any logger, is kept as the
bot's formatters would write it (the message, the exception as bot.logs redacts it, the
`extra=` fields). When the run ends, the records are searched for the values, and the run
fails with a list of the leaks: the kind of value, its first letters and length (never the
value itself), the logger, the test that was running, and the line with the value blanked.

Which values count as personal (THE RULE):
- a TeamsUser's display name (whole) and email address;
- what people type: a message's text with the @mention removed, unless it is a command
  (bot.commands): of a command only the free text after `idea` (it starts the title), as the
  other commands' words and arguments (project names, filters) are the bot's vocabulary;
  compose-box search text likewise;
- what people write in forms: the values of the free-text inputs (FREE_TEXT_INPUTS: idea
  title, problem, suggestion, other benefit; session team, themes, changes, what went well or
  should change; project update text; a status change's reason or duplicate reference),
  whole and line by line and comma by comma (themes come comma-separated, changes one a line).
Values too generic to identify anyone are left out: shorter than MIN_LENGTH (6) characters or
with fewer than 3 letters once trimmed ("yes", "1,3", dates, times), one plain word of under
12 letters ("created": a display name or email is never one such word), and anything that is, or
is part of, the programme's published data (storage/data/programme.yaml: projects, aliases,
workstreams, updates, principles), a service area, a command phrase or the name of a setting:
those are public.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

MIN_LENGTH = 6
MIN_LETTERS = 3
FREE_TEXT_INPUTS = frozenset(
    {
        "title",
        "problem",
        "suggestion",
        "benefit_other",
        "team",
        "themes",
        "changes",
        "went_well",
        "to_change",
        "text",
        "reason",
        "duplicate_of",
    }
)
# Commands whose argument is free text a person wrote (the rest take public names).
FREE_TEXT_COMMANDS = frozenset({"idea"})
SHOWN_LETTERS = 2
MAX_REPORTED = 40

_MENTION = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"\w+")
_PARTS = re.compile(r"[\n,;]")
# One plain word ("created", "Scanning"): any log line may hold it, and alone it names nobody.
_COMMON_WORD = re.compile(r"[A-Za-z]{1,11}")


class PersonalValues:
    """The personal values noted so far: value -> its kind ("name", "email", "typed",
    "form:<input>"). Noted from the tests' event loops and threads alike."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._lock = threading.Lock()

    def note(self, value: object, kind: str) -> None:
        """Note `value` as personal, if the rule counts it (see the module's docstring)."""
        if not isinstance(value, str):
            return
        candidates = {value.strip()}
        if kind.startswith("form:"):
            candidates |= {part.strip() for part in _PARTS.split(value)}
        for candidate in candidates:
            if _counts(candidate):
                with self._lock:
                    self.values.setdefault(candidate, kind)

    def note_user(self, name: str, email: str) -> None:
        self.note(name, "name")
        self.note(email, "email")

    def note_activity(self, activity: Mapping[str, Any]) -> None:
        """The personal values in an activity the tests send (see the rule)."""
        from bot.commands import parse

        text = activity.get("text")
        if isinstance(text, str):
            typed = _MENTION.sub(" ", text).strip()
            command = parse(typed)
            if command.name == "unknown":
                self.note(typed, "typed")
            elif command.name in FREE_TEXT_COMMANDS:
                self.note(command.argument, "typed")
        value = activity.get("value")
        if isinstance(value, dict):
            self._note_inputs(value)
            action = value.get("action")
            if isinstance(action, dict) and isinstance(action.get("data"), dict):
                self._note_inputs(action["data"])  # an Action.Execute's data
            for parameter in value.get("parameters") or []:
                if isinstance(parameter, dict) and parameter.get("name") != "initialRun":
                    self.note(parameter.get("value"), "typed")  # compose-box search

    def _note_inputs(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if key in FREE_TEXT_INPUTS:
                self.note(value, f"form:{key}")

    def copy(self) -> dict[str, str]:
        """The values that count, without the public ones (which are only ruled out here:
        what they are checked against imports the bot, and noting must stay light, as the
        benchmark's echo bots import tests.support.teams)."""
        with self._lock:
            noted = dict(self.values)
        public = _public_text()
        return {value: kind for value, kind in noted.items() if value.casefold() not in public}


# Everything the run's tests sent.
VALUES = PersonalValues()
note_user = VALUES.note_user
note_activity = VALUES.note_activity


def _counts(value: str) -> bool:
    """Whether a value may count (the public ones are ruled out by PersonalValues.copy)."""
    if len(value) < MIN_LENGTH or len(_LETTER.findall(value)) < MIN_LETTERS:
        return False
    return not _COMMON_WORD.fullmatch(value)


@functools.cache
def _public_text() -> str:
    """The programme's published data, service areas and command phrases, as one text."""
    from bot.commands import COMMANDS
    from storage.ideas import SERVICE_AREAS
    from tests.support.served import setting_variables

    programme = Path(__file__).resolve().parents[2] / "storage" / "data" / "programme.yaml"
    import yaml

    strings = list(strings_in(yaml.safe_load(programme.read_text(encoding="utf-8"))))
    strings += [*SERVICE_AREAS, *(phrase for phrases in COMMANDS.values() for phrase in phrases)]
    # The environment variables the bot reads, which its logs name: Hypothesis draws text
    # from the project's own string constants, so a fuzzed form may hold one.
    strings += setting_variables()
    return "\n".join(strings).casefold()


def strings_in(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML or JSON document, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


# --- capturing the logs --------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """Where a distinct log text was first seen."""

    logger: str
    level: str
    test: str


class LogCapture(logging.Handler):
    """Keeps each distinct text the bot's formatters would write for a record at INFO and
    above (the same text twice is kept once: the run writes the same lines many times)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.written: dict[str, Written] = {}
        self.test = "(between tests)"
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _as_written(record)
        except Exception as error:  # a record that cannot be formatted is itself kept
            line = f"(unformattable record: {type(error).__name__}) {record.msg!r}"
        self.keep(line, record.name, record.levelname)

    def keep(self, line: str, logger: str, level: str) -> None:
        """A text written at INFO or above: by this process, or read from the log of a bot
        process a test started (tests/support/served.py)."""
        self.records += 1
        if line not in self.written:
            self.written[line] = Written(logger, level, self.test)


_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


def _as_written(record: logging.LogRecord) -> str:
    from bot.logs import exception_text

    parts = [record.getMessage()]
    if record.exc_info and record.exc_info[1] is not None:
        # As bot.logs' formatters write it: database errors' messages withheld.
        parts.append(exception_text(record.exc_info[1]))
    if record.stack_info:
        parts.append(record.stack_info)
    parts += [
        f"{key}={value}"
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRIBUTES and isinstance(value, str)
    ]
    return "\n".join(parts)


# --- the scan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    kind: str
    value: str
    line: str
    where: Written

    def describe(self) -> str:
        shown = f"{self.value[:SHOWN_LETTERS]}… ({len(self.value)} characters)"
        blanked = re.sub(re.escape(self.value), f"<{self.kind}>", self.line, flags=re.I)
        excerpt = " ".join(blanked.split())[:200]
        return (
            f"{self.kind} {shown}: {self.where.level} {self.where.logger} "
            f"during {self.where.test}: {excerpt!r}"
        )


def find_leaks(written: Iterable[str], values: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(kind, value, line) for each value found in a line, case-insensitively.

    Fast enough for the whole run: a value of three or more words can only be in a line if
    its inner words are whole words of the logs, so most values are ruled out by a set
    lookup; the rest are searched for in the logs' text."""
    lines = list(written)
    text = "\n".join(lines).casefold()
    words = set(_WORD.findall(text))
    found = []
    for value, kind in values.items():
        wanted = value.casefold()
        inner = _WORD.findall(wanted)[1:-1]
        if any(word not in words for word in inner) or wanted not in text:
            continue
        found += [(kind, value, line) for line in lines if wanted in line.casefold()]
    return found


class LogScan:
    """The pytest plugin: capture from the start of the run, scan at its end."""

    def __init__(self, values: PersonalValues = VALUES) -> None:
        self.values = values
        self.capture = LogCapture()
        self.leaks: list[Leak] = []
        self.scanned = 0
        self.seconds = 0.0
        self._root_level = logging.WARNING

    def pytest_configure(self) -> None:
        root = logging.getLogger()
        self._root_level = root.level
        # INFO and above is what production writes (LOG_LEVEL=INFO): records below the
        # root's level are never made, so the root is opened to INFO for the whole run.
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        root.addHandler(self.capture)

    def pytest_unconfigure(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.capture)
        root.setLevel(self._root_level)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.capture.test = nodeid

    def pytest_runtest_logfinish(self) -> None:
        self.capture.test = "(between tests)"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        import pytest

        started = time.perf_counter()
        values = self.values.copy()
        self.leaks = [
            Leak(kind, value, line, self.capture.written[line])
            for kind, value, line in find_leaks(self.capture.written, values)
        ]
        self.scanned = len(values)
        self.seconds = time.perf_counter() - started
        if self.leaks and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        capture = self.capture
        if not self.leaks:
            if self.scanned:
                terminalreporter.write_line(
                    f"personal data in logs: none ({self.scanned} personal values, "
                    f"{capture.records} records at INFO+, {len(capture.written)} distinct; "
                    f"scanned in {self.seconds:.2f} s)"
                )
            return
        terminalreporter.section("personal data in the logs", red=True)
        described = sorted({leak.describe() for leak in self.leaks})
        for line in described[:MAX_REPORTED]:
            terminalreporter.write_line(line)
        if len(described) > MAX_REPORTED:
            terminalreporter.write_line(f"... and {len(described) - MAX_REPORTED} more")
        terminalreporter.write_line(
            f"{len(described)} leak(s) of personal values into log records at INFO and above "
            "(tests/support/log_scan.py)"
        )
