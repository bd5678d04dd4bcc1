"""Making It Real in Teams: Change Makers schedule and log sessions and follow up actions;
Change Leaders see and nudge their Change Makers; the programme team sees the figures.

The forms are stateless: every card carries what the server needs (a one-off form id, the
session or action it is about), and every submission is checked again on the server,
including who may act on what. So a form works after a restart, on any replica, and however
old the card is; nothing here keeps dialog state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.schema import Activity
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from dialogs.common import (
    Caller,
    DepartmentOf,
    SendPrivately,
    card_message,
    form_id_of,
    reply_privately,
    sender_department,
    whole_number,
)
from storage import ideas, mir, outbox, people, programme
from storage.db import transaction
from storage.models import utcnow
from storage.views import SessionView

logger = logging.getLogger(__name__)

# Card actions (the `action` of a button's data); the card templates emit exactly these.
SCHEDULE_SUBMIT = "mir_schedule_submit"
LOG_SUBMIT = "mir_log_submit"
FORM_CANCEL = "mir_form_cancel"
ACTION_DETAILS = "mir_action_details"
RESCHEDULE = "mir_reschedule"
CANCEL_SESSION = "mir_cancel_session"
LOG = "mir_log"
ACTION_STATUS = "mir_action_status"
ACTION_DUE = "mir_action_due"
NUDGE = "mir_nudge"
ACTIONS = frozenset(
    {
        SCHEDULE_SUBMIT,
        LOG_SUBMIT,
        FORM_CANCEL,
        ACTION_DETAILS,
        RESCHEDULE,
        CANCEL_SESSION,
        LOG,
        ACTION_STATUS,
        ACTION_DUE,
        NUDGE,
    }
)
COMMANDS = frozenset(
    {
        "schedule session",
        "log session",
        "my sessions",
        "my actions",
        "my change makers",
        "mir stats",
        "stop reminders",
        "start reminders",
    }
)


@dataclass(frozen=True)
class MirTexts:
    contact: str  # who to ask to become a Change Maker, e.g. "the transformation team"


class MakingItReal:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        today: Callable[[], date],
        send_privately: SendPrivately,
        outbox_changed: Callable[[], None],
        texts: MirTexts,
        department_of: DepartmentOf | None = None,
    ) -> None:
        self._department_of = department_of
        self._sessions = sessions
        self._today = today
        self._send_privately = send_privately
        self._outbox_changed = outbox_changed
        self._texts = texts

    # --- entry points ---------------------------------------------------------------

    async def on_command(self, turn_context: TurnContext, caller: Caller, name: str) -> None:
        if name in ("stop reminders", "start reminders"):
            await self._set_reminders(turn_context, caller, enabled=name == "start reminders")
        elif name == "mir stats":
            await self._stats(turn_context, caller)
        elif name == "my change makers":
            await self._change_makers(turn_context, caller, notice=None)
        elif not caller.has("change_maker"):
            await self._not_a_change_maker(turn_context, name)
        elif name == "schedule session":
            await self._schedule_form(turn_context, caller)
        elif name == "log session":
            await self._log_form(turn_context, caller, session_id=None)
        elif name == "my sessions":
            await self._my_sessions(turn_context, caller, notice=None)
        elif name == "my actions":
            await self._my_actions(turn_context, caller, notice=None, errors={})

    async def on_action(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        action = values["action"]
        if action == FORM_CANCEL:
            await turn_context.send_activity("OK, nothing was saved.")
        elif action == NUDGE:
            await self._nudge(turn_context, caller, whole_number(values.get("person")))
        elif not caller.has("change_maker"):
            await self._not_a_change_maker(turn_context, "log session")
        elif action == SCHEDULE_SUBMIT:
            await self._on_schedule_submit(turn_context, caller, values)
        elif action == LOG_SUBMIT:
            await self._on_log_submit(turn_context, caller, values)
        elif action == LOG:
            await self._log_form(
                turn_context, caller, session_id=whole_number(values.get("session"))
            )
        elif action == RESCHEDULE:
            await self._reschedule_form(turn_context, caller, whole_number(values.get("session")))
        elif action == CANCEL_SESSION:
            await self._cancel_session(turn_context, caller, whole_number(values.get("session")))
        elif action == ACTION_DETAILS:
            await self._on_action_details(turn_context, caller, values)
        elif action == ACTION_STATUS:
            await self._on_action_status(turn_context, caller, values)
        elif action == ACTION_DUE:
            await self._on_action_due(turn_context, caller, values)

    # --- scheduling -------------------------------------------------------------------

    async def _schedule_form(self, turn_context: TurnContext, caller: Caller) -> None:
        async with self._sessions() as session:
            area = await people.service_area_of(session, person_id=caller.person_id)
        team = await self._team_default(turn_context, area)
        await self._reply(
            turn_context,
            caller,
            card_message(
                "schedule_form",
                values={"date": "", "time": "", "team": team, "expected": ""},
                errors={},
                form_id=programme.new_form_id(),
                session_id=None,
                today=self._today(),
            ),
        )

    async def _reschedule_form(
        self, turn_context: TurnContext, caller: Caller, session_id: int | None
    ) -> None:
        try:
            async with self._sessions() as session:
                found = await mir.get_session(
                    session, session_id=session_id or 0, change_maker_id=caller.person_id
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        if found.status != "scheduled":
            await turn_context.send_activity(
                "That session has been logged or cancelled, so it can't be rescheduled. "
                "Type **schedule session** to put a new one in the diary."
            )
            return
        values = {
            "date": found.session_date.isoformat(),
            "time": found.start_time.strftime("%H:%M") if found.start_time else "",
            "team": found.team,
            "expected": str(found.expected_attendees or ""),
        }
        await self._reply(
            turn_context,
            caller,
            card_message(
                "schedule_form",
                values=values,
                errors={},
                form_id=programme.new_form_id(),
                session_id=found.id,
                today=self._today(),
            ),
        )

    async def _on_schedule_submit(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        today = self._today()
        form_id = form_id_of(values)
        session_id = whole_number(values.get("session"))
        submission, entries, errors = mir.check_schedule_form(values, today=today)
        if submission is None:
            await turn_context.send_activity(
                card_message(
                    "schedule_form",
                    values=entries,
                    errors=errors,
                    form_id=form_id,
                    session_id=session_id,
                    today=today,
                )
            )
            return
        try:
            async with transaction(self._sessions) as session:
                if session_id is not None:
                    view = await mir.reschedule_session(
                        session,
                        session_id=session_id,
                        change_maker_id=caller.person_id,
                        submission=submission,
                    )
                    notice = f"Rescheduled to {_when(view)}."
                else:
                    view, created = await mir.schedule_session(
                        session,
                        change_maker_id=caller.person_id,
                        submission=submission,
                        form_id=form_id,
                    )
                    notice = (
                        f"Scheduled for {_when(view)}. I'll ask how it went the day after."
                        if created
                        else "That session was already scheduled."
                    )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        except IntegrityError:
            # The same form stored by a concurrent turn (a double press on two replicas).
            notice = "That session was already scheduled."
        logger.info("MIR session scheduled or rescheduled")
        await self._my_sessions(turn_context, caller, notice=notice)

    async def _cancel_session(
        self, turn_context: TurnContext, caller: Caller, session_id: int | None
    ) -> None:
        try:
            async with transaction(self._sessions) as session:
                view = await mir.cancel_session(
                    session, session_id=session_id or 0, change_maker_id=caller.person_id
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        await self._my_sessions(
            turn_context, caller, notice=f"Cancelled your session on {_when(view)}."
        )

    async def _my_sessions(
        self, turn_context: TurnContext, caller: Caller, *, notice: str | None
    ) -> None:
        async with self._sessions() as session:
            sessions = await mir.my_sessions(session, change_maker_id=caller.person_id)
        await self._reply(
            turn_context,
            caller,
            card_message("my_sessions", sessions=sessions, today=self._today(), notice=notice),
        )

    # --- logging a held session -------------------------------------------------------------

    async def _log_form(
        self, turn_context: TurnContext, caller: Caller, *, session_id: int | None
    ) -> None:
        today = self._today()
        async with self._sessions() as session:
            scheduled = await mir.scheduled_sessions(session, change_maker_id=caller.person_id)
            area = await people.service_area_of(session, person_id=caller.person_id)
        chosen = next((s for s in scheduled if s.id == session_id), None)
        if chosen is None:
            # The most likely one: the latest scheduled session that is not in the future.
            past = [s for s in scheduled if s.session_date <= today]
            chosen = past[-1] if past else None
        values = {
            "scheduled": str(chosen.id) if chosen else "",
            "date": (chosen.session_date if chosen else today).isoformat(),
            "team": chosen.team if chosen else await self._team_default(turn_context, area),
            "attendees": str(chosen.expected_attendees or "") if chosen else "",
            "themes": "",
            "changes": "",
            "went_well": "",
            "to_change": "",
            "rating": "",
        }
        await self._reply(
            turn_context,
            caller,
            card_message(
                "log_form",
                values=values,
                errors={},
                form_id=programme.new_form_id(),
                scheduled=scheduled,
                today=today,
            ),
        )

    async def _team_default(self, turn_context: TurnContext, area: str | None) -> str:
        """A new form's team: the roster's service area, or else the person's department
        in the directory, as it is written there (the field is free text)."""
        if area:
            return area
        department = await sender_department(turn_context, self._department_of)
        return " ".join((department or "").split())[: mir.MAX_TEAM]

    async def _on_log_submit(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        today = self._today()
        form_id = form_id_of(values)
        async with self._sessions() as session:
            scheduled = await mir.scheduled_sessions(session, change_maker_id=caller.person_id)
        submission, entries, errors = mir.check_log_form(
            values, today=today, scheduled_ids={s.id for s in scheduled}
        )
        if submission is None:
            await turn_context.send_activity(
                card_message(
                    "log_form",
                    values=entries,
                    errors=errors,
                    form_id=form_id,
                    scheduled=scheduled,
                    today=today,
                )
            )
            return
        try:
            async with transaction(self._sessions) as session:
                view, actions, created = await mir.log_session(
                    session,
                    change_maker_id=caller.person_id,
                    submission=submission,
                    form_id=form_id,
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        except (IntegrityError, mir.AlreadyLogged):
            # The same form stored by a concurrent turn (a double press, two replicas).
            await turn_context.send_activity(
                "That session was already logged. Type **my actions** to follow up its changes."
            )
            return
        if created:
            logger.info("MIR session logged with %d action(s)", len(actions))
            if not actions:
                follow_up = "No changes were listed, so there are no follow-up actions."
            elif len(actions) == 1:
                follow_up = (
                    "The change your team agreed is now a follow-up action: add who owns it "
                    "and when it's due below, if you know."
                )
            else:
                follow_up = (
                    f"The {len(actions)} changes your team agreed are now follow-up actions: "
                    "add who owns each and when it's due below, if you know."
                )
            notice = "Logged, thank you! " + follow_up
        else:
            notice = "That session was already logged."
        await turn_context.send_activity(
            card_message(
                "session_logged", session=view, actions=actions, notice=notice, errors={}, values={}
            )
        )

    async def _on_action_details(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        today = self._today()
        session_id = whole_number(values.get("session")) or 0
        try:
            async with self._sessions() as session:
                found = await mir.get_session(
                    session, session_id=session_id, change_maker_id=caller.person_id
                )
                actions = await mir.session_actions(
                    session, session_id=session_id, change_maker_id=caller.person_id, today=today
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        details, entries, errors = mir.check_action_details(
            values, action_ids={a.id for a in actions}
        )
        if details is None:
            await turn_context.send_activity(
                card_message(
                    "session_logged",
                    session=found,
                    actions=actions,
                    notice=None,
                    errors=errors,
                    values=entries,
                )
            )
            return
        try:
            async with transaction(self._sessions) as session:
                actions = await mir.set_action_details(
                    session, change_maker_id=caller.person_id, details=details, today=today
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        await turn_context.send_activity(
            card_message(
                "session_logged",
                session=found,
                actions=actions,
                notice="Saved who owns each action and when it's due.",
                errors={},
                values={},
            )
        )

    # --- follow-up actions ------------------------------------------------------------------

    async def _my_actions(
        self,
        turn_context: TurnContext,
        caller: Caller,
        *,
        notice: str | None,
        errors: dict[str, str],
        values: dict[str, str] | None = None,
    ) -> None:
        today = self._today()
        async with self._sessions() as session:
            actions = await mir.my_actions(session, change_maker_id=caller.person_id, today=today)
            # The ones already submitted as ideas say so (and are not offered again).
            as_ideas = await ideas.ideas_of_actions(session, action_ids=[a.id for a in actions])
        await self._reply(
            turn_context,
            caller,
            card_message(
                "my_actions",
                actions=actions,
                notice=notice,
                errors=errors,
                today=today,
                ideas_by_action=as_ideas,
                values=values or {},
            ),
        )

    async def _on_action_status(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        action_id = whole_number(values.get("id")) or 0
        status = values.get("status")
        if status not in ("in_progress", "done", "dropped"):
            await turn_context.send_activity(_OLD_BUTTON)
            return
        reason = None
        if status == "dropped":
            typed = values.get(f"reason_{action_id}")
            reason, error = mir.check_drop_reason(typed)
            if error:
                await self._my_actions(
                    turn_context,
                    caller,
                    notice=None,
                    errors={f"reason_{action_id}": error},
                    values={f"reason_{action_id}": typed if isinstance(typed, str) else ""},
                )
                return
        try:
            async with transaction(self._sessions) as session:
                action = await mir.set_action_status(
                    session,
                    action_id=action_id,
                    change_maker_id=caller.person_id,
                    status=status,
                    reason=reason,
                    today=self._today(),
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        label = {"in_progress": "in progress", "done": "done", "dropped": "dropped"}[status]
        await self._my_actions(
            turn_context, caller, notice=f'Marked "{_short(action.text)}" as {label}.', errors={}
        )

    async def _on_action_due(
        self, turn_context: TurnContext, caller: Caller, values: Mapping[str, Any]
    ) -> None:
        action_id = whole_number(values.get("id")) or 0
        typed = values.get(f"due_{action_id}")
        due, error = mir.check_due_date(typed)
        if error or due is None:
            await self._my_actions(
                turn_context,
                caller,
                notice=None,
                errors={f"due_{action_id}": error or "Choose a due date."},
                values={f"due_{action_id}": typed if isinstance(typed, str) else ""},
            )
            return
        try:
            async with transaction(self._sessions) as session:
                action = await mir.set_action_due(
                    session,
                    action_id=action_id,
                    change_maker_id=caller.person_id,
                    due=due,
                    today=self._today(),
                )
        except (mir.NotAllowed, mir.NotFound):
            await turn_context.send_activity(_NOT_YOURS)
            return
        await self._my_actions(
            turn_context,
            caller,
            notice=f'"{_short(action.text)}" is now due {due:%a %-d %B %Y}.',
            errors={},
        )

    # --- Change Leaders and the programme team ----------------------------------------------

    async def _change_makers(
        self, turn_context: TurnContext, caller: Caller, *, notice: str | None
    ) -> None:
        if not (caller.has("change_leader") or caller.is_admin):
            await turn_context.send_activity(
                "**my change makers** is for Change Leaders. If you lead Change Makers and "
                f"should see them here, ask {self._texts.contact} to add you to the roster."
            )
            return
        async with self._sessions() as session:
            summaries = await mir.change_maker_summaries(
                session,
                today=self._today(),
                # The programme team sees everyone; a leader sees their own.
                leader_id=caller.person_id if caller.has("change_leader") else None,
            )
        await self._reply(
            turn_context,
            caller,
            card_message(
                "change_makers",
                leader_name=caller.name,
                people=summaries,
                notice=notice,
                today=self._today(),
            ),
        )

    async def _nudge(
        self, turn_context: TurnContext, caller: Caller, subject_id: int | None
    ) -> None:
        today = self._today()
        async with transaction(self._sessions) as session:
            allowed = subject_id is not None and await mir.can_view(
                session,
                viewer_id=caller.person_id,
                viewer_is_admin=caller.is_admin,
                subject_id=subject_id,
            )
            if not allowed or subject_id is None:
                logger.warning("Refused a nudge of someone who is not the caller's Change Maker")
                refused = True
            else:
                refused = False
                name = await people.display_name(session, person_id=subject_id)
                conversation_id = await outbox.personal_conversation_id(
                    session, person_id=subject_id
                )
                queued = conversation_id is not None and await outbox.enqueue(
                    session,
                    dedupe_key=f"mir-nudge:{subject_id}:{caller.person_id}:{today.isoformat()}",
                    conversation_id=conversation_id,
                    payload=card_message("nudge", name=name, leader_name=caller.name).serialize(),
                    now=utcnow(),
                )
        if refused:
            await turn_context.send_activity(
                "You can nudge only your own Change Makers, so nothing was sent."
            )
            return
        if conversation_id is None:
            notice = (
                f"{name} can't be reached yet: they haven't opened the Our Cambridge app in "
                "Teams. Please contact them directly."
            )
        elif queued:
            self._outbox_changed()
            notice = f"Nudge sent to {name}."
        else:
            notice = f"You already nudged {name} today."
        await self._change_makers(turn_context, caller, notice=notice)

    async def _stats(self, turn_context: TurnContext, caller: Caller) -> None:
        if not caller.is_admin:
            await turn_context.send_activity(
                "**mir stats** is for the transformation team. Change Leaders can type "
                "**my change makers** to see their own Change Makers."
            )
            return
        today = self._today()
        async with self._sessions() as session:
            stats = await mir.mir_stats(session, today=today)
        await self._reply(turn_context, caller, card_message("mir_stats", stats=stats, today=today))

    async def _set_reminders(
        self, turn_context: TurnContext, caller: Caller, *, enabled: bool
    ) -> None:
        async with transaction(self._sessions) as session:
            await people.set_reminders(session, person_id=caller.person_id, enabled=enabled)
        await turn_context.send_activity(
            "Reminders are on: I'll remind you about sessions to schedule and log, and "
            "overdue actions. Type **stop reminders** to turn them off."
            if enabled
            else "Reminders are off. Your Change Leader can still nudge you. Type "
            "**start reminders** to turn them back on."
        )

    # --- helpers ------------------------------------------------------------------------

    async def _not_a_change_maker(self, turn_context: TurnContext, command: str) -> None:
        logger.info("A %s from someone who is not a Change Maker; nothing stored", command)
        await turn_context.send_activity(
            MessageFactory.text(
                "Making It Real sessions are run by Change Makers, and I don't have you down as "
                "one. To become a Change Maker, talk to your Change Leader or "
                f"{self._texts.contact}"
                " — they'll add you to the roster, and then **schedule session** and "
                "**log session** will work for you."
            )
        )

    async def _reply(self, turn_context: TurnContext, caller: Caller, activity: Activity) -> None:
        await reply_privately(
            turn_context, caller, activity, self._send_privately, ask_there="ask me there"
        )


_NOT_YOURS = (
    "I can't find that among your sessions or actions, so nothing was changed. "
    "Type **my sessions** or **my actions** to see yours."
)
_OLD_BUTTON = "That button belongs to an older version of this card. Type **help** to start again."


def _when(view: SessionView) -> str:
    time = f" at {view.start_time:%H:%M}" if view.start_time else ""
    return f"{view.session_date:%a %-d %B %Y}{time} ({view.team})"


def _short(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"
