"""Small helpers every dialog uses to talk back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.schema import Activity

from cards import render_card


def card_message(name: str, /, **context: Any) -> Activity:
    return MessageFactory.attachment(CardFactory.adaptive_card(render_card(name, **context)))


async def send_card(turn_context: TurnContext, name: str, /, **context: Any) -> None:
    await turn_context.send_activity(card_message(name, **context))


def submitted_values(turn_context: TurnContext) -> dict[str, Any]:
    """The data of an Action.Submit (a dict), or {} for anything else."""
    value = turn_context.activity.value
    return value if isinstance(value, dict) else {}


def is_personal_chat(turn_context: TurnContext) -> bool:
    """A 1:1 chat with the bot (Teams sends "personal"; some clients send no type)."""
    conversation = turn_context.activity.conversation
    return (conversation.conversation_type if conversation else None) in (None, "personal")


@dataclass(frozen=True)
class Caller:
    """Who sent this turn, as the server knows them (never from a card's data)."""

    person_id: int
    name: str
    roles: frozenset[str]  # "change_maker" | "change_leader" | "admin"; empty for staff
    is_admin: bool  # ADMIN_AAD_IDS or the roster's admin role

    def has(self, role: str) -> bool:
        return role in self.roles
