"""Teams-shaped activities, and a client that posts them to the bot over HTTP."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support import log_scan
from tests.support.connector import FakeConnector, SentActivity

TENANT_ID = "72f988bf-0000-4000-8000-00000000cafe"
BOT_ID = "28:ourcambridge-bot"
BOT_NAME = "Our Cambridge"
ADMIN_AAD_ID = "aad-0000-programme-officer"

_ids = itertools.count(1)


@dataclass(frozen=True)
class TeamsUser:
    name: str
    aad_object_id: str
    teams_id: str = field(default="")
    email: str = field(default="")

    def __post_init__(self) -> None:
        # Personal data: the logs must never hold it (tests/support/log_scan.py).
        log_scan.note_user(self.name, self.email)

    @property
    def id(self) -> str:
        return self.teams_id or f"29:{self.aad_object_id}"

    @property
    def account(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "aadObjectId": self.aad_object_id}

    @property
    def member(self) -> dict[str, str]:
        """What Teams answers for GET .../members/{id} (TeamsInfo.get_member)."""
        return {
            **self.account,
            "email": self.email,
            "userPrincipalName": self.email,
            "tenantId": TENANT_ID,
            "userRole": "user",
        }


def new_user(name: str, *, email: str = "") -> TeamsUser:
    """A person nobody else in the test session is: unique AAD id and email."""
    unique = uuid.uuid4().hex[:12]
    slug = name.lower().replace(" ", ".")
    return TeamsUser(
        name=name,
        aad_object_id=f"aad-{unique}",
        email=email or f"{slug}.{unique}@cambridge.gov.uk",
    )


OFFICER = TeamsUser(name="Priya Programme-Officer", aad_object_id=ADMIN_AAD_ID)
STAFF = TeamsUser(name="Sam Staff", aad_object_id="aad-1111-staff-member")


def new_conversation_id(kind: str = "personal") -> str:
    return f"a:{kind}-{uuid.uuid4().hex}"


def activity(
    service_url: str,
    *,
    type: str = "message",
    conversation_id: str,
    user: TeamsUser = STAFF,
    conversation_type: str = "personal",
    **fields: Any,
) -> dict[str, Any]:
    channel_data: dict[str, Any] = {"tenant": {"id": TENANT_ID}}
    if conversation_type == "channel":
        channel_data |= {"team": {"id": "19:team-ourcambridge"}, "channel": {"id": conversation_id}}
    body = {
        "type": type,
        "id": f"act-{next(_ids)}-{uuid.uuid4().hex[:8]}",
        "timestamp": "2026-11-28T10:00:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": user.account,
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "conversation": {
            "id": conversation_id,
            "conversationType": conversation_type,
            "tenantId": TENANT_ID,
            **({"isGroup": True} if conversation_type != "personal" else {}),
        },
        "channelData": channel_data,
        "locale": "en-GB",
        **fields,
    }
    # What people typed and wrote in forms: the logs must never hold it (log_scan.py).
    log_scan.note_activity(body)
    return body


@dataclass
class Reply:
    """What the bot answered to one POST: the HTTP status and body, and what it sent."""

    status: int
    body: Any
    sent: list[dict[str, Any]]

    @property
    def texts(self) -> list[str]:
        return [a.get("text") or "" for a in self.sent]

    @property
    def cards(self) -> list[dict[str, Any]]:
        return [
            attachment["content"]
            for a in self.sent
            for attachment in a.get("attachments") or []
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive"
        ]

    @property
    def card(self) -> dict[str, Any]:
        assert len(self.cards) == 1, f"expected one card, got {len(self.cards)}: {self.sent}"
        return self.cards[0]


@dataclass
class TeamsClient:
    """Talks to the bot as Teams does: POST /api/messages, replies arrive at the connector."""

    bot_url: str
    connector: FakeConnector
    http: aiohttp.ClientSession
    conversation_id: str = field(default_factory=new_conversation_id)
    user: TeamsUser = STAFF
    conversation_type: str = "personal"

    async def post(self, body: Any, *, headers: dict[str, str] | None = None) -> Reply:
        before = len(self.connector.sent)
        async with self.http.post(
            self.bot_url + "/api/messages",
            json=body,
            headers=headers or {},
        ) as response:
            text = await response.text()
            try:
                parsed: Any = await response.json(content_type=None) if text else None
            except ValueError:
                parsed = text
            return Reply(
                status=response.status,
                body=parsed,
                sent=_replies_to(body, self.connector.sent[before:]),
            )

    def activity(self, **fields: Any) -> dict[str, Any]:
        return activity(
            self.connector.url,
            conversation_id=self.conversation_id,
            user=self.user,
            conversation_type=self.conversation_type,
            **fields,
        )

    async def say(self, text: str, **fields: Any) -> Reply:
        if self.conversation_type == "channel":
            text = f"<at>{BOT_NAME}</at> {text}"
            fields.setdefault("entities", [mention()])
        return await self.post(self.activity(text=text, **fields))

    async def submit(self, value: dict[str, Any]) -> Reply:
        return await self.post(self.activity(value=value))

    async def press(self, card: dict[str, Any], title: str, /, **entries: Any) -> Reply:
        """Press the card's Action.Submit called `title`, as Teams does: the button's data
        merged with every input's value (as shown on the card, or as `entries` retype it).
        A button with associatedInputs "none" sends its data alone. (`title` is positional
        only: a form may have an input called title.)"""
        button = find_action(card, title)
        value = dict(button.get("data") or {})
        if button.get("associatedInputs") != "none":
            value |= {**input_values(card), **entries}
        return await self.submit(value)

    async def invoke(self, name: str, value: Any) -> Reply:
        return await self.post(self.activity(type="invoke", name=name, value=value))

    async def install(self) -> Reply:
        return await self.post(self.activity(type="installationUpdate", action="add"))


def _replies_to(body: Any, sent: list[SentActivity]) -> list[dict[str, Any]]:
    """What the bot sent in answer to `body`: its replies carry the activity's id as
    replyToId, which keeps turns apart when several run at once."""
    activity_id = body.get("id") if isinstance(body, dict) else None
    if not activity_id:
        return [s.activity for s in sent]
    return [s.activity for s in sent if s.activity.get("replyToId") == activity_id]


def mention() -> dict[str, Any]:
    return {
        "type": "mention",
        "text": f"<at>{BOT_NAME}</at>",
        "mentioned": {"id": BOT_ID, "name": BOT_NAME},
    }


def card_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in a card, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from card_nodes(value)
    elif isinstance(node, list):
        for child in node:
            yield from card_nodes(child)


def find_action(card: dict[str, Any], title: str) -> dict[str, Any]:
    found = [
        node
        for node in card_nodes(card)
        if str(node.get("type", "")).startswith("Action.") and node.get("title") == title
    ]
    assert len(found) == 1, f"expected one button {title!r}, found {len(found)}"
    return found[0]


def input_values(card: dict[str, Any]) -> dict[str, Any]:
    """Each input's id and the value the card shows in it (what Teams would send)."""
    return {
        node["id"]: node.get("value", "")
        for node in card_nodes(card)
        if str(node.get("type", "")).startswith("Input.")
    }


def card_text(card: dict[str, Any]) -> str:
    """Every piece of text in a card, joined, for assertions about what a person sees."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "title", "value", "label", "placeholder") and isinstance(
                    value, str
                ):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(card)
    return "\n".join(parts)
