"""Small helpers every dialog uses to talk back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.schema import Activity

from cards import render_card
from storage import programme


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


# A person's department in the organisation's directory, by their AAD object id; None when
# it is not known (or the directory could not say in time). Forms use it as a default.
DepartmentOf = Callable[[str], Awaitable[str | None]]


async def sender_department(
    turn_context: TurnContext, department_of: DepartmentOf | None
) -> str | None:
    """The directory department of whoever sent this turn, or None (no lookup configured,
    no AAD object id, nothing recorded)."""
    sender = turn_context.activity.from_property
    if department_of is None or sender is None or not sender.aad_object_id:
        return None
    return await department_of(sender.aad_object_id)


# Sends an activity to the caller's 1:1 chat (opening one if need be); False if it could not.
SendPrivately = Callable[[TurnContext, "Caller", Activity], Awaitable[bool]]


async def reply_privately(
    turn_context: TurnContext,
    caller: Caller,
    activity: Activity,
    send_privately: SendPrivately,
    *,
    ask_there: str,
) -> None:
    """Personal answers and forms go to a 1:1 chat: asked in a channel, everyone there would
    see them. `ask_there` says what to type in the app if no private chat can be opened."""
    if is_personal_chat(turn_context):
        await turn_context.send_activity(activity)
    elif await send_privately(turn_context, caller, activity):
        await turn_context.send_activity("I've sent that to you in a private chat.")
    else:
        await turn_context.send_activity(
            "I couldn't open a private chat with you. Open the Our Cambridge app in Teams and "
            f"{ask_there}."
        )


def whole_number(value: object) -> int | None:
    """An id a card carries (an int, or digits as text), or None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        return int(value.strip())
    return None


def form_id_of(values: Mapping[str, Any]) -> str:
    """The card's one-off form id, or a new one for a card that carries none (or junk)."""
    form = values.get("form")
    return (
        form if isinstance(form, str) and programme.form_source(form) else programme.new_form_id()
    )
