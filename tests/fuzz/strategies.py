"""Hypothesis strategies for what Teams, or anyone who finds the endpoint, may POST to
/api/messages: raw bodies that are not activities, activities with fields missing, added or
of the wrong type, hostile text in commands and card forms, card submits with ids that do
not exist, and invokes with junk values.

A strategy describes an input, not the bytes: the runner (tests/fuzz/conftest.py) builds the
activity from the lane's conversation when it posts it, so conversation ids and the fake
connector's address are real and examples stay readable when Hypothesis prints them.
"""

from __future__ import annotations

import json
import random
import re
import reprlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from hypothesis import strategies as st

from storage.ideas import SERVICE_AREAS, STATUSES

# --- what an input is --------------------------------------------------------------------------

# Who sends an input, and where (tests/fuzz/conftest.py sets each lane up):
#   staff    a member of staff, 1:1 chat
#   officer  a programme officer (admin), 1:1 chat
#   maker    a Change Maker with a held session and its actions, 1:1 chat
#   leader   that Change Maker's Change Leader, 1:1 chat
#   channel  the officer in the triage channel (set up there), @mentioning the bot
#   group    a member of staff in a group chat
#   fresh    a new person in a new 1:1 chat, every time
LANES = ("staff", "officer", "maker", "leader", "channel", "group", "fresh")
PERSONAL_LANES = ("staff", "officer", "maker", "leader")

# A step of an activity's path: a key of an object, or an index into a list.
Path_ = tuple[str | int, ...]


# Examples are printed when one fails: long strings and deep junk are cut short there (the
# failure's own message quotes the activity that failed).
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel, _short.maxdict, _short.maxlist = (
    80,
    80,
    4,
    10,
    10,
)


class _ShortRepr:
    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_short.repr(value)}" for name, value in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints examples with its own pretty-printer, which asks for this.
        printer.text(repr(self))


@dataclass(frozen=True, repr=False)
class Mutation(_ShortRepr):
    """Change one field of the built activity: delete it, or set it to `value`."""

    path: Path_
    value: Any = None
    delete: bool = False


@dataclass(frozen=True, repr=False)
class Raw(_ShortRepr):
    """A body posted as it is, with this Content-Type (None: no header at all)."""

    body: bytes
    content_type: str | None = "application/json"
    lane: str = "fresh"


@dataclass(frozen=True, repr=False)
class Turn(_ShortRepr):
    """An activity of the lane's conversation, with `fields` merged in, then `mutations`.

    `expect` names a check of the reply (see conftest.Fuzzer.check_expectation):
    ("idea_title", title) an idea submitted with this exact title and valid fields is
    confirmed, showing the title verbatim; ("unknown", text) text that is no command is
    quoted back verbatim; ("idea_form_title", title) `idea <title>` fills the form's title.
    """

    lane: str
    fields: dict[str, Any] = field(default_factory=dict)
    mutations: tuple[Mutation, ...] = ()
    expect: tuple[str, str] | None = None


Input = Raw | Turn

# --- text aimed at something ---------------------------------------------------------------

SQL = (
    "'; DROP TABLE idea; --",
    "Robert'); DROP TABLE person;--",
    '" OR 1=1 --',
    "' OR '1'='1",
    "1; DELETE FROM mir_session",
    "%",
    "_%_",
    "\\",
    "\\'",
    "' UNION SELECT email FROM person --",
    "$1",
    ":name",
    "?",
)
JINJA = (
    "{{ 7*7 }}",
    "{{7*7}}",
    "{% raw %}",
    "{% endraw %}",
    "{# comment",
    "{{ config }}",
    "{% for x in range(9999999) %}x{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "{%",
    "}}",
    "{{",
    "{{ values }}",
    "{{ idea.title }}",
)
CARD_JSON = (
    '"}]',
    '"},{"type":"Action.OpenUrl","title":"x","url":"https://example.com"}],"x":"',
    "${name}",
    "${$root.title}",
    "${if(true, 'a', 'b')}",
    '{"$data": "${x}"}',
    "\\u0022",
    '\\"',
    "\"'`",
    "]}]}",
    '{"type":"AdaptiveCard"}',
)
MARKDOWN = (
    "**bold** _it_",
    "[link](javascript:alert(1))",
    "<at>Our Cambridge</at>",
    "<at>Someone Else</at> help",
    "<script>alert(1)</script>",
    "# header",
    "| a | b |\n|---|---|",
    "```code```",
    "&lt;b&gt;",
    "<b>bold</b>",
    "- item\n- item",
    "![img](http://example.com/x.png)",
)
UNICODE = (
    "",
    " ",
    "   \t\n  ",
    "\n\n",
    "\r\n",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[31m\x7f",
    "\u0085\u2028\u2029",
    "\u202e\u202dreversed",
    "مرحبا بالعالم",
    "שלום עולם",
    "\u200f\u200e\u061c",
    "\u200b\u200c\u200d\ufeff",
    "👩\u200d👩\u200d👧\u200d👦",
    "🇬🇧🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "Z\u0324\u0354\u0367\u0311\u0313",
    "İstanbul ß ﬁ",
    "\ud800",
    "a\udfffb",
    "\udbff\udfff",
    "\uffff\ufffe",
    "\U0010ffff",
    "ＦＵＬＬ　ＷＩＤＴＨ",
    "١٢٣",
    "²³",
    "e\u0301",
)
NUMBERS = (
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "8",
    "1e309",
    "NaN",
    "-0",
    "0x10",
    "99999999999999999999999999999",
    "١٢",
    "٣",
    "1.5",
    " 4 ",
    "+5",
    "²",
)
DATES = (
    "2026-02-30",
    "2026-02-29",
    "0000-01-01",
    "0001-01-01",
    "9999-12-31",
    "2026-13-01",
    "2026-1-1",
    "2026-11-29",
    "2026-11-28",
    "2026-12-01",
    "2027-06-15",
    "20261129",
    "yesterday",
    "２０２６-１１-２９",
    "٢٠٢٦-١١-٢٩",
    "2026-11-29T10:00:00Z",
    "2026-W48",
)
TIMES = ("24:00", "23:60", "9:5", "-1:00", "12:00:00", "10:00", "09:00", "١٢:٠٠", "25:61", "7")
HOSTILE = SQL + JINJA + CARD_JSON + MARKDOWN + UNICODE

# Text of every kind, drawn once from a fixed seed: picking from these pools costs Hypothesis
# one choice where generating text costs one per character, which is what lets a run post
# 10,000 inputs in its time budget. Hypothesis still generates text of its own (every
# category, surrogates included) for one text field in six.
_POOL_SEED = 2026
_BIDI_AND_INVISIBLE = (0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x061C, 0xFEFF, 0x2060)
_BIDI_AND_INVISIBLE += tuple(range(0x202A, 0x202F)) + tuple(range(0x2066, 0x206A))


def _random_text(rng: random.Random) -> str:
    characters = []
    for _ in range(rng.randint(1, 16)):
        roll = rng.random()
        if roll < 0.3:
            code = rng.randint(0x20, 0x7E)
        elif roll < 0.42:
            code = rng.choice((*range(0x00, 0x20), 0x7F, 0x85))  # control characters
        elif roll < 0.5:
            code = rng.randint(0xD800, 0xDFFF)  # a lone surrogate, sent as a \ud800 escape
        elif roll < 0.62:
            code = rng.choice(_BIDI_AND_INVISIBLE)
        elif roll < 0.72:
            code = rng.randint(0x0590, 0x06FF)  # Hebrew and Arabic
        elif roll < 0.88:
            code = rng.randint(0x80, 0xFFFD)
        else:
            code = rng.randint(0x10000, 0x10FFFF)
        characters.append(chr(code))
    return "".join(characters)


def _text_pool(rng: random.Random) -> tuple[str, ...]:
    pieces = HOSTILE + NUMBERS + DATES + TIMES
    texts = list(pieces)
    texts += [_random_text(rng) for _ in range(500)]
    texts += [
        "".join(rng.choice(pieces + ("Scan forms", " ", "\n")) for _ in range(rng.randint(2, 4)))
        for _ in range(500)
    ]
    texts += [f"{rng.choice(pieces)} {_random_text(rng)} {rng.choice(pieces)}" for _ in range(200)]
    # Huge ones, around the limits: a title is at most 120 characters, texts 2,000, reasons
    # 1,000; a bot message about 100 KB.
    for length in (120, 121, 1000, 2000, 2001, 5000, 40_000):
        for unit in ("x", "é", "字", "🙂", "{{", "'", "\\", " ", "\n", "\x00", "\u202e"):
            texts.append(unit * length)
    return tuple(texts)


TEXT_POOL = _text_pool(random.Random(_POOL_SEED))


def _junk_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 3 or roll < 0.55:
        return rng.choice(
            (
                None,
                True,
                False,
                0,
                -1,
                1,
                2**31,
                2**63,
                -(2**70),
                rng.randint(-1000, 1000),
                0.5,
                -0.0,
                1e308,
                rng.uniform(-1e6, 1e6),
                rng.choice(TEXT_POOL[:400]),
                rng.choice(TEXT_POOL[:400]),
                _random_text(rng),
            )
        )
    if roll < 0.78:
        return [_junk_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ("action", "id", "value", "type", "text", "data", "verb", _random_text(rng))
    return {rng.choice(keys): _junk_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


JUNK_POOL = tuple(_junk_value(random.Random(_POOL_SEED + 1)) for _ in range(600))

_hypothesis_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=24)
_pooled_text = st.sampled_from(TEXT_POOL)
# A hostile string: of the lists above, random characters of every kind, pieces of both
# joined, or a huge one.
nasty_text: st.SearchStrategy[str] = st.one_of(*([_pooled_text] * 5), _hypothesis_text)
# Printable text that would pass a form's checks if the field were the only one wrong.
fine_text = st.sampled_from(
    ("Scan forms at the counter", "Fewer phone queues", "One shared log", "Paperwork")
)
some_text = st.one_of(fine_text, nasty_text, nasty_text)
# Any JSON value, nested: what a crafted `value` may hold. (Copied before it is posted:
# the runner changes activities in place.)
json_junk: st.SearchStrategy[Any] = st.sampled_from(JUNK_POOL)

# An id a card carries: real ones (the fuzz database is small, so low numbers exist), ones
# that do not exist, and ones of the wrong type.
some_id = st.one_of(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=40).map(str),
    st.sampled_from(
        (
            -1,
            2**31,
            2**63,
            2**70,
            " 3 ",
            "IDEA-0001",
            "IDEA-0002",
            "idea 2",
            "#3",
            "IDEA-99999",
            "-1",
            "1.0",
            "1e3",
            "١",
            True,
            1.0,
            "",
        )
    ),
    json_junk,
)


def _project_slugs() -> tuple[str, ...]:
    data = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "storage/data/programme.yaml").read_text()
    )
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("slug"), str):
                found.add(node["slug"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(data)
    return tuple(sorted(found))


PROJECT_SLUGS = _project_slugs()
_MISSING = object()
BAD = st.one_of(nasty_text, json_junk, st.just(_MISSING))


def one_of_or_junk(*choices: Any) -> st.SearchStrategy[Any]:
    """A valid choice, or hostile text, or any JSON value."""
    valid = st.sampled_from(choices)
    return st.one_of(valid, valid, nasty_text, json_junk)


# A form's input: (what a person could send, what a crafted request could); a missing input
# is one of the second.
Field = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
MODES = ("valid", "one bad", "valid", "one bad", "any")


def submit_value(action: str, fields: dict[str, Field]) -> st.SearchStrategy[Any]:
    """A card's Action.Submit `value`: its action and inputs. Mostly as a person could send
    them, all valid or with one bad input, so most submits get past the checks into storage;
    otherwise each input valid or not at random; sometimes with extra keys."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        mode = draw(st.sampled_from(MODES))
        bad_key = draw(st.sampled_from(sorted(fields))) if fields and mode == "one bad" else None
        value: dict[str, Any] = {"action": action}
        for key, (valid, bad) in fields.items():
            wrong = key == bad_key or (mode == "any" and draw(st.booleans()))
            item = draw(bad if wrong else valid)
            if item is not _MISSING:
                value[key] = item
        if draw(st.sampled_from((False,) * 5 + (True,))):
            value[draw(nasty_text)] = draw(json_junk)
        return value

    return build()


def _text_field(valid: st.SearchStrategy[str] = some_text) -> Field:
    return valid, BAD


def _choice_field(valid: tuple[Any, ...], invalid: tuple[Any, ...] = ()) -> Field:
    bad = st.one_of(st.sampled_from(invalid), BAD) if invalid else BAD
    return st.sampled_from(valid), bad


def _days_from_today(*days: int) -> tuple[str, ...]:
    return tuple((TODAY + timedelta(days=day)).isoformat() for day in days)


TODAY = datetime.now(ZoneInfo("Europe/London")).date()
FORM_ID: Field = (st.uuids().map(lambda u: u.hex), BAD)
OPTIONAL_ID: Field = (st.just(_MISSING), some_id)

# --- card submits, from the real cards' actions and input ids ---------------------------

IDEA_FIELDS: dict[str, Field] = {
    "form": FORM_ID,
    "title": _text_field(),
    "problem": _text_field(),
    "suggestion": _text_field(),
    "service_area": _choice_field(SERVICE_AREAS, ("Nowhere", "customer services")),
    "principles": _choice_field(("1", "1,3", "7", "2,4,6"), ("0", "8", "1,,2", "x", "1.0")),
    "benefits": _choice_field(
        ("time_saved", "money_saved,better_for_residents", "time_saved,other"),
        ("other,other", ",", "time saved", "OTHER"),
    ),
    "benefit_other": _text_field(),
    "anonymous": _choice_field(("true", "false", True, False), ("TRUE", "yes", "1")),
    "confirmed": (st.sampled_from((True, False, _MISSING)), BAD),
    "mir_action": OPTIONAL_ID,
}
SCHEDULE_FIELDS: dict[str, Field] = {
    "form": FORM_ID,
    "session": OPTIONAL_ID,
    "date": _choice_field(_days_from_today(0, 1, 7, 30, 400), _days_from_today(-1) + DATES),
    "time": _choice_field(("10:00", "09:30", "23:59", "0:00"), TIMES),
    "team": _text_field(),
    "expected": _choice_field(("1", "8", "30"), NUMBERS),
}
LOG_FIELDS: dict[str, Field] = {
    "form": FORM_ID,
    "scheduled": (st.one_of(st.just(""), some_id), BAD),
    "date": _choice_field(_days_from_today(0, -1, -30, -800), _days_from_today(1) + DATES),
    "team": _text_field(),
    "attendees": _choice_field(("1", "6", "12"), NUMBERS),
    "themes": _text_field(),
    "changes": _text_field(st.one_of(some_text, st.lists(some_text, max_size=25).map("\n".join))),
    "went_well": _text_field(),
    "to_change": _text_field(),
    "rating": _choice_field(("1", "3", "5"), ("0", "6", "4.5", 4)),
}
UPDATE_FIELDS: dict[str, Field] = {
    "form": FORM_ID,
    "project": _choice_field(PROJECT_SLUGS, ("no-such-project", "alloy ")),
    "text": _text_field(),
    "rag": _choice_field(("red", "amber", "green", "RED"), ("blue", "")),
    "month": _choice_field(
        (TODAY.strftime("%Y-%m"), (TODAY.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")),
        ("2027-01", "2026-13", "0000-01", "1999-01", "2026-1-1"),
    ),
}
DIGEST_FIELDS: dict[str, Field] = {
    "day": _choice_field(("Monday", "mon", "0", "6", "SUNDAY"), ("7", "Funday", "-1")),
    "time": _choice_field(("09:00", "23:59", "7:05"), TIMES),
}


@st.composite
def _action_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A follow-up action's buttons: its id, and inputs named after an id (reason_<id>,
    due_<id>, owner_<id>), for the id pressed or another."""
    action_id = draw(some_id)
    value: dict[str, Any] = {}
    if draw(st.sampled_from((True, True, True, False))):
        value["id"] = action_id
    named = action_id if isinstance(action_id, int) else draw(st.integers(0, 40))
    for prefix, strategy in (
        ("reason_", st.one_of(some_text, json_junk)),
        ("due_", one_of_or_junk(*_days_from_today(0, 3, -3, 90))),
        ("owner_", st.one_of(some_text, json_junk)),
    ):
        if draw(st.booleans()):
            value[f"{prefix}{named}"] = draw(strategy)
    return value


def _with(action: str, extra: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return extra.map(lambda fields: {"action": action} | fields)


def _id_field() -> Field:
    return some_id, BAD


SUBMITS: st.SearchStrategy[Any] = st.one_of(
    submit_value("idea_submit", IDEA_FIELDS),
    submit_value("idea_submit", IDEA_FIELDS),
    submit_value("idea_cancel", {}),
    submit_value("idea_support", {"idea": _id_field()}),
    submit_value("idea_from_action", {"id": _id_field()}),
    submit_value("mir_schedule_submit", SCHEDULE_FIELDS),
    submit_value("mir_log_submit", LOG_FIELDS),
    submit_value("mir_log_submit", LOG_FIELDS),
    submit_value("mir_form_cancel", {}),
    submit_value("mir_log", {"session": _id_field()}),
    submit_value("mir_reschedule", {"session": _id_field()}),
    submit_value("mir_cancel_session", {"session": _id_field()}),
    submit_value("mir_nudge", {"person": _id_field()}),
    submit_value("mir_action_details", {"session": _id_field()}).flatmap(
        lambda value: _action_fields().map(lambda extra: value | extra)
    ),
    _with("mir_action_status", _action_fields()).flatmap(
        lambda value: one_of_or_junk("in_progress", "done", "dropped").map(
            lambda status: value | {"status": status}
        )
    ),
    _with("mir_action_due", _action_fields()),
    submit_value("post_update", {"project": _choice_field(PROJECT_SLUGS)}),
    submit_value("post_update_submit", UPDATE_FIELDS),
    submit_value("post_update_submit", UPDATE_FIELDS),
    submit_value("post_update_cancel", {}),
    submit_value("digest_settings_save", DIGEST_FIELDS),
    submit_value("digest_unsubscribe", {}),
    # A chat command sent by a button, and actions no card has.
    st.builds(lambda command: {"command": command}, one_of_or_junk("help", "my ideas", "idea")),
    st.builds(lambda action: {"action": action}, one_of_or_junk("no_such_action", "")),
    json_junk,
)

# --- typed commands -------------------------------------------------------------------------

COMMAND_WORDS = (
    "help",
    "status",
    "status of",
    "projects",
    "programme",
    "post update",
    "schedule session",
    "log session",
    "my sessions",
    "my actions",
    "my change makers",
    "mir stats",
    "stop reminders",
    "start reminders",
    "idea",
    "my ideas",
    "ideas",
    "ideas new",
    "ideas principle",
    "ideas most supported",
    "set triage channel",
    "subscribe",
    "unsubscribe",
    "digest settings",
    "digest preview",
    "cancel",
)
# Not `install app`: it would start Microsoft Graph work the fuzz has no fake for (and the
# bot has no Graph configured here, so it answers with one fixed sentence anyway).

typed_text = st.one_of(
    st.builds(
        lambda command, argument: f"{command} {argument}",
        st.sampled_from(COMMAND_WORDS),
        st.one_of(nasty_text, st.sampled_from(PROJECT_SLUGS), st.sampled_from(NUMBERS)),
    ),
    st.sampled_from(COMMAND_WORDS),
    nasty_text,
)

# --- invokes --------------------------------------------------------------------------------

execute_action = st.fixed_dictionaries(
    {
        "type": st.one_of(st.just("Action.Execute"), json_junk),
        "verb": one_of_or_junk("idea_status", "idea_refresh", "no_such_verb"),
        "data": st.one_of(
            st.fixed_dictionaries(
                {"idea": some_id, "status": one_of_or_junk(*STATUSES)},
                optional={
                    "reason": st.one_of(fine_text, nasty_text, json_junk),
                    "duplicate_of": one_of_or_junk("IDEA-0001", "IDEA-0002", "3", "IDEA-9999"),
                },
            ),
            json_junk,
        ),
    }
)
INVOKES: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(
        st.just("adaptiveCard/action"),
        st.one_of(
            st.fixed_dictionaries({"action": execute_action, "trigger": json_junk}),
            st.fixed_dictionaries({"action": json_junk}),
            json_junk,
        ),
    ),
    st.tuples(
        st.just("composeExtension/query"),
        st.one_of(
            st.fixed_dictionaries(
                {
                    "commandId": one_of_or_junk("searchProjects"),
                    "parameters": st.one_of(
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "name": one_of_or_junk("searchText", "initialRun"),
                                    "value": st.one_of(nasty_text, json_junk),
                                }
                            ),
                            max_size=3,
                        ),
                        json_junk,
                    ),
                },
                optional={"queryOptions": json_junk},
            ),
            json_junk,
        ),
    ),
    st.tuples(
        one_of_or_junk(
            "composeExtension/fetchTask",
            "composeExtension/submitAction",
            "task/fetch",
            "task/submit",
            "signin/verifyState",
            "fileConsent/invoke",
            "actionableMessage/executeAction",
            "application/search",
            "healthCheck",
        ),
        json_junk,
    ),
)

# --- activities of other types --------------------------------------------------------------

member = st.one_of(
    st.fixed_dictionaries({"id": one_of_or_junk("28:ourcambridge-bot", "29:someone")}),
    json_junk,
)
OTHER_ACTIVITIES: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("conversationUpdate"),
            "membersAdded": st.one_of(st.lists(member, max_size=2), json_junk),
        },
        optional={"membersRemoved": st.lists(member, max_size=2)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("installationUpdate"),
            # Not "remove" in the lanes' own chats: the bot would forget them for good.
            "action": one_of_or_junk("add", "add-upgrade", "remove-upgrade"),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ("messageReaction", "event", "typing", "endOfConversation", "messageUpdate")
            ),
            "value": json_junk,
            "name": st.one_of(st.none(), nasty_text),
        },
        optional={"reactionsAdded": st.lists(json_junk, max_size=2)},
    ),
    st.fixed_dictionaries({"type": st.one_of(nasty_text, st.sampled_from(("delete",)))}),
)

# --- mutations of an activity's fields ------------------------------------------------------

TOP_FIELDS = (
    "id",
    "timestamp",
    "channelId",
    "serviceUrl",
    "from",
    "recipient",
    "conversation",
    "channelData",
    "locale",
    "text",
    "value",
    "entities",
    "attachments",
    "replyToId",
    "name",
    "textFormat",
    "localTimestamp",
)
NESTED_PATHS: tuple[Path_, ...] = (
    ("from", "id"),
    ("from", "name"),
    ("from", "aadObjectId"),
    ("recipient", "id"),
    ("conversation", "id"),
    ("conversation", "conversationType"),
    ("conversation", "tenantId"),
    ("conversation", "isGroup"),
    ("channelData", "tenant"),
    ("channelData", "tenant", "id"),
    ("channelData", "team"),
    ("channelData", "team", "id"),
    ("channelData", "channel"),
    ("channelData", "channel", "id"),
    ("entities", 0),
    ("entities", 0, "mentioned"),
    ("entities", 0, "mentioned", "id"),
    ("entities", 0, "text"),
)
# A field's value replaced: wrong types, hostile text, long strings, nested junk.
mutation = st.one_of(
    st.builds(
        Mutation, path=st.sampled_from(TOP_FIELDS).map(lambda key: (key,)), delete=st.just(True)
    ),
    st.builds(Mutation, path=st.sampled_from(TOP_FIELDS).map(lambda key: (key,)), value=json_junk),
    st.builds(Mutation, path=st.sampled_from(NESTED_PATHS), delete=st.just(True)),
    st.builds(Mutation, path=st.sampled_from(NESTED_PATHS), value=st.one_of(json_junk, nasty_text)),
    # An extra field, at the top or inside an object.
    st.builds(
        Mutation,
        path=st.tuples(
            st.sampled_from(((), ("from",), ("conversation",), ("channelData",))), nasty_text
        ).map(lambda parts: (*parts[0], "x-" + parts[1])),
        value=json_junk,
    ),
)

# --- raw bodies -----------------------------------------------------------------------------

CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; charset=no-such-charset",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/problem+json",
    "",
)


def _deep(depth: int, opener: str, closer: str) -> bytes:
    return (opener * depth + closer * depth).encode()


raw_body = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        (
            b"",
            b"null",
            b"[]",
            b"{}",
            b'"activity"',
            b"42",
            b"NaN",
            b'{"type": NaN}',
            b'{"type": Infinity}',
            b'{"type": "message"',
            b'{"type": 1}',
            b'{"type": ""}',
            b'{"type": "message"}',
            b'{"type": "message", "serviceUrl": "http://127.0.0.1:9/"}',
            b'{"type": "message", "type": "invoke"}',
            b"\xff\xfe{\x00}\x00",
            b"\xef\xbb\xbf{}",
            b'{"type": "message", "text": "\\ud800"}',
            b'{"type": "\\u0000"}',
            b'{"type": "message", "id": ' + b"9" * 5000 + b"}",
            b'{"type": "message", "value": 1e999999}',
            b"[" + b"1," * 10000 + b"1]",
        )
    ),
    st.sampled_from((50, 2000, 100_000, 200_000)).flatmap(
        lambda depth: st.sampled_from((_deep(depth, "[", "]"), _deep(depth, '{"a":', "}")))
    ),
    json_junk.map(lambda value: json.dumps(value).encode()),
)
raw_inputs = st.builds(Raw, body=raw_body, content_type=st.sampled_from(CONTENT_TYPES))

# --- everything -----------------------------------------------------------------------------

lane = st.sampled_from(LANES)
mutations = st.lists(mutation, max_size=3).map(tuple)

message_turns = st.builds(
    lambda lane, text, muts: Turn(lane=lane, fields={"text": text}, mutations=muts),
    lane,
    typed_text,
    st.one_of(st.just(()), st.just(()), mutations),
)
submit_turns = st.builds(
    lambda lane, value, muts: Turn(lane=lane, fields={"value": value}, mutations=muts),
    lane,
    SUBMITS,
    st.one_of(st.just(()), st.just(()), st.just(()), mutations),
)
invoke_turns = st.builds(
    lambda lane, invoke, muts: Turn(
        lane=lane, fields={"type": "invoke", "name": invoke[0], "value": invoke[1]}, mutations=muts
    ),
    lane,
    INVOKES,
    st.one_of(st.just(()), st.just(()), mutations),
)
other_turns = st.builds(
    lambda lane, fields, muts: Turn(lane=lane, fields=fields, mutations=muts),
    lane,
    OTHER_ACTIVITIES,
    st.one_of(st.just(()), mutations),
)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def as_received(text: str) -> str:
    """Text as the bot takes it in (bot/app.py): NUL dropped, a lone surrogate (which no
    UTF-8 database or reply can carry) replaced by U+FFFD. Sent as JSON first: a high and a
    low surrogate drawn next to each other travel as two escapes that JSON reads as the one
    character they make together, which is not lone."""
    paired = json.loads(json.dumps(text))
    return _LONE_SURROGATE.sub("\ufffd", paired.replace("\x00", ""))


def _normalised(text: str) -> str:
    return " ".join(as_received(text).split())


def _valid_title(text: str) -> str:
    """The text if it makes a valid title (1 to 120 characters once spaces are collapsed),
    else a valid title made from it."""
    return text if 0 < len(_normalised(text)) <= 120 else "Idea " + _normalised(text)[:100]


def _valid_text(text: str) -> str:
    return text if 0 < len(as_received(text).strip()) <= 2000 else "Text: " + text[:1000]


# A valid idea form's submit. The runner gives each a form id of its own when it posts it (a
# reused one would answer with the earlier idea); "confirmed" skips the similar ideas.
IDEA_VALUE = {
    "action": "idea_submit",
    "title": "Scan post at the counter",
    "problem": "Residents queue.",
    "suggestion": "Scan it.",
    "service_area": "Customer Services",
    "principles": "1,3",
    "benefits": "time_saved,other",
    "benefit_other": "Fewer complaints",
    "anonymous": "false",
    "confirmed": True,
}

# Inputs with a verbatim check: hostile text in a valid idea, in an unknown command and as
# the start of an idea's title.
verbatim_idea = st.builds(
    lambda lane, title, problem, suggestion, anonymous: Turn(
        lane=lane,
        fields={
            "value": IDEA_VALUE
            | {
                "title": title,
                "problem": problem,
                "suggestion": suggestion,
                "benefit_other": title,
                "anonymous": anonymous,
            }
        },
        expect=("idea_title", _normalised(title)),
    ),
    st.sampled_from(PERSONAL_LANES),
    nasty_text.map(_valid_title),
    nasty_text.map(_valid_text),
    nasty_text.map(_valid_text),
    st.sampled_from(("true", "false")),
)
verbatim_unknown = nasty_text.map(
    lambda text: Turn(
        lane="fresh", fields={"text": "fuzz: " + text}, expect=("unknown", "fuzz: " + text)
    )
)
verbatim_idea_form = nasty_text.map(
    lambda text: Turn(
        lane="fresh", fields={"text": "idea " + text}, expect=("idea_form_title", text)
    )
)

# How often each kind of input comes: card submits most (the forms are where most of the
# bot's rules are), then typed commands, invokes and verbatim checks.
_KINDS: tuple[tuple[st.SearchStrategy[Any], int], ...] = (
    # Hypothesis favours the first entries a little: the most useful kind goes first.
    (submit_turns, 30),
    (message_turns, 14),
    (verbatim_idea, 12),
    (invoke_turns, 12),
    (verbatim_unknown, 7),
    (verbatim_idea_form, 7),
    (other_turns, 6),
    (raw_inputs, 6),
)
inputs: st.SearchStrategy[Input] = st.sampled_from(
    [strategy for strategy, weight in _KINDS for _ in range(weight)]
).flatmap(lambda strategy: strategy)
