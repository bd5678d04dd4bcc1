"""Small improvements in Teams: anyone submits an idea, supports a colleague's, follows their
own; the transformation team triages them on a card in their channel; everyone involved
hears back at each step.

Like Making It Real, the forms are stateless (the card carries a one-off form id and what it
is about) and every press is checked again on the server, including who may act.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import Any

from botbuilder.core import CardFactory, TurnContext
from botbuilder.schema import AdaptiveCardInvokeResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from cards import render_card
from dialogs.common import (
    Caller,
    DepartmentOf,
    SendPrivately,
    card_message,
    form_id_of,
    is_personal_chat,
    reply_privately,
    sender_department,
    whole_number,
)
from storage import ideas, mir, outbox, people, programme
from storage.db import transaction
from storage.models import utcnow
from storage.views import IdeaView

logger = logging.getLogger(__name__)

SUBMIT = "idea_submit"
CANCEL = "idea_cancel"
SUPPORT = "idea_support"
FROM_ACTION = "idea_from_action"
ACTIONS = frozenset({SUBMIT, CANCEL, SUPPORT, FROM_ACTION})
COMMANDS = frozenset({"idea", "my ideas", "ideas", "set triage channel"})
STATUS_VERB = "idea_status"
REFRESH_VERB = "idea_refresh"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"

# Keys of outbox messages; the worker reports the triage post's activity id back (bot/app.py).
TRIAGE_POST_KEY = "idea-triage:"


async def record_triage_post(
    sessions: async_sessionmaker[AsyncSession],
    dedupe_key: str,
    conversation_id: str,
    activity_id: str,
) -> None:
    """After the outbox posted a triage card: remember where, to update it in place later."""
    if not dedupe_key.startswith(TRIAGE_POST_KEY):
        return
    idea_id = int(dedupe_key.removeprefix(TRIAGE_POST_KEY))
    async with transaction(sessions) as session:
        await ideas.record_triage_post(
            session, idea_id=idea_id, conversation_id=conversation_id, activity_id=activity_id
        )


class Ideas:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        today: Callable[[], date],
        outbox_changed: Callable[[], None],
        remember_channel: Callable[[TurnContext], Awaitable[str]],
        send_privately: SendPrivately,
        department_of: DepartmentOf | None = None,
    ) -> None:
        self._send_privately = send_privately
        self._department_of = department_of
        self._sessions = sessions
        self._today = today
        self._outbox_changed = outbox_changed
        self._remember_channel = remember_channel

    # --- commands ---------------------------------------------------------------------------

    async def on_command(
        self, turn_context: TurnContext, caller: Caller, name: str, argument: str
    ) -> None:
        if name == "idea":
            # "idea scan forms at the counter": the words typed start the title.
            values = {
                "title": argument[:120],
                "service_area": await self._service_area(turn_context, caller),
            }
            await self._send_form(turn_context, caller, values=values, errors={})
        elif name == "my ideas":
            await self._my_ideas(turn_context, caller, notice=None)
        elif name == "ideas":
            await self._list(turn_context, caller, argument)
        elif name == "set triage channel":
            await self._set_triage_channel(turn_context, caller)

    async def on_action(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        action = values["action"]
        if action == CANCEL:
            await turn_context.send_activity("OK, your idea was not submitted.")
        elif action == SUBMIT:
            await self._on_submit(turn_context, caller, values)
        elif action == SUPPORT:
            await self._on_support(turn_context, caller, values.get("idea"))
        elif action == FROM_ACTION:
            await self._from_mir_action(turn_context, caller, whole_number(values.get("id")))

    # --- submitting -----------------------------------------------------------------------

    async def _send_form(
        self,
        turn_context: TurnContext,
        caller: Caller,
        *,
        values: Mapping[str, str],
        errors: Mapping[str, str],
        form_id: str | None = None,
        mir_action_id: int | None = None,
    ) -> None:
        async with self._sessions() as session:
            principles = await programme.design_principles(session)
        await self._reply(
            turn_context,
            caller,
            card_message(
                "idea_form",
                values={**_EMPTY_FORM, **values},
                errors=dict(errors),
                form_id=form_id or programme.new_form_id(),
                service_areas=ideas.SERVICE_AREAS,
                # The principles are numbered 1..7 in the document's order.
                principles=list(enumerate(principles, start=1)),
                mir_action_id=mir_action_id,
            ),
        )

    async def _from_mir_action(
        self, turn_context: TurnContext, caller: Caller, action_id: int | None
    ) -> None:
        """An agreed change from a Making It Real session, offered as an idea: the form comes
        filled in from it, and the idea stays linked to the action."""
        try:
            async with self._sessions() as session:
                action = await mir.get_action(
                    session,
                    action_id=action_id or 0,
                    change_maker_id=caller.person_id,
                    today=self._today(),
                )
                already = await ideas.ideas_of_actions(session, action_ids=[action.id])
        except mir.NotAllowed:
            await turn_context.send_activity(_NOT_YOUR_ACTION)
            return
        if action.id in already:
            await turn_context.send_activity(
                f"That action was already submitted as {already[action.id]}. "
                "Type **my ideas** to follow it."
            )
            return
        values = {
            "title": action.text[:120],
            "problem": f"Agreed at a Making It Real session with {action.session_team} on "
            f"{action.session_date:%-d %B %Y}: {action.text}"[:2000],
            "service_area": await self._service_area(turn_context, caller),
        }
        await self._send_form(
            turn_context, caller, values=values, errors={}, mir_action_id=action.id
        )

    async def _service_area(self, turn_context: TurnContext, caller: Caller) -> str:
        """A new form's service area: the roster's, or else the directory department's,
        when it names one of SERVICE_AREAS; else none (the person chooses)."""
        async with self._sessions() as session:
            area = await people.service_area_of(session, person_id=caller.person_id)
        if area is None:
            area = await sender_department(turn_context, self._department_of)
        return ideas.service_area_for(area) or ""

    async def _on_submit(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        form_id = form_id_of(values)
        mir_action_id = whole_number(values.get("mir_action"))
        async with self._sessions() as session:
            principles = await programme.design_principles(session)
            if mir_action_id is not None:
                try:  # the link is the caller's own action, or none
                    await mir.get_action(
                        session,
                        action_id=mir_action_id,
                        change_maker_id=caller.person_id,
                        today=self._today(),
                    )
                except mir.NotAllowed:
                    await turn_context.send_activity(_NOT_YOUR_ACTION)
                    return
        submission, entries, errors = ideas.check_idea_form(
            values, principle_numbers=range(1, len(principles) + 1)
        )
        if submission is None:
            await self._send_form(
                turn_context,
                caller,
                values=entries,
                errors=errors,
                form_id=form_id,
                mir_action_id=mir_action_id,
            )
            return
        async with self._sessions() as session:
            earlier = await ideas.idea_of_form(
                session, submitter_id=caller.person_id, form_id=form_id
            )
        if earlier is not None:
            # The same form pressed again: the idea is in; say so again, store nothing.
            await self._reply(turn_context, caller, card_message("idea_submitted", idea=earlier))
            return
        if values.get("confirmed") is not True:
            async with self._sessions() as session:
                similar = await ideas.similar_open_ideas(session, submission=submission)
            if similar:
                carried = entries | (
                    {"mir_action": str(mir_action_id)} if mir_action_id is not None else {}
                )
                await self._reply(
                    turn_context,
                    caller,
                    card_message("idea_similar", similar=similar, form_id=form_id, values=carried),
                )
                return
        try:
            async with transaction(self._sessions) as session:
                idea, created = await ideas.submit_idea(
                    session,
                    submitter_id=caller.person_id,
                    submission=submission,
                    form_id=form_id,
                    mir_action_id=mir_action_id,
                )
                if created:
                    await self._queue_triage_post(session, idea)
        except IntegrityError:
            # The same form stored by a concurrent turn (a double press on two replicas).
            await self._my_ideas(turn_context, caller, notice="That idea was already submitted.")
            return
        if created:
            logger.info("Idea %s submitted", idea.reference)
            self._outbox_changed()
        await self._reply(turn_context, caller, card_message("idea_submitted", idea=idea))

    async def _queue_triage_post(self, session: AsyncSession, idea: IdeaView) -> None:
        channel = await ideas.get_triage_channel(session)
        if channel is None:
            logger.warning("No triage channel is set: idea %s waits in `ideas`", idea.reference)
            return
        await outbox.enqueue(
            session,
            dedupe_key=f"{TRIAGE_POST_KEY}{idea.id}",
            conversation_id=channel,
            payload=card_message(
                "idea_triage", idea=idea, changed_by=None, notice=None
            ).serialize(),
            now=utcnow(),
        )

    # --- supporting and following ---------------------------------------------------------

    async def _on_support(self, turn_context: TurnContext, caller: Caller, idea_id: object) -> None:
        number = _idea_id(idea_id)
        if number is None:
            await turn_context.send_activity(_NO_SUCH_IDEA)
            return
        try:
            async with transaction(self._sessions) as session:
                idea, outcome = await ideas.support_idea(
                    session, idea_id=number, person_id=caller.person_id
                )
        except ideas.IdeaNotFound:
            await turn_context.send_activity(_NO_SUCH_IDEA)
            return
        text = {
            "supported": f'Thanks: you now support {idea.reference}, "{idea.title}". You\'ll hear '
            "when its status changes.",
            "already": f"You already support {idea.reference}.",
            "own": f"{idea.reference} is your own idea, so you can't support it.",
        }[outcome]
        await turn_context.send_activity(text)

    async def _my_ideas(
        self, turn_context: TurnContext, caller: Caller, *, notice: str | None
    ) -> None:
        async with self._sessions() as session:
            mine = await ideas.my_ideas(session, submitter_id=caller.person_id)
        await self._private(turn_context, card_message("my_ideas", ideas=mine, notice=notice))

    async def _list(self, turn_context: TurnContext, caller: Caller, argument: str) -> None:
        if not caller.is_admin:
            await turn_context.send_activity(
                "**ideas** lists everyone's ideas for the transformation team. Type "
                "**my ideas** to see yours, or **idea** to submit one."
            )
            return
        try:
            filters, title = ideas.parse_ideas_filter(argument)
        except ValueError as error:
            await turn_context.send_activity(str(error))
            return
        async with self._sessions() as session:
            found = await ideas.list_ideas(session, **filters)  # type: ignore[arg-type]
        await self._private(
            turn_context, card_message("ideas_list", ideas=found, title=title, notice=None)
        )

    async def _set_triage_channel(self, turn_context: TurnContext, caller: Caller) -> None:
        conversation = turn_context.activity.conversation
        if not caller.is_admin:
            logger.warning("Refused set triage channel from someone not on the team")
            await turn_context.send_activity(
                "Only the transformation team can choose the triage channel."
            )
            return
        if conversation is None or conversation.conversation_type != "channel":
            await turn_context.send_activity(
                "Do this in the channel you want: @mention me there with **set triage channel**."
            )
            return
        channel_id = await self._remember_channel(turn_context)
        async with transaction(self._sessions) as session:
            await ideas.set_triage_channel(
                session, conversation_id=channel_id, set_by=caller.person_id
            )
        logger.info("Triage channel set")
        await turn_context.send_activity(
            "This channel is now the triage channel: each new idea will be posted here with "
            "buttons to move it on."
        )

    # --- triage in the channel (Universal Actions) -------------------------------------------

    async def on_execute(
        self, turn_context: TurnContext, caller: Caller | None, verb: str, data: Mapping[str, Any]
    ) -> AdaptiveCardInvokeResponse:
        """An Action.Execute from a triage card: the answer replaces the card for the person
        who pressed it; a change is also written into the posted card for everyone."""
        idea_id = _idea_id(data.get("idea"))
        if verb == REFRESH_VERB:
            async with self._sessions() as session:
                channel = await ideas.get_triage_channel(session)
            here = turn_context.activity.conversation.id.split(";")[0]
            if (caller is not None and caller.is_admin) or here == channel:
                return await self._current_card(idea_id)
            logger.warning("Refused a refresh of an idea card outside the triage channel")
            return _refused(None, "Only the transformation team can see this card.")
        if verb != STATUS_VERB:
            logger.warning("Refused an idea card press with an unknown verb")
            return _refused(None, "That button belongs to an older version of this card.")
        if caller is None or not caller.is_admin:
            logger.warning("Refused an idea status change from someone not on the team")
            async with self._sessions() as session:
                idea = await _maybe_idea(session, idea_id)
            return _refused(
                idea, "Only the transformation team can change an idea's status. Nothing changed."
            )
        status = data.get("status")
        try:
            async with transaction(self._sessions) as session:
                idea = await ideas.change_status(
                    session,
                    idea_id=idea_id or 0,
                    to_status=status if isinstance(status, str) else "",
                    actor_id=caller.person_id,
                    reason=_text(data.get("reason")),
                    duplicate_of=_text(data.get("duplicate_of")),
                )
                await self._queue_status_messages(session, idea)
        except ideas.IdeaNotFound:
            logger.warning("Refused a status change of an idea that does not exist")
            return _refused(None, "I can't find that idea, so nothing changed.")
        except ideas.IllegalTransition as refusal:
            # Not the refusal's text: it quotes what the admin typed.
            logger.warning("Refused a status change of idea %s", idea_id)
            async with self._sessions() as session:
                current = await _maybe_idea(session, idea_id)
            return _refused(current, f"{refusal} Nothing changed.")
        logger.info("Idea %s moved to %s", idea.reference, idea.status)
        self._outbox_changed()
        # Who made the change as the view tells it: nobody is named on their own anonymous idea.
        card = render_card("idea_triage", idea=idea, changed_by=idea.last_changed_by, notice=None)
        await self._update_posted_card(turn_context, idea, card)
        return _card_response(card)

    async def _current_card(self, idea_id: int | None) -> AdaptiveCardInvokeResponse:
        async with self._sessions() as session:
            idea = await _maybe_idea(session, idea_id)
        if idea is None:
            logger.warning("Refused a refresh of an idea that does not exist")
            return _refused(None, "I can't find that idea.")
        return _card_response(
            render_card("idea_triage", idea=idea, changed_by=idea.last_changed_by, notice=None)
        )

    async def _update_posted_card(
        self, turn_context: TurnContext, idea: IdeaView, card: dict[str, Any]
    ) -> None:
        """Write the new state into the channel's copy, so everyone sees it (not only the
        person whose invoke response carries it)."""
        async with self._sessions() as session:
            post = await ideas.triage_post(session, idea_id=idea.id)
        if post is None:
            return
        conversation_id, activity_id = post
        # Pressed in the triage channel (its thread's id is "<channel id>;messageid=..."):
        # the update goes to that post. A press anywhere else leaves the post as it is.
        if turn_context.activity.conversation.id.split(";")[0] != conversation_id:
            return
        update = card_message("idea_triage", idea=idea, changed_by=None, notice=None)
        update.attachments = [CardFactory.adaptive_card(card)]
        update.id = activity_id
        try:
            await turn_context.update_activity(update)
        except Exception:
            logger.warning("Could not update the posted triage card", exc_info=True)

    async def _queue_status_messages(self, session: AsyncSession, idea: IdeaView) -> None:
        """A 1:1 message to the submitter and every supporter, anonymous submitters too."""
        submitter_first = await ideas.people_to_notify(session, idea_id=idea.id)
        unreachable = 0
        for index, person_id in enumerate(submitter_first):
            conversation_id = await outbox.personal_conversation_id(session, person_id=person_id)
            if conversation_id is None:
                # They have no 1:1 chat with the bot yet: counted (no names) rather than lost
                # without a trace; they see the change in `my ideas`.
                unreachable += 1
                continue
            await outbox.enqueue(
                session,
                dedupe_key=f"idea-status:{idea.id}:{idea.status}:{person_id}",
                conversation_id=conversation_id,
                payload=card_message(
                    "idea_status_changed",
                    idea=idea,
                    reason=idea.last_reason,
                    for_submitter=index == 0,
                ).serialize(),
                now=utcnow(),
            )
        if unreachable:
            logger.warning(
                "Idea %s: %d of %d people to tell have no chat with the bot",
                idea.reference,
                unreachable,
                len(submitter_first),
            )

    async def _reply(self, turn_context: TurnContext, caller: Caller, activity: Any) -> None:
        # In a channel everyone would see who submitted which idea, anonymous or not.
        await reply_privately(
            turn_context, caller, activity, self._send_privately, ask_there="type **idea** there"
        )

    async def _private(self, turn_context: TurnContext, activity: Any) -> None:
        if is_personal_chat(turn_context):
            await turn_context.send_activity(activity)
        else:
            await turn_context.send_activity(
                "That list is personal: ask me in a 1:1 chat, where only you can see it."
            )


_EMPTY_FORM = {
    "title": "",
    "problem": "",
    "suggestion": "",
    "service_area": "",
    "principles": "",
    "benefits": "",
    "benefit_other": "",
    "anonymous": "false",
}
_NO_SUCH_IDEA = "I can't find that idea. Type **my ideas** to see yours."
_NOT_YOUR_ACTION = (
    "I can't find that among your actions, so nothing was changed. "
    "Type **my actions** to see yours."
)


async def _maybe_idea(session: AsyncSession, idea_id: int | None) -> IdeaView | None:
    if idea_id is None:
        return None
    try:
        return await ideas.get_idea(session, idea_id=idea_id)
    except ideas.IdeaNotFound:
        return None


def _refused(idea: IdeaView | None, message: str) -> AdaptiveCardInvokeResponse:
    return _card_response(render_card("idea_triage_refused", idea=idea, message=message))


def _card_response(card: dict[str, Any]) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_TYPE, value=card)


def _idea_id(value: object) -> int | None:
    """An idea's id as a card carries it: a number, or a reference such as "IDEA-0007"."""
    number = whole_number(value)
    return number if number is not None else ideas.parse_reference(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
